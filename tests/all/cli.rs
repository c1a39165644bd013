//! The `postprocess` binary, as an operator runs it locally.

use crate::{event, plugin, ticker_rows};
use postprocess::contract::{DeliveryResult, Response};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn postprocess(plugins: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_postprocess"))
        .args(args)
        .env("PLUGIN_URI", plugins)
        .env("STATE_DIR", state.path())
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("OUTPUT_DIR")
        .env_remove("DESTINATIONS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postprocess");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The response: the last stdout line (stdout-destination lines come first).
fn response(out: &Output) -> Response {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn invoke_prints_outputs_then_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("event.json");
    std::fs::write(&file, event(&ticker_rows(2))).unwrap();
    let out = postprocess(
        &format!(
            "{}?rename=ticker_symbol:symbol&trim=symbol",
            plugin::STRING_TRANSFORM
        ),
        &["invoke", "--event", file.to_str().unwrap()],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["destination"], "default");
    assert!(
        first["data"]
            .as_str()
            .unwrap()
            .contains(r#""symbol":"T00000""#)
    );
    let r = response(&out);
    assert!(r.records.iter().all(|r| r.result == DeliveryResult::Ok));
    // Logs are JSON lines on stderr, with a summary.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("invocation summary") && l.contains("\"ok\":2")),
        "{stderr}"
    );
}

#[test]
fn invoke_reads_stdin_and_answers_every_contract_case() {
    let bad = br#"{"records":[{"recordId":"a","data":"e30="},{"recordId":"b","data":"@@"},{"recordId":"c","data":"e30="}]}"#;
    let out = postprocess(plugin::IDENTITY, &["invoke", "--event", "-"], Some(bad));
    assert!(out.status.success());
    let r = response(&out);
    let results: Vec<_> = r
        .records
        .iter()
        .map(|r| (r.record_id.as_str(), r.result))
        .collect();
    assert_eq!(
        results,
        [
            ("a", DeliveryResult::Ok),
            ("b", DeliveryResult::DeliveryFailed),
            ("c", DeliveryResult::Ok)
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("\"record_id\":\"b\"") && l.contains("bad-input")),
        "{stderr}"
    );
}

#[test]
fn an_unusable_event_exits_non_zero_with_a_message() {
    for (input, expected) in [
        (&b"{oops"[..], "not valid JSON"),
        (br#"{"records":{}}"#, "records"),
    ] {
        let out = postprocess(plugin::IDENTITY, &["invoke", "--event", "-"], Some(input));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_bad_plugin_fails_start_up_with_an_actionable_message() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("plugin.wasm");
    std::fs::write(&not_wasm, b"definitely not wasm").unwrap();
    let event_file = dir.path().join("e.json");
    std::fs::write(&event_file, event(&[])).unwrap();
    let cases = [
        (not_wasm.to_str().unwrap().to_string(), "is not WebAssembly"),
        ("/nonexistent/p.wasm".to_string(), "/nonexistent/p.wasm"),
    ];
    for (uri, expected) in cases {
        let out = postprocess(
            &uri,
            &["invoke", "--event", event_file.to_str().unwrap()],
            None,
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn guest_stdout_and_stderr_reach_the_host_log() {
    let out = postprocess(
        plugin::HOSTILE,
        &["invoke", "--event", "-"],
        Some(event(&[b"POISON:print".to_vec()]).as_bytes()),
    );
    assert!(out.status.success());
    assert_eq!(response(&out).ok_count(), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let guest: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("\"guest\":true"))
        .collect();
    assert_eq!(guest.len(), 2, "{stderr}");
    assert!(
        guest.iter().all(|l| l.contains("\"record_id\":\"r0\"")),
        "{stderr}"
    );
}
