//! A 1,000-record batch with poison pills mixed in: each poison pill fails alone, and every
//! other record's output is byte-identical to a clean run of the same records.

use crate::{Env, causes, event, outputs, plugin};
use std::collections::BTreeMap;

const POISONS: [(&str, &str); 6] = [
    ("POISON:loop", "fuel"),
    ("POISON:alloc", "memory"),
    ("POISON:recurse", "stack"),
    ("POISON:panic", "trap"),
    ("POISON:big", "output-limit"),
    ("POISON:error", "plugin-error"),
];

fn hostile_env() -> Env {
    Env::new(&format!("{}?big_bytes=2000000", plugin::HOSTILE))
        .with("PLUGIN_FUEL", "100000000")
        .with("PLUGIN_MEMORY_MB", "16")
        .with("PLUGIN_MAX_OUTPUT_BYTES", "1000000")
}

#[tokio::test]
async fn poison_pills_fail_alone_in_a_large_batch() {
    let mut rows = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..1_000 {
        if i % 97 == 13 {
            let (poison, cause) = POISONS[(i / 97) % POISONS.len()];
            rows.push(format!("{poison} #{i}").into_bytes());
            expected.insert(i, cause);
        } else {
            rows.push(format!("{{\"row\":{i},\"text\":\"ordinary ✓\"}}").into_bytes());
        }
    }
    assert!(
        expected.len() >= 10
            && expected
                .values()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 6
    );

    let env = hostile_env();
    let handled = env.run(&event(&rows)).await;
    assert_eq!(handled.response.records.len(), 1_000);
    assert_eq!(causes(&handled), expected);

    // The clean run: the same ordinary records, without the poison pills.
    let clean_rows: Vec<_> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !expected.contains_key(i))
        .map(|(_, r)| r.clone())
        .collect();
    let clean = hostile_env();
    let clean_handled = clean.run(&event(&clean_rows)).await;
    assert_eq!(clean_handled.response.ok_count(), clean_rows.len());

    let hostile_out = outputs(&env.out_dir(), "default");
    assert_eq!(hostile_out.len(), clean_rows.len());
    assert_eq!(hostile_out, outputs(&clean.out_dir(), "default"));
}
