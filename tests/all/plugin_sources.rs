//! Plugin sources (`PLUGIN_URI`): local paths, `file://`, S3 (moto) and HTTP, pinning, the size
//! cap, per-stage configuration, precompiled artifacts, the compiled-plugin cache, and the
//! init errors of every bad case. Servers are real: moto, and a small HTTP/1.1 server below
//! that serves plugin bytes (whole, truncated, or without a length).

use crate::{Env, event, outputs, plugin, ticker_rows};
use postprocess::contract::DeliveryResult;
use postprocess::plugin_source::Sha256Digest;
use postprocess::{Config, Processor};
use postprocess_tests::services::{Moto, RuntimeApi};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// What [`PluginServer`] answers every request with.
#[derive(Debug, Clone, Copy)]
enum Serve {
    /// The body with its `Content-Length`.
    Whole,
    /// A `Content-Length` 1000 bytes larger than the body, then the connection closes.
    Truncated,
    /// The body with no length at all, ended by closing the connection.
    Unannounced,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 serving one body at any path, counting requests.
#[derive(Debug)]
struct PluginServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PluginServer {
    fn start(body: Vec<u8>, serve: Serve) -> PluginServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                if read_request_head(&mut stream).is_none() {
                    continue;
                }
                count.fetch_add(1, Ordering::Relaxed);
                let head = match serve {
                    Serve::Whole => format!("Content-Length: {}\r\n", body.len()),
                    Serve::Truncated => format!("Content-Length: {}\r\n", body.len() + 1000),
                    Serve::Unannounced => String::new(),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/wasm\r\n{head}Connection: close\r\n\r\n"
                );
                let _ = stream.write_all(&body);
                let _ = stream.flush();
                // Dropping the stream closes the connection: for `Truncated`, mid-body.
            }
        });
        PluginServer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for PluginServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_request_head(stream: &mut TcpStream) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(())
}

fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("built plugin")
}

/// The string-transform settings every source test uses, and the event it runs.
const QUERY: &str = "?rename=ticker_symbol:symbol&trim=symbol";

/// Runs the ticker event through `uri` (with extra variables) and returns what was delivered,
/// after checking every record was answered `Ok`.
async fn delivered(uri: &str, vars: &[(String, String)]) -> BTreeMap<String, Vec<u8>> {
    let mut env = Env::new(uri);
    for (k, v) in vars {
        env = env.with(k, v);
    }
    let handled = env.run(&event(&ticker_rows(3))).await;
    assert!(
        handled
            .response
            .records
            .iter()
            .all(|r| r.result == DeliveryResult::Ok),
        "{uri}: {:?}",
        handled.failures
    );
    let out = outputs(&env.out_dir(), "default");
    assert_eq!(out.len(), 3, "{uri}");
    assert!(
        out.values()
            .all(|v| String::from_utf8_lossy(v).contains(r#""symbol":"T0000"#))
    );
    out
}

/// The init error `Processor::new` gives for `uri` (with extra variables), as one string.
async fn init_error(uri: &str, vars: &[(&str, &str)]) -> String {
    let mut env = Env::new(uri);
    for (k, v) in vars {
        env = env.with(k, v);
    }
    match Processor::new(&env.config()).await {
        Ok(_) => panic!("{uri} loaded, but should not have"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn every_source_gives_the_same_response() {
    let local = delivered(&format!("{}{QUERY}", plugin::STRING_TRANSFORM), &[]).await;
    let file = delivered(&format!("file://{}{QUERY}", plugin::STRING_TRANSFORM), &[]).await;
    assert_eq!(local, file);

    let server = PluginServer::start(wasm(plugin::STRING_TRANSFORM), Serve::Whole);
    let http = delivered(
        &format!("{}{QUERY}", server.url("p/string_transform.wasm")),
        &[],
    )
    .await;
    assert_eq!(local, http);
    assert_eq!(server.requests(), 1);

    let moto = Moto::start().expect("moto");
    let vars = moto.env();
    let aws = Config::from_lookup(|k| {
        (k == "PLUGIN_URI")
            .then(|| "x.wasm".to_string())
            .or_else(|| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    })
    .expect("config")
    .aws;
    let s3 = postprocess::aws::s3_client(&aws).await;
    s3.create_bucket()
        .bucket("plugins")
        .send()
        .await
        .expect("create bucket");
    s3.put_object()
        .bucket("plugins")
        .key("v1/string_transform.wasm")
        .body(wasm(plugin::STRING_TRANSFORM).into())
        .send()
        .await
        .expect("put plugin");
    let from_s3 = delivered(
        &format!("s3://plugins/v1/string_transform.wasm{QUERY}"),
        &vars,
    )
    .await;
    assert_eq!(local, from_s3);

    // Path-style addressing by setting, as for a server reached by host name.
    let mut path_style = vars.clone();
    path_style.push(("S3_FORCE_PATH_STYLE".into(), "true".into()));
    let forced = delivered(
        &format!("s3://plugins/v1/string_transform.wasm{QUERY}"),
        &path_style,
    )
    .await;
    assert_eq!(local, forced);

    // A missing object and a missing bucket fail init, saying which.
    let vars_ref: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let missing = init_error("s3://plugins/v1/nope.wasm", &vars_ref).await;
    assert!(
        missing.contains("s3://plugins/v1/nope.wasm") && missing.contains("does not exist"),
        "{missing}"
    );
    let no_bucket = init_error("s3://no-such-bucket/p.wasm", &vars_ref).await;
    assert!(
        no_bucket.contains("bucket \"no-such-bucket\" does not exist"),
        "{no_bucket}"
    );
}

#[tokio::test]
async fn per_stage_config_comes_from_the_query_or_plugin_config() {
    let by_query = delivered(&format!("{}{QUERY}", plugin::STRING_TRANSFORM), &[]).await;
    let json = r#"{"string_transform": {"rename": "ticker_symbol:symbol", "trim": "symbol"}}"#;
    let by_json = delivered(
        plugin::STRING_TRANSFORM,
        &[("PLUGIN_CONFIG".into(), json.into())],
    )
    .await;
    assert_eq!(by_query, by_json);
    // The index entry wins over the query string.
    let by_index = delivered(
        &format!(
            "{}?rename=ticker_symbol:other&trim=symbol",
            plugin::STRING_TRANSFORM
        ),
        &[(
            "PLUGIN_CONFIG".into(),
            r#"{"0": {"rename": "ticker_symbol:symbol"}}"#.into(),
        )],
    )
    .await;
    assert_eq!(by_query, by_index);
}

#[tokio::test]
async fn a_pin_is_checked_before_anything_is_compiled() {
    let digest = Sha256Digest::of(&wasm(plugin::STRING_TRANSFORM));
    delivered(
        &format!("{}{QUERY}#sha256={digest}", plugin::STRING_TRANSFORM),
        &[],
    )
    .await;

    let wrong = Sha256Digest::of(b"something else");
    let uri = format!("{}#sha256={wrong}", plugin::STRING_TRANSFORM);
    let e = init_error(&uri, &[]).await;
    assert!(e.contains("sha256 mismatch"), "{e}");
    assert!(e.contains(plugin::STRING_TRANSFORM), "names the URI: {e}");
    assert!(
        e.contains(&wrong.to_string()) && e.contains(&digest.to_string()),
        "both digests: {e}"
    );
}

#[tokio::test]
async fn a_truncated_download_fails_init() {
    let server = PluginServer::start(wasm(plugin::STRING_TRANSFORM), Serve::Truncated);
    let e = init_error(&server.url("string_transform.wasm"), &[]).await;
    assert!(e.contains("truncated") || e.contains("cut off"), "{e}");
    assert!(e.contains(&server.url("string_transform.wasm")), "{e}");
}

#[tokio::test]
async fn the_size_cap_applies_to_files_and_downloads() {
    let size = wasm(plugin::STRING_TRANSFORM).len();
    let cap = (size / 2).to_string();
    let cap = [("PLUGIN_MAX_BYTES", cap.as_str())];
    let file = init_error(plugin::STRING_TRANSFORM, &cap).await;
    assert!(file.contains("PLUGIN_MAX_BYTES"), "{file}");

    // Announced too large: refused before the body is read.
    let announced = PluginServer::start(wasm(plugin::STRING_TRANSFORM), Serve::Whole);
    let e = init_error(&announced.url("s.wasm"), &cap).await;
    assert!(
        e.contains("PLUGIN_MAX_BYTES") && e.contains(&format!("{size} bytes")),
        "{e}"
    );

    // No length announced: refused while streaming, once past the cap.
    let streamed = PluginServer::start(wasm(plugin::STRING_TRANSFORM), Serve::Unannounced);
    let e = init_error(&streamed.url("s.wasm"), &cap).await;
    assert!(e.contains("PLUGIN_MAX_BYTES"), "{e}");

    // And the cap obeyed: exactly the plugin's size is enough.
    let exact = size.to_string();
    let env = Env::new(&streamed.url("string_transform.wasm")).with("PLUGIN_MAX_BYTES", &exact);
    assert!(Processor::new(&env.config()).await.is_ok());
}

#[tokio::test]
async fn files_that_are_not_plugin_components_fail_init_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let component = |wat: &str| wat::parse_str(wat).expect("valid WAT");

    let cases = [
        (
            write("random.wasm", b"definitely not wasm"),
            "is not WebAssembly",
        ),
        (
            write("core.wasm", &component("(module)")),
            "core WebAssembly module, not a component",
        ),
        (
            write(
                "other_world.wasm",
                &component(
                    r#"(component
                        (core module $m (func (export "f") (result i32) i32.const 1))
                        (core instance $i (instantiate $m))
                        (func $f (result u32) (canon lift (core func $i "f")))
                        (export "run" (func $f)))"#,
                ),
            ),
            "does not export the postprocess:plugin world",
        ),
        (
            write(
                "missing_import.wasm",
                &component(
                    r#"(component (import "acme:missing/api@1.0.0" (instance (export "f" (func)))))"#,
                ),
            ),
            "needs an import this host does not provide",
        ),
        (
            write(
                "newer_host.wasm",
                &component(
                    r#"(component (import "postprocess:plugin/host@0.2.0" (instance (export "log" (func)))))"#,
                ),
            ),
            "needs an import this host does not provide",
        ),
    ];
    for (path, expected) in cases {
        let e = init_error(&path, &[]).await;
        assert!(e.contains(expected), "{path}: {e}");
        assert!(e.contains(&path), "names the plugin: {e}");
    }
}

/// Runs the `postprocess` binary with `args` and `vars` (plus a private state directory).
fn postprocess(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let state = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_postprocess"));
    command
        .args(args)
        .env("STATE_DIR", state.path())
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("OUTPUT_DIR")
        .env_remove("DESTINATIONS")
        .env_remove("PLUGIN_FUEL");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().expect("run postprocess")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn precompiled_artifacts_load_only_on_a_matching_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cwasm = dir.path().join("string_transform.cwasm");
    let cwasm_text = cwasm.display().to_string();
    let out = postprocess(
        &["compile", plugin::STRING_TRANSFORM, "-o", &cwasm_text],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let wasm_out = delivered(&format!("{}{QUERY}", plugin::STRING_TRANSFORM), &[]).await;
    let cwasm_out = delivered(&format!("{cwasm_text}{QUERY}"), &[]).await;
    assert_eq!(wasm_out, cwasm_out);

    // Compiled with fuel metering off, loaded by a host that meters fuel.
    let unmetered = dir.path().join("unmetered.cwasm").display().to_string();
    let out = postprocess(
        &["compile", plugin::STRING_TRANSFORM, "-o", &unmetered],
        &[("PLUGIN_FUEL", "0")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let e = init_error(&unmetered, &[]).await;
    assert!(
        e.contains("precompiled artifact this host cannot load"),
        "{e}"
    );
    assert!(e.contains("PLUGIN_FUEL") && e.contains(&unmetered), "{e}");
    // The same artifact loads where fuel is off too.
    let env = Env::new(&unmetered).with("PLUGIN_FUEL", "0");
    assert!(Processor::new(&env.config()).await.is_ok());

    // Over HTTP a precompiled artifact (native code) must be pinned.
    let server = PluginServer::start(std::fs::read(&cwasm).unwrap(), Serve::Whole);
    let e = init_error(&server.url("string_transform.cwasm"), &[]).await;
    assert!(e.contains("without a pin") && e.contains("#sha256="), "{e}");
    let pin = Sha256Digest::of(&std::fs::read(&cwasm).unwrap());
    let pinned = format!(
        "{}{QUERY}#sha256={pin}",
        server.url("string_transform.cwasm")
    );
    assert_eq!(delivered(&pinned, &[]).await, wasm_out);
}

#[test]
fn the_cache_skips_download_and_compile() {
    let bytes = wasm(plugin::STRING_TRANSFORM);
    let pin = Sha256Digest::of(&bytes);
    let server = PluginServer::start(bytes, Serve::Whole);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().display().to_string();
    let start = |uri: &str| {
        let out = postprocess(
            &["--exit-after-init"],
            &[("PLUGIN_URI", uri), ("PLUGIN_CACHE_DIR", &cache_dir)],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };

    // Unpinned: every start downloads (the content might have changed), but compiles once.
    let unpinned = server.url("string_transform.wasm");
    let first = start(&unpinned);
    assert!(
        first.contains("plugin cache miss: compiling") && first.contains("plugin compiled"),
        "{first}"
    );
    assert!(
        first.contains("ready for the first event") && first.contains("init_ms"),
        "{first}"
    );
    let second = start(&unpinned);
    assert!(
        second.contains("plugin cache hit: no compile") && !second.contains("plugin compiled"),
        "{second}"
    );
    assert_eq!(server.requests(), 2);

    // Pinned: the digest is known up front, so a cached artifact needs no download either.
    let pinned = format!("{unpinned}#sha256={pin}");
    let third = start(&pinned);
    assert!(
        third.contains("plugin cache hit: no download, no compile"),
        "{third}"
    );
    assert!(
        !third.contains("plugin fetched") && !third.contains("plugin compiled"),
        "{third}"
    );
    assert_eq!(server.requests(), 2, "no download on a pinned cache hit");

    // A damaged cache entry is reported, replaced, and never trusted.
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let fourth = start(&pinned);
    assert!(
        fourth.contains("cached plugin unusable") && fourth.contains("plugin compiled"),
        "{fourth}"
    );
    assert_eq!(server.requests(), 3);
}

#[test]
fn a_load_error_under_lambda_is_reported_as_the_init_error() {
    let api = RuntimeApi::start_builtin(Duration::from_secs(10)).expect("runtime api");
    let state = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_postprocess"));
    command
        .env("PLUGIN_URI", "/nonexistent/plugin.wasm")
        .env("STATE_DIR", state.path())
        .env_remove("OUTPUT_DIR")
        .env_remove("DESTINATIONS");
    for (k, v) in api.env() {
        command.env(k, v);
    }
    let out = command.output().expect("run postprocess");
    assert!(!out.status.success());
    let errors = api.init_errors();
    assert_eq!(errors.len(), 1, "{}", stderr(&out));
    assert!(
        errors[0].contains("reading plugin /nonexistent/plugin.wasm"),
        "{}",
        errors[0]
    );
    assert!(!stderr(&out).contains("panicked"));
}

/// The stage-name key of `PLUGIN_CONFIG` matches what `PLUGIN_URI` names, for every source.
#[test]
fn stage_names_are_file_stems_for_every_source() {
    for uri in [
        "/p/string_transform.wasm",
        "file:///p/string_transform.cwasm",
        "s3://bucket/dir/string_transform.wasm",
        "https://example.com/x/string_transform.wasm?trim=a",
    ] {
        let config = Config::from_lookup(|k| (k == "PLUGIN_URI").then(|| uri.to_string())).unwrap();
        assert_eq!(config.plugins[0].name, "string_transform", "{uri}");
    }
    assert!(Path::new(plugin::STRING_TRANSFORM).ends_with("string_transform.wasm"));
}
