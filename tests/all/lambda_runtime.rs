//! The real `postprocess` binary under the Lambda Runtime API protocol, through the real
//! `lambda_runtime` client: cargo-lambda's emulator, and a server that sends real deadlines.

use crate::{event, plugin, ticker_rows};
use postprocess::contract::{DeliveryResult, Response};
use postprocess_tests::services::{ChildProcess, InvokeOutcome, RuntimeApi};
use std::process::Command;
use std::time::{Duration, Instant};

fn function(
    api: &RuntimeApi,
    plugins: &str,
    extra: &[(&str, &str)],
) -> (ChildProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_postprocess"));
    command
        .envs(api.env())
        .env("PLUGIN_URI", plugins)
        .env("STATE_DIR", dir.path().join("state"))
        .env("OUTPUT_DIR", dir.path().join("out"))
        .env_remove("DESTINATIONS");
    for (k, v) in extra {
        command.env(k, v);
    }
    (ChildProcess::spawn("postprocess", command).unwrap(), dir)
}

fn parse(body: &str) -> Response {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn serves_invocations_under_cargo_lambda() {
    let api = RuntimeApi::start().unwrap();
    let (mut lambda, dir) = function(&api, &format!("{}?trim=*", plugin::STRING_TRANSFORM), &[]);

    let mut rows = ticker_rows(3);
    rows.insert(1, b"not json".to_vec());
    let outcome = api
        .invoke_watching(&event(&rows), &mut lambda)
        .await
        .unwrap();
    let InvokeOutcome::Response(body) = outcome else {
        panic!("function error: {outcome:?}\n{}", lambda.log());
    };
    let response = parse(&body);
    let results: Vec<_> = response.records.iter().map(|r| r.result).collect();
    use DeliveryResult::*;
    assert_eq!(results, [Ok, DeliveryFailed, Ok, Ok]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("out/default"))
            .unwrap()
            .count(),
        3
    );

    // An event that is not the contract is a function error, and the function keeps serving.
    let outcome = api
        .invoke_watching("{\"no\":\"records\"}", &mut lambda)
        .await
        .unwrap();
    let InvokeOutcome::FunctionError(error) = outcome else {
        panic!("expected a function error, got {outcome:?}");
    };
    assert!(error.contains("records"), "{error}");
    let body = api
        .invoke_watching(&event(&ticker_rows(2)), &mut lambda)
        .await
        .unwrap();
    assert!(matches!(body, InvokeOutcome::Response(b) if parse(&b).ok_count() == 2));
    assert!(!lambda.log().contains("panicked"), "{}", lambda.log());
}

#[tokio::test]
async fn answers_before_the_lambda_deadline() {
    // A 2 s function timeout, and records that each loop until their 300 ms limit.
    let timeout = Duration::from_secs(2);
    let api = RuntimeApi::start_builtin(timeout).unwrap();
    let (mut lambda, _dir) = function(
        &api,
        plugin::HOSTILE,
        &[
            ("PLUGIN_FUEL", "0"),
            ("PLUGIN_TIMEOUT_MS", "300"),
            ("DEADLINE_MARGIN_MS", "400"),
        ],
    );
    // Warm up: the first invoke includes start-up (compiling the plugin).
    let warm = api
        .invoke_watching(&event(&[b"ok".to_vec()]), &mut lambda)
        .await
        .unwrap();
    assert!(matches!(warm, InvokeOutcome::Response(_)), "{warm:?}");

    let started = Instant::now();
    let mut rows = vec![b"POISON:loop".to_vec(); 20];
    rows.push(b"last".to_vec());
    let outcome = api
        .invoke_watching(&event(&rows), &mut lambda)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let InvokeOutcome::Response(body) = outcome else {
        panic!("{outcome:?}");
    };
    let response = parse(&body);
    assert_eq!(response.records.len(), 21);
    assert_eq!(
        response.ok_count(),
        0,
        "the last record could not start in time"
    );
    assert!(elapsed < timeout, "answered after {elapsed:?}");
    let log = lambda.log();
    assert!(log.contains("\"cause\":\"deadline\""), "{log}");
}

#[tokio::test]
async fn a_bad_configuration_fails_the_init_phase() {
    let api = RuntimeApi::start_builtin(Duration::from_secs(5)).unwrap();
    let (mut lambda, _dir) = function(&api, "/nonexistent/plugin.wasm", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = lambda.try_exit_status().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the function did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let log = lambda.log();
    assert!(log.contains("/nonexistent/plugin.wasm"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
