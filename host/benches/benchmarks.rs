//! The benchmarks: the real host code path (`Processor::handle_json`, wasm plugins under every
//! limit) side by side with the same work done natively and by a Python handler, measured in one
//! run on one machine and reported as ratios, since absolute times on shared machines drift.
//!
//! `scripts/bench` runs this (`cargo bench -p postprocess --bench benchmarks`) and it writes
//! `BENCHMARKS.md` and `benchmarks.svg` at the workspace root. What it measures:
//!
//! - throughput of three plugins (identity, string-transform on ~500-byte JSON rows, aggregate)
//!   at batches of 1, 100 and 10,000 records and a full 6 MB event, for the wasm path, a native
//!   handler (the plugin crates compiled into this binary, run through the SDK's native host,
//!   with the same event decoding and response building) and `python/kda_output_handler.py`;
//! - fuel metering on and off, and a fresh instance per record against reuse;
//! - process start to ready, and peak RSS on the 6 MB event, with the real `postprocess` binary.
//!
//! Timings are the fastest of samples of at least 10 ms, taken in turns with the runs they are
//! compared with; `BENCH_SECONDS` (default 0.5) is the
//! time budget per case. `--profile PLUGIN RECORDS ITERATIONS [native]` runs one fixed workload
//! and nothing else, for `valgrind --tool=callgrind`.

use base64::Engine as _;
use postprocess::contract::{DeliveryResult, Event, RecordResponse, Response};
use postprocess::{Config, Processor};
use postprocess_sdk::{Error, Metadata, Output, Record, testing};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The synchronous Lambda invoke payload limit, which bounds a KDA event.
const SIX_MB: usize = 6 << 20;
/// The batch sizes measured besides the full 6 MB event.
const BATCHES: [usize; 3] = [1, 100, 10_000];
/// Roughly the size of a benchmark row, in bytes.
const ROW_BYTES: usize = 500;
/// A sample lasts at least this long, so timer resolution does not matter.
const MIN_SAMPLE: Duration = Duration::from_millis(10);
/// Where the Python baseline is.
const PYTHON_HANDLER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/python/kda_output_handler.py"
);

type ProcessFn = fn(Record) -> Result<Vec<Output>, Error>;
type FlushFn = fn() -> Result<Vec<Output>, Error>;

/// One benchmarked plugin: its wasm build, its settings, and the same code natively.
struct Plugin {
    key: &'static str,
    label: &'static str,
    wasm: &'static str,
    config: &'static [(&'static str, &'static str)],
    process: ProcessFn,
    flush: FlushFn,
}

fn no_flush() -> Result<Vec<Output>, Error> {
    Ok(Vec::new())
}

fn plugins() -> [Plugin; 3] {
    use postprocess_tests::plugins as wasm;
    [
        Plugin {
            key: "identity",
            label: "identity",
            wasm: wasm::IDENTITY,
            config: &[],
            process: identity::process,
            flush: no_flush,
        },
        Plugin {
            key: "string",
            label: "string-transform",
            wasm: wasm::STRING_TRANSFORM,
            config: &[
                ("drop", "debug"),
                ("rename", "ticker_symbol:symbol"),
                ("trim", "*"),
                ("upper", "name;city"),
                ("lower", "sector"),
                ("mask", "card"),
            ],
            process: string_transform::process,
            flush: no_flush,
        },
        Plugin {
            key: "aggregate",
            label: "aggregate",
            wasm: wasm::AGGREGATE,
            config: &[("group_by", "sector"), ("fields", "price;change;volume")],
            process: aggregate::process,
            flush: aggregate::flush,
        },
    ]
}

impl Plugin {
    /// The `PLUGIN_URI` entry: the wasm path with the settings as a query string.
    fn uri(&self) -> String {
        let query: Vec<String> = self
            .config
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(';', "%3B")))
            .collect();
        if query.is_empty() {
            self.wasm.to_string()
        } else {
            format!("{}?{}", self.wasm, query.join("&"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// A ~500-byte JSON row like a stock-ticker KDA application's output, with fields for every
/// string-transform step (whitespace to trim, names to re-case, a card number to mask, a field
/// to drop) and numbers to aggregate.
fn row(i: usize) -> Vec<u8> {
    let sector = ["TECHNOLOGY", "ENERGY", "RETAIL", "HEALTHCARE", "FINANCE"][i % 5];
    let city = [" Seattle ", "New York", " London  ", "Tokyo"][i % 4];
    let mut value = json!({
        "ticker_symbol": format!("  T{:05}  ", i % 100_000),
        "name": format!("  Company {i} Holdings Incorporated  "),
        "sector": sector,
        "city": city,
        "card": format!("41111111{:08}", i % 100_000_000),
        "price": 10.0 + (i % 1000) as f64 * 0.25,
        "change": (i % 7) as f64 - 3.0,
        "volume": 1000 + (i * 7919) % 1_000_000,
        "ts": format!("2026-12-03T13:{:02}:{:02}.{:03}Z", (i / 60_000) % 60, (i / 1000) % 60, i % 1000),
        "debug": "internal trace id 0123456789abcdef",
        "note": "",
    });
    let length = value.to_string().len();
    let pad = "The quick brown fox jumps over the lazy dog. ".repeat(10);
    value["note"] = Value::String(pad[..ROW_BYTES.saturating_sub(length)].to_string());
    value.to_string().into_bytes()
}

fn record_json(i: usize) -> Value {
    json!({
        "recordId": format!("{:08x}-5a1e-4c3b-9d2f-{:012x}", 0x2026_1203u32, i),
        "lambdaDeliveryRecordMetadata": {"retryHint": 0},
        "data": base64::engine::general_purpose::STANDARD.encode(row(i)),
    })
}

fn event_json(records: Vec<Value>) -> String {
    json!({
        "invocationId": "b0e1c2d3-0000-4000-8000-000000000005",
        "applicationArn": "arn:aws:kinesisanalytics:us-east-1:123456789012:application/bench",
        "records": records,
    })
    .to_string()
}

/// An event of `n` records.
fn event(n: usize) -> String {
    event_json((0..n).map(record_json).collect())
}

/// The largest event of such records that fits the 6 MB invoke payload limit.
fn full_event() -> (usize, String) {
    let overhead = event(0).len();
    let mut size = overhead;
    let mut records = Vec::new();
    loop {
        let record = record_json(records.len());
        let len = record.to_string().len() + 1; // and a comma
        if size + len > SIX_MB {
            break;
        }
        size += len;
        records.push(record);
    }
    (records.len(), event_json(records))
}

/// The measured event sizes: label, record count, JSON text.
fn events() -> Vec<(String, usize, String)> {
    let mut events: Vec<_> = BATCHES
        .iter()
        .map(|&n| (n.to_string(), n, event(n)))
        .collect();
    let (n, text) = full_event();
    events.push(("6 MB".to_string(), n, text));
    events
}

// ---------------------------------------------------------------------------------------------
// The three ways to run a batch
// ---------------------------------------------------------------------------------------------

/// The host as Lambda runs it, built once: the first call compiles nothing.
struct WasmPath {
    runtime: tokio::runtime::Runtime,
    processor: Processor,
    _state: tempfile::TempDir,
}

impl WasmPath {
    fn new(plugin: &Plugin, extra: &[(&str, &str)]) -> Self {
        let state = tempfile::tempdir().expect("state dir");
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        vars.insert("PLUGIN_URI".into(), plugin.uri());
        vars.insert("DESTINATIONS".into(), "default=discard".into());
        vars.insert("STATE_DIR".into(), state.path().display().to_string());
        for (k, v) in extra {
            vars.insert((*k).into(), (*v).into());
        }
        let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("benchmark config");
        // Lambda's handler runs on one thread at a time; so does this.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let processor = runtime
            .block_on(Processor::new(&config))
            .expect("processor");
        WasmPath {
            runtime,
            processor,
            _state: state,
        }
    }

    /// One invocation from event text to response text; returns the number of Ok records.
    fn invoke(&self, text: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(300);
        let response = self
            .runtime
            .block_on(self.processor.handle_json(text, deadline))
            .expect("a valid event");
        black_box(serde_json::to_string(&response).expect("response JSON"));
        response.ok_count()
    }
}

/// The same work without WebAssembly: the same event decoding, the plugin's own code compiled
/// natively (through the SDK's native stand-in for the host), and the same response building.
/// Outputs are dropped, as the `discard` destination does. Returns the number of Ok records.
fn native_invoke(plugin: &Plugin, text: &str) -> usize {
    let event = Event::from_json(text).expect("a valid event");
    testing::reset();
    for (k, v) in plugin.config {
        testing::set_config(k, v);
    }
    let mut outputs: Vec<Output> = Vec::new();
    let mut failed = vec![false; event.records.len()];
    for (i, record) in event.records.iter().enumerate() {
        let Ok(data) = &record.data else {
            failed[i] = true;
            continue;
        };
        let record = Record {
            data: data.clone(),
            metadata: Metadata {
                record_id: record.record_id.clone(),
                retry_hint: record.retry_hint,
                source_arn: event.application_arn.clone(),
                source_kind: "kda-output".into(),
                destination: Output::DEFAULT_DESTINATION.into(),
            },
        };
        match (plugin.process)(record) {
            Ok(out) => outputs.extend(out),
            Err(_) => failed[i] = true,
        }
    }
    match (plugin.flush)() {
        Ok(out) => outputs.extend(out),
        Err(_) => failed.iter_mut().for_each(|f| *f = true),
    }
    black_box(&outputs);
    let response = Response {
        records: event
            .records
            .iter()
            .zip(&failed)
            .map(|(r, &failed)| RecordResponse {
                record_id: r.record_id.clone(),
                result: if failed {
                    DeliveryResult::DeliveryFailed
                } else {
                    DeliveryResult::Ok
                },
            })
            .collect(),
    };
    black_box(serde_json::to_string(&response).expect("response JSON"));
    response.ok_count()
}

/// Seconds per call of each of `runs`, measured in turns (one sample of each, then again) so
/// that load from other processes on a shared machine falls on all of them alike. A sample
/// lasts at least [`MIN_SAMPLE`]; sampling goes on until `budget` per run is spent and each has
/// at least three. Each figure is the fastest sample: interference only ever adds time.
fn measure(budget: Duration, runs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let per_sample: Vec<usize> = runs
        .iter_mut()
        .map(|run| {
            let start = Instant::now();
            run();
            let once = start.elapsed().max(Duration::from_nanos(1));
            (MIN_SAMPLE.as_secs_f64() / once.as_secs_f64())
                .ceil()
                .max(1.0) as usize
        })
        .collect();
    let mut best = vec![f64::INFINITY; runs.len()];
    let mut spent = Duration::ZERO;
    let mut rounds = 0;
    while spent < budget * runs.len() as u32 || rounds < 3 {
        for (i, run) in runs.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..per_sample[i] {
                run();
            }
            let elapsed = start.elapsed();
            spent += elapsed;
            best[i] = best[i].min(elapsed.as_secs_f64() / per_sample[i] as f64);
        }
        rounds += 1;
    }
    best
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// One row of the throughput table.
struct Throughput {
    plugin: &'static str,
    batch: String,
    records: usize,
    wasm: f64,
    native: f64,
    python: Option<f64>,
}

impl Throughput {
    /// Host overhead per record in µs: what the wasm path costs beyond the native one.
    fn overhead_us(&self) -> f64 {
        (self.wasm - self.native) / self.records as f64 * 1e6
    }
}

/// One row of a variant table (fuel off, fresh instances).
struct Variant {
    plugin: &'static str,
    records: usize,
    base: f64,
    variant: f64,
}

struct Report {
    throughput: Vec<Throughput>,
    fuel: Vec<Variant>,
    fresh: Vec<Variant>,
    ready_wasm_ms: f64,
    ready_cached_ms: f64,
    ready_precompiled_ms: Option<f64>,
    processor_new_ms: f64,
    rss: Vec<(&'static str, f64)>,
    events_dir: PathBuf,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--profile") {
        return profile(&args[1..]);
    }
    let budget = Duration::from_secs_f64(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.5),
    );
    let plugins = plugins();
    let events = events();
    let events_dir = tempfile::Builder::new()
        .prefix("postprocess-bench")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .expect("events dir");
    for (label, n, text) in &events {
        eprintln!("event {label}: {n} records, {} bytes", text.len());
        std::fs::write(event_path(events_dir.path(), label), text).expect("event file");
    }

    // Python first, in one process: it is the slowest and needs only the event files.
    eprintln!("python baseline ...");
    let python = python_bench(&plugins, &events, events_dir.path(), budget);

    let mut throughput = Vec::new();
    let mut fuel = Vec::new();
    let mut fresh = Vec::new();
    for plugin in &plugins {
        let wasm = WasmPath::new(plugin, &[]);
        let no_fuel = WasmPath::new(plugin, &[("PLUGIN_FUEL", "0")]);
        let per_record = WasmPath::new(plugin, &[("INSTANCE_REUSE", "record")]);
        for (label, n, text) in &events {
            let native_ok = native_invoke(plugin, text);
            assert_eq!(
                wasm.invoke(text),
                native_ok,
                "{} {label}: wasm and native disagree",
                plugin.key
            );
            let mut wasm_run = || {
                black_box(wasm.invoke(text));
            };
            let mut native_run = || {
                black_box(native_invoke(plugin, text));
            };
            let mut no_fuel_run = || {
                black_box(no_fuel.invoke(text));
            };
            let mut per_record_run = || {
                black_box(per_record.invoke(text));
            };
            // The variants are measured at 10,000 records only, in the same turns.
            let times = if *n == 10_000 {
                measure(
                    budget,
                    &mut [
                        &mut wasm_run,
                        &mut native_run,
                        &mut no_fuel_run,
                        &mut per_record_run,
                    ],
                )
            } else {
                measure(budget, &mut [&mut wasm_run, &mut native_run])
            };
            let (wasm_s, native_s) = (times[0], times[1]);
            let python_s = python.get(&(plugin.key, label.clone())).copied();
            eprintln!(
                "{:>16} {label:>6}: wasm {:>10.1} µs, native {:>10.1} µs, python {}",
                plugin.label,
                wasm_s * 1e6,
                native_s * 1e6,
                python_s.map_or("-".into(), |s| format!("{:.1} µs", s * 1e6)),
            );
            throughput.push(Throughput {
                plugin: plugin.label,
                batch: label.clone(),
                records: *n,
                wasm: wasm_s,
                native: native_s,
                python: python_s,
            });
            if *n == 10_000 {
                let (no_fuel_s, per_record_s) = (times[2], times[3]);
                fuel.push(Variant {
                    plugin: plugin.label,
                    records: *n,
                    base: wasm_s,
                    variant: no_fuel_s,
                });
                fresh.push(Variant {
                    plugin: plugin.label,
                    records: *n,
                    base: wasm_s,
                    variant: per_record_s,
                });
                eprintln!(
                    "{:>16} {label:>6}: fuel off {:.1} µs, fresh instance per record {:.1} µs",
                    plugin.label,
                    no_fuel_s * 1e6,
                    per_record_s * 1e6
                );
            }
        }
    }

    eprintln!("cold start and peak RSS ...");
    let string = &plugins[1];
    let processor_new_ms = measure(
        budget,
        &mut [&mut || {
            black_box(WasmPath::new(string, &[]));
        }],
    )[0] * 1e3;
    let empty = events_dir.path().join("empty.json");
    std::fs::write(&empty, event(0)).expect("empty event");
    let ready_wasm_ms = ready_ms(&[("PLUGIN_URI", string.uri())], &empty, Cache::Empty);
    let ready_cached_ms = ready_ms(&[("PLUGIN_URI", string.uri())], &empty, Cache::Warm);
    let ready_precompiled_ms = precompiled(string, events_dir.path())
        .map(|uri| ready_ms(&[("PLUGIN_URI", uri)], &empty, Cache::Warm));
    let full = event_path(events_dir.path(), "6 MB");
    let rss = plugins
        .iter()
        .map(|p| (p.label, peak_rss_mib(&p.uri(), &full)))
        .collect();

    let report = Report {
        throughput,
        fuel,
        fresh,
        ready_wasm_ms,
        ready_cached_ms,
        ready_precompiled_ms,
        processor_new_ms,
        rss,
        events_dir: events_dir.path().to_path_buf(),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::write(root.join("BENCHMARKS.md"), markdown(&report)).expect("writing BENCHMARKS.md");
    std::fs::write(root.join("benchmarks.svg"), svg(&report)).expect("writing benchmarks.svg");
    eprintln!("wrote BENCHMARKS.md and benchmarks.svg");
}

fn event_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(format!("event-{}.json", label.replace(' ', "")))
}

/// Runs every case of the Python baseline in one interpreter; keyed by (plugin, batch label).
fn python_bench(
    plugins: &[Plugin],
    events: &[(String, usize, String)],
    dir: &Path,
    budget: Duration,
) -> BTreeMap<(&'static str, String), f64> {
    let mut cases = Vec::new();
    for plugin in plugins {
        for (label, ..) in events {
            let config: BTreeMap<_, _> = plugin.config.iter().copied().collect();
            cases.push(json!({
                "name": format!("{}|{label}", plugin.key),
                "plugin": plugin.key,
                "event": event_path(dir, label),
                "config": config,
            }));
        }
    }
    let input = dir.join("python-cases.json");
    std::fs::write(&input, Value::Array(cases).to_string()).expect("python cases");
    let output = Command::new("python3")
        .arg(PYTHON_HANDLER)
        .arg("bench")
        .arg(budget.as_secs_f64().to_string())
        .stdin(std::fs::File::open(&input).expect("python cases"))
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "python baseline failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("python results");
    let mut by_case = BTreeMap::new();
    for result in results {
        let name = result["name"].as_str().unwrap_or_default();
        let (key, label) = name.split_once('|').expect("case name");
        let plugin = plugins.iter().find(|p| p.key == key).expect("plugin");
        assert_eq!(
            result["ok"], result["records"],
            "python {name}: a record failed"
        );
        by_case.insert(
            (plugin.key, label.to_string()),
            result["seconds_per_batch"].as_f64().unwrap_or(f64::NAN),
        );
    }
    by_case
}

/// The `postprocess` binary this benchmark was built with.
const BINARY: &str = env!("CARGO_BIN_EXE_postprocess");

fn command(vars: &[(&str, String)], event: &Path) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.args(["invoke", "--event"])
        .arg(event)
        .env("DESTINATIONS", "default=discard")
        .env("RUST_LOG", "warn")
        .env(
            "STATE_DIR",
            std::env::temp_dir().join("postprocess-bench-state"),
        )
        .stdout(std::process::Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// The compiled-plugin cache (`PLUGIN_CACHE_DIR`) a start-up measurement runs with.
#[derive(Clone, Copy, PartialEq)]
enum Cache {
    /// A new, empty cache every run: a `.wasm` is compiled at start.
    Empty,
    /// One cache for every run, filled by a run before the measured ones.
    Warm,
}

/// Milliseconds from spawning `postprocess invoke` on an empty event until it exits: start-up,
/// configuration, engine, plugin load, one empty invocation and exit. The median of 9.
fn ready_ms(vars: &[(&str, String)], empty: &Path, cache: Cache) -> f64 {
    let warm = tempfile::tempdir().expect("cache dir");
    let run = |dir: &Path| {
        let status = command(vars, empty)
            .env("PLUGIN_CACHE_DIR", dir)
            .status()
            .expect("running postprocess");
        assert!(status.success(), "postprocess invoke failed");
    };
    if cache == Cache::Warm {
        run(warm.path());
    }
    let mut runs: Vec<f64> = (0..9)
        .map(|_| {
            let fresh = tempfile::tempdir().expect("cache dir");
            let dir = match cache {
                Cache::Empty => fresh.path(),
                Cache::Warm => warm.path(),
            };
            let start = Instant::now();
            let status = command(vars, empty)
                .env("PLUGIN_CACHE_DIR", dir)
                .status()
                .expect("running postprocess");
            assert!(status.success(), "postprocess invoke failed");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// A precompiled plugin location, when the binary has a `compile` command.
fn precompiled(plugin: &Plugin, dir: &Path) -> Option<String> {
    let help = Command::new(BINARY)
        .args(["compile", "--help"])
        .output()
        .ok()?;
    if !help.status.success() {
        return None;
    }
    let out = dir.join("plugin.cwasm");
    let status = Command::new(BINARY)
        .arg("compile")
        .arg(plugin.wasm)
        .arg("--output")
        .arg(&out)
        .status()
        .ok()?;
    status.success().then(|| {
        plugin
            .uri()
            .replace(plugin.wasm, &out.display().to_string())
    })
}

/// Peak RSS in MiB of `postprocess invoke` on `event`, read by the Python helper from the
/// child's rusage.
fn peak_rss_mib(uri: &str, event: &Path) -> f64 {
    let cmd = command(&[("PLUGIN_URI", uri.to_string())], event);
    let mut python = Command::new("python3");
    python
        .arg(PYTHON_HANDLER)
        .arg("rss")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            python.env(k, v);
        }
    }
    let output = python.output().expect("running the rss helper");
    let result: Value = serde_json::from_slice(&output.stdout).expect("rss result");
    assert_eq!(
        result["exit_code"], 0,
        "postprocess invoke on the 6 MB event failed"
    );
    result["max_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0
}

/// `--profile PLUGIN RECORDS ITERATIONS [native]`: a fixed workload for callgrind.
fn profile(args: &[String]) {
    let usage = "--profile identity|string|aggregate RECORDS ITERATIONS [native]";
    let plugins = plugins();
    let plugin = plugins
        .iter()
        .find(|p| Some(p.key) == args.first().map(String::as_str))
        .expect(usage);
    let records: usize = args.get(1).and_then(|s| s.parse().ok()).expect(usage);
    let iterations: usize = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    let text = event(records);
    let native = args.get(3).map(String::as_str) == Some("native");
    let wasm = (!native).then(|| WasmPath::new(plugin, &[]));
    let start = Instant::now();
    for _ in 0..iterations {
        match &wasm {
            Some(wasm) => black_box(wasm.invoke(&text)),
            None => black_box(native_invoke(plugin, &text)),
        };
    }
    let per_record = start.elapsed().as_secs_f64() / (iterations * records.max(1)) as f64;
    eprintln!("{:.3} µs per record", per_record * 1e6);
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn rate(records: usize, seconds: f64) -> String {
    let r = records as f64 / seconds;
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn goal(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench` (`cargo bench -p postprocess --bench benchmarks`, source \
         `host/benches/benchmarks.rs`) on {date}. Absolute figures drift on shared machines; the \
         ratios, measured in the same run, are what to steer by.\n"
    );
    let _ = writeln!(
        md,
        "Machine: {} cores (`nproc`), {}; {}; {}; wasmtime 48.\n",
        command_output("nproc", &[]),
        cpu_model(),
        command_output("rustc", &["--version"]),
        command_output("python3", &["--version"]),
    );
    let _ = writeln!(
        md,
        "- **WASM**: the real host path, `Processor::handle_json` from event text to response \
         text, plugins under the default limits (fuel on, 1 ms epoch deadline, one instance per \
         stage per batch), outputs to the `discard` destination.\n\
         - **native**: the same plugin crates compiled into the benchmark and called through the \
         SDK's native host, with the same event decoding and response building.\n\
         - **Python**: `host/benches/python/kda_output_handler.py`, a handler in the style of the \
         AWS KDA-output blueprints (loop, base64-decode, `json`, transform, build the response), \
         CPython, event and response as JSON text.\n\
         - Rows are ~{ROW_BYTES}-byte JSON objects; the 6 MB event holds as many as fit the \
         6 MB invoke limit. Each figure is the fastest of several samples of at least 10 ms, \
         taken in turns with the runs it is compared with, on one thread (so per core).\n"
    );
    let _ = writeln!(md, "![records/s against batch size](benchmarks.svg)\n");

    let _ = writeln!(md, "## Throughput\n");
    let _ = writeln!(
        md,
        "| plugin | batch | WASM records/s | native records/s | Python records/s | WASM ÷ native (time) | WASM × faster than Python | host overhead µs/record |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for t in &r.throughput {
        let batch = if t.batch == "6 MB" {
            format!("6 MB ({} records)", t.records)
        } else {
            t.batch.clone()
        };
        let _ = writeln!(
            md,
            "| {} | {batch} | {} | {} | {} | {:.2} | {} | {:.2} |",
            t.plugin,
            rate(t.records, t.wasm),
            rate(t.records, t.native),
            t.python.map_or("-".into(), |p| rate(t.records, p)),
            t.wasm / t.native,
            t.python
                .map_or("-".into(), |p| format!("{:.1}", p / t.wasm)),
            t.overhead_us(),
        );
    }
    let _ = writeln!(
        md,
        "\nHost overhead = (WASM time − native time) ÷ records: what the sandbox, the component \
         boundary and the pipeline add per record. At batch 1 it includes the per-invocation \
         costs (the plugin thread, an instance for the batch, the summary log line).\n"
    );

    let _ = writeln!(md, "## Fuel metering and instance reuse (10,000 records)\n");
    let _ = writeln!(
        md,
        "| plugin | fuel on (default) µs/record | fuel off µs/record | metering costs | fresh instance per record µs/record | fresh instance costs µs/record |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for (f, p) in r.fuel.iter().zip(&r.fresh) {
        let per = |s: f64| s / f.records as f64 * 1e6;
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:+.1}% | {:.2} | {:.2} |",
            f.plugin,
            per(f.base),
            per(f.variant),
            (f.base / f.variant - 1.0) * 100.0,
            per(p.variant),
            per(p.variant) - per(p.base),
        );
    }

    let _ = writeln!(md, "\n## Start-up and memory\n");
    let _ = writeln!(md, "| what | figure |");
    let _ = writeln!(md, "|---|---:|");
    let _ = writeln!(
        md,
        "| process start → response to an empty event, string-transform `.wasm`, empty cache (compiled at start) | {:.1} ms |",
        r.ready_wasm_ms
    );
    let _ = writeln!(
        md,
        "| the same with the compiled plugin in `PLUGIN_CACHE_DIR` (a warm restart) | {:.1} ms |",
        r.ready_cached_ms
    );
    match r.ready_precompiled_ms {
        Some(ms) => {
            let _ = writeln!(
                md,
                "| the same with the plugin precompiled (`postprocess compile`) | {ms:.1} ms |"
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| the same with a precompiled plugin | n/a: this build has no `postprocess compile` |"
            );
        }
    }
    let _ = writeln!(
        md,
        "| `Processor::new` in process (engine, plugin from the cache, link), string-transform | {:.1} ms |",
        r.processor_new_ms
    );
    for (plugin, mib) in &r.rss {
        let _ = writeln!(
            md,
            "| peak RSS of `postprocess invoke` on the 6 MB event, {plugin} | {mib:.1} MiB |"
        );
    }

    let _ = writeln!(md, "\n## Goals\n");
    let find = |plugin: &str, batch: &str| {
        r.throughput
            .iter()
            .find(|t| t.plugin == plugin && t.batch == batch)
            .expect("measured")
    };
    let identity = find("identity", "10000");
    let string = find("string-transform", "10000");
    let fresh = r
        .fresh
        .iter()
        .find(|v| v.plugin == "identity")
        .expect("measured");
    let fresh_overhead = (fresh.variant - identity.native) / fresh.records as f64 * 1e6;
    let min_python = r
        .throughput
        .iter()
        .filter(|t| t.records >= 100)
        .filter_map(|t| t.python.map(|p| p / t.wasm))
        .fold(f64::INFINITY, f64::min);
    let slowest_full = r
        .throughput
        .iter()
        .filter(|t| t.batch == "6 MB")
        .map(|t| t.wasm * 1e3)
        .fold(0.0, f64::max);
    let _ = writeln!(md, "| goal | measured | |");
    let _ = writeln!(md, "|---|---:|---|");
    let _ = writeln!(
        md,
        "| host overhead ≤ 2 µs/record with reuse (identity, 10,000) | {:.2} µs | {} |",
        identity.overhead_us(),
        goal(identity.overhead_us() <= 2.0)
    );
    let _ = writeln!(
        md,
        "| host overhead ≤ 10 µs/record with a fresh instance (identity, 10,000) | {fresh_overhead:.2} µs | {} |",
        goal(fresh_overhead <= 10.0)
    );
    let _ = writeln!(
        md,
        "| string plugin within 1.5× native (10,000) | {:.2}× | {} |",
        string.wasm / string.native,
        goal(string.wasm / string.native <= 1.5)
    );
    let _ = writeln!(
        md,
        "| ≥ 20× faster than Python (every plugin, batches ≥ 100) | {min_python:.1}× at least | {} |",
        goal(min_python >= 20.0)
    );
    let _ = writeln!(
        md,
        "| 6 MB event in < 100 ms on one core (slowest plugin) | {slowest_full:.1} ms | {} |",
        goal(slowest_full < 100.0)
    );
    match r.ready_precompiled_ms {
        Some(ms) => {
            let _ = writeln!(
                md,
                "| ready within 25 ms of start, precompiled | {ms:.1} ms | {} |",
                goal(ms <= 25.0)
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| ready within 25 ms of start, precompiled | not measurable: no `postprocess compile` in this build ({:.1} ms with a `.wasm`) | - |",
                r.ready_wasm_ms
            );
        }
    }
    let _ = writeln!(
        md,
        "\nEvents were generated into `{}` (removed after the run).",
        r.events_dir.display()
    );
    md
}

/// A hand-written SVG: records/s against batch size, log-log, one panel per plugin, with the
/// WASM path, native and Python as lines.
fn svg(r: &Report) -> String {
    let (panel_w, panel_h, margin) = (300.0, 260.0, 60.0);
    let plugins: Vec<&str> = {
        let mut seen = Vec::new();
        for t in &r.throughput {
            if !seen.contains(&t.plugin) {
                seen.push(t.plugin);
            }
        }
        seen
    };
    let width = margin + plugins.len() as f64 * (panel_w + margin);
    let height = panel_h + 2.0 * margin + 30.0;
    let rates = r.throughput.iter().flat_map(|t| {
        [Some(t.wasm), Some(t.native), t.python]
            .into_iter()
            .flatten()
            .map(move |s| t.records as f64 / s)
    });
    let (lo, hi) = rates.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (y_lo, y_hi) = (lo.log10().floor(), hi.log10().ceil());
    let x_hi = r
        .throughput
        .iter()
        .map(|t| t.records)
        .max()
        .unwrap_or(10_000) as f64;
    let x_hi = x_hi.log10().max(4.0);
    let series = [
        ("WASM", "#d62728"),
        ("native", "#1f77b4"),
        ("Python", "#2ca02c"),
    ];

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let full = r
        .throughput
        .iter()
        .find(|t| t.batch == "6 MB")
        .map_or(0, |t| t.records);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">records/s (one core) against records per batch: 1, 100, the 6 MB event ({},{:03}), 10,000</text>"#,
        width / 2.0,
        full / 1000,
        full % 1000
    );
    for (p, plugin) in plugins.iter().enumerate() {
        let x0 = margin + p as f64 * (panel_w + margin);
        let y0 = margin;
        let px = |records: f64| x0 + (records.log10() / x_hi) * panel_w;
        let py = |rate: f64| y0 + panel_h - (rate.log10() - y_lo) / (y_hi - y_lo) * panel_h;
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#888"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="14">{plugin}</text>"#,
            x0 + panel_w / 2.0,
            y0 - 8.0
        );
        for e in 0..=(x_hi as i32) {
            let x = px(10f64.powi(e));
            let _ = writeln!(
                s,
                r##"<line x1="{x}" y1="{y0}" x2="{x}" y2="{}" stroke="#eee"/><text x="{x}" y="{}" text-anchor="middle">1e{e}</text>"##,
                y0 + panel_h,
                y0 + panel_h + 16.0
            );
        }
        for e in (y_lo as i32)..=(y_hi as i32) {
            let y = py(10f64.powi(e));
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">1e{e}</text>"##,
                x0 + panel_w,
                x0 - 4.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">records per batch</text>"#,
            x0 + panel_w / 2.0,
            y0 + panel_h + 34.0
        );
        let mut rows: Vec<&Throughput> = r
            .throughput
            .iter()
            .filter(|t| t.plugin == *plugin)
            .collect();
        rows.sort_by_key(|t| t.records);
        for (i, (name, color)) in series.iter().enumerate() {
            let points: Vec<String> = rows
                .iter()
                .filter_map(|t| {
                    let secs = [Some(t.wasm), Some(t.native), t.python][i]?;
                    Some(format!(
                        "{:.1},{:.1}",
                        px(t.records as f64),
                        py(t.records as f64 / secs)
                    ))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                points.join(" ")
            );
            for point in &points {
                let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
            }
            if p == 0 {
                let ly = height - 20.0;
                let lx = margin + i as f64 * 110.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
                    lx + 24.0,
                    lx + 30.0,
                    ly + 4.0
                );
            }
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}
