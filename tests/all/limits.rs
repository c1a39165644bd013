//! Every limit, obeyed and violated. A violation fails that record with the limit's cause; the
//! records around it are delivered.

use crate::{Env, causes, event, outputs, plugin};
use std::time::{Duration, Instant};

/// Runs `[ok, poison, ok]` through the hostile plugin under `vars`; returns the causes.
async fn sandwich(
    poison: &str,
    vars: &[(&str, &str)],
) -> std::collections::BTreeMap<usize, &'static str> {
    let mut env = Env::new(plugin::HOSTILE);
    for (k, v) in vars {
        env = env.with(k, v);
    }
    let rows = vec![
        b"before".to_vec(),
        poison.as_bytes().to_vec(),
        b"after".to_vec(),
    ];
    let handled = env.run(&event(&rows)).await;
    assert_eq!(handled.response.records.len(), 3);
    let out = outputs(&env.out_dir(), "default");
    assert!(
        out.values().any(|v| v == b"before"),
        "first record delivered"
    );
    assert!(out.values().any(|v| v == b"after"), "last record delivered");
    causes(&handled)
}

fn only(index: usize, cause: &'static str) -> std::collections::BTreeMap<usize, &'static str> {
    [(index, cause)].into()
}

#[tokio::test]
async fn fuel_exhaustion_fails_the_record() {
    let causes = sandwich("POISON:loop", &[("PLUGIN_FUEL", "20000000")]).await;
    assert_eq!(causes, only(1, "fuel"));
}

#[tokio::test]
async fn fuel_obeyed() {
    assert!(
        sandwich("ordinary", &[("PLUGIN_FUEL", "20000000")])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn memory_cap_fails_the_record() {
    let causes = sandwich("POISON:alloc", &[("PLUGIN_MEMORY_MB", "32")]).await;
    assert_eq!(causes, only(1, "memory"));
}

#[tokio::test]
async fn memory_obeyed() {
    // A 4 MiB output fits within 32 MiB of memory.
    let env =
        Env::new(&format!("{}?big_bytes=4194304", plugin::HOSTILE)).with("PLUGIN_MEMORY_MB", "32");
    let handled = env.run(&event(&[b"POISON:big".to_vec()])).await;
    assert!(causes(&handled).is_empty(), "{:?}", handled.failures);
}

#[tokio::test]
async fn stack_overflow_fails_the_record() {
    let causes = sandwich("POISON:recurse", &[("PLUGIN_STACK_KB", "256")]).await;
    assert_eq!(causes, only(1, "stack"));
}

#[tokio::test]
async fn both_kinds_of_stack_overflow_are_named() {
    // With a tiny wasm stack, the recursion hits PLUGIN_STACK_KB first; with a roomy one, it
    // exhausts the 1 MiB stack Rust keeps in linear memory first.
    for (stack_kb, expected) in [("16", "wasm stack"), ("4096", "stack in its linear memory")] {
        let env = Env::new(plugin::HOSTILE).with("PLUGIN_STACK_KB", stack_kb);
        let handled = env.run(&event(&[b"POISON:recurse".to_vec()])).await;
        let failure = handled.failures[0].as_ref().expect("the record failed");
        assert_eq!(failure.cause.as_str(), "stack");
        assert!(
            failure.message.contains(expected),
            "{stack_kb}: {}",
            failure.message
        );
    }
}

#[tokio::test]
async fn stack_obeyed() {
    assert!(
        sandwich("ordinary", &[("PLUGIN_STACK_KB", "64")])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn wall_clock_limit_fails_the_record() {
    // Fuel off, so only the wall clock can stop the loop.
    let started = Instant::now();
    let causes = sandwich(
        "POISON:loop",
        &[("PLUGIN_FUEL", "0"), ("PLUGIN_TIMEOUT_MS", "50")],
    )
    .await;
    assert_eq!(causes, only(1, "deadline"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn wall_clock_obeyed() {
    let causes = sandwich(
        "ordinary",
        &[("PLUGIN_FUEL", "0"), ("PLUGIN_TIMEOUT_MS", "50")],
    )
    .await;
    assert!(causes.is_empty());
}

#[tokio::test]
async fn output_limit_fails_the_record() {
    let env = Env::new(&format!("{}?big_bytes=2000000", plugin::HOSTILE))
        .with("PLUGIN_MAX_OUTPUT_BYTES", "1000000");
    let handled = env
        .run(&event(&[b"ok".to_vec(), b"POISON:big".to_vec()]))
        .await;
    assert_eq!(causes(&handled), only(1, "output-limit"));
}

#[tokio::test]
async fn output_limit_obeyed() {
    let env = Env::new(&format!("{}?big_bytes=999999", plugin::HOSTILE))
        .with("PLUGIN_MAX_OUTPUT_BYTES", "1000000");
    let handled = env.run(&event(&[b"POISON:big".to_vec()])).await;
    assert!(causes(&handled).is_empty());
}

#[tokio::test]
async fn the_invocation_deadline_is_never_overrun() {
    // 20 records that each loop until their 100 ms limit: 2 s of work, in a 700 ms invocation.
    let env = Env::new(plugin::HOSTILE)
        .with("PLUGIN_FUEL", "0")
        .with("PLUGIN_TIMEOUT_MS", "100")
        .with("DEADLINE_MARGIN_MS", "200");
    let processor = env.processor().await;
    let rows = vec![b"POISON:loop".to_vec(); 20];
    let parsed = postprocess::contract::Event::from_json(&event(&rows)).unwrap();
    let started = Instant::now();
    let handled = processor
        .handle(parsed, started + Duration::from_millis(700))
        .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(700), "took {elapsed:?}");
    assert_eq!(handled.response.records.len(), 20);
    assert_eq!(handled.response.ok_count(), 0);
    let c = causes(&handled);
    assert!(c.values().all(|&c| c == "deadline"), "{c:?}");
    // Records that never started say so.
    let unstarted = handled
        .failures
        .iter()
        .flatten()
        .filter(|f| f.message.contains("before this record was processed"))
        .count();
    assert!(
        unstarted >= 10,
        "{unstarted} records were cut off before starting"
    );
}

#[tokio::test]
async fn a_fresh_instance_per_record_gives_the_same_answers() {
    let rows = vec![b"a".to_vec(), b"POISON:panic".to_vec(), b"b".to_vec()];
    let batch = Env::new(plugin::HOSTILE).run(&event(&rows)).await;
    let record = Env::new(plugin::HOSTILE)
        .with("INSTANCE_REUSE", "record")
        .run(&event(&rows))
        .await;
    assert_eq!(batch.response, record.response);
    assert_eq!(causes(&record), only(1, "trap"));
}

#[tokio::test]
async fn the_sandbox_has_no_environment_files_or_network() {
    let env = Env::new(plugin::HOSTILE);
    let handled = env.run(&event(&[b"POISON:escape".to_vec()])).await;
    assert!(causes(&handled).is_empty(), "{:?}", handled.failures);
    let out = outputs(&env.out_dir(), "default");
    let report: serde_json::Value = serde_json::from_slice(out.values().next().unwrap()).unwrap();
    assert_eq!(
        report,
        serde_json::json!({"env": 0, "args": 0, "read": 0, "write": false, "connect": false})
    );
}
