//! Plugin state: batch-scope aggregation, durable state across invocations, and no state left
//! behind by a record that failed.

use crate::{Env, event, outputs, plugin, ticker_rows};
use postprocess::state::{DurableStore, FileStore};
use serde_json::Value;

fn aggregates(env: &Env) -> Vec<Value> {
    let mut all: Vec<Value> = outputs(&env.out_dir(), "default")
        .values()
        .map(|v| serde_json::from_slice(v).unwrap())
        .collect();
    all.sort_by_key(|v| v["group"].as_str().unwrap_or_default().to_string());
    all
}

#[tokio::test]
async fn batch_aggregation_emits_once_per_batch() {
    let env = Env::new(&format!(
        "{}?group_by=sector&fields=price",
        plugin::AGGREGATE
    ));
    let handled = env.run(&event(&ticker_rows(9))).await;
    assert_eq!(handled.response.ok_count(), 9);
    let groups = aggregates(&env);
    assert_eq!(groups.len(), 3, "{groups:?}");
    // Rows 1, 4, 7 are ENERGY with prices 11, 14, 17.
    let energy = &groups[0];
    assert_eq!(energy["group"], "ENERGY");
    assert_eq!(energy["count"], 3);
    assert_eq!(energy["sum"]["price"], 42.0);
    assert_eq!(energy["min"]["price"], 11.0);
    assert_eq!(energy["max"]["price"], 17.0);
}

#[tokio::test]
async fn durable_state_carries_across_invocations() {
    let env = Env::new(&format!(
        "{}?group_by=sector&fields=price&scope=durable",
        plugin::AGGREGATE
    ));
    let processor = env.processor().await;
    crate::run(&processor, &event(&ticker_rows(3))).await;
    // A second invocation, with a new processor as after a cold start on the same /tmp.
    let again = env.processor().await;
    let handled = crate::run(&again, &event(&ticker_rows(6)[3..])).await;
    assert_eq!(handled.response.ok_count(), 3);
    let groups = aggregates(&env);
    let tech = groups
        .iter()
        .filter(|g| g["group"] == "TECHNOLOGY")
        .max_by_key(|g| g["count"].as_u64())
        .unwrap();
    // TECHNOLOGY rows are 0 (price 10) in the first batch and 3 (price 13) in the second.
    assert_eq!(tech["count"], 2, "{groups:?}");
    assert_eq!(tech["sum"]["price"], 23.0);
}

#[tokio::test]
async fn a_failed_record_leaves_no_state() {
    let env = Env::new(&format!("{}?flush=count", plugin::HOSTILE));
    let rows = vec![
        b"first".to_vec(),
        b"POISON:panic".to_vec(),
        b"POISON:error".to_vec(),
    ];
    let handled = env.run(&event(&rows)).await;
    assert_eq!(handled.response.ok_count(), 1);
    // Only the first record's writes took effect: one count, and it was the last durable write.
    let out = outputs(&env.out_dir(), "default");
    assert!(out.values().any(|v| v == br#"{"count":1}"#), "{out:?}");
    let store = FileStore::new(env.state_dir());
    let stage = std::path::Path::new(plugin::HOSTILE)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        store.get(stage, "last").unwrap().as_deref(),
        Some(&b"first"[..])
    );
}

#[tokio::test]
async fn a_failed_flush_fails_every_record_that_fed_it() {
    let env = Env::new(&format!("{}?flush=fail", plugin::HOSTILE));
    let handled = env.run(&event(&[b"a".to_vec(), b"b".to_vec()])).await;
    assert_eq!(handled.response.ok_count(), 0);
    assert!(
        handled
            .failures
            .iter()
            .flatten()
            .all(|f| f.message.contains("flush"))
    );
}
