//! The KDA contract: every record answered once, in order, `Ok` or `DeliveryFailed`.

use crate::{Env, event, outputs, plugin, ticker_rows};
use postprocess::contract::DeliveryResult;
use serde_json::{Value, json};

fn string_plugin() -> String {
    format!(
        "{}?trim=*&rename=ticker_symbol:symbol&lower=sector",
        plugin::STRING_TRANSFORM
    )
}

#[tokio::test]
async fn answers_every_record_in_order_with_the_transformed_output() {
    let env = Env::new(&string_plugin());
    let handled = env.run(&event(&ticker_rows(3))).await;
    let ids: Vec<_> = handled
        .response
        .records
        .iter()
        .map(|r| r.record_id.as_str())
        .collect();
    assert_eq!(ids, ["r0", "r1", "r2"]);
    assert_eq!(handled.response.ok_count(), 3);
    let out = outputs(&env.out_dir(), "default");
    assert_eq!(out.len(), 3);
    let first: Value = out
        .values()
        .map(|v| serde_json::from_slice::<Value>(v).unwrap())
        .find(|v| v["symbol"] == "T00000")
        .expect("the first row, renamed and trimmed");
    assert_eq!(first["sector"], "technology");
    assert!(first.get("ticker_symbol").is_none());
}

#[tokio::test]
async fn an_empty_batch_gets_an_empty_answer() {
    let env = Env::new(&string_plugin());
    let handled = env.run(&event(&[])).await;
    assert!(handled.response.records.is_empty());
}

#[tokio::test]
async fn unicode_survives_byte_for_byte() {
    let env = Env::new(plugin::IDENTITY);
    let row = json!({"city": "Zürich", "note": "日本語 🚀", "rtl": "שלום"}).to_string();
    let handled = env.run(&event(&[row.clone().into_bytes()])).await;
    assert_eq!(handled.response.ok_count(), 1);
    let out = outputs(&env.out_dir(), "default");
    assert_eq!(out.values().next().unwrap(), row.as_bytes());
}

#[tokio::test]
async fn tolerates_missing_metadata_and_unknown_fields() {
    let env = Env::new(plugin::IDENTITY);
    let text = json!({
        "invocationId": "i", "applicationArn": "a", "somethingNew": {"x": 1},
        "records": [
            {"recordId": "no-metadata", "data": "eyJhIjoxfQ=="},
            {"recordId": "extra", "data": "eyJhIjoyfQ==", "lambdaDeliveryRecordMetadata": {"retryHint": 3, "more": true}, "other": []}
        ]
    })
    .to_string();
    let handled = env.run(&text).await;
    assert_eq!(handled.response.ok_count(), 2);
}

#[tokio::test]
async fn invalid_base64_fails_that_record_alone() {
    let env = Env::new(plugin::IDENTITY);
    let text = json!({"records": [
        {"recordId": "good", "data": "eyJhIjoxfQ=="},
        {"recordId": "bad", "data": "%%% not base64 %%%"},
        {"recordId": "good2", "data": "eyJhIjoyfQ=="}
    ]})
    .to_string();
    let handled = env.run(&text).await;
    let results: Vec<_> = handled.response.records.iter().map(|r| r.result).collect();
    assert_eq!(
        results,
        [
            DeliveryResult::Ok,
            DeliveryResult::DeliveryFailed,
            DeliveryResult::Ok
        ]
    );
    assert_eq!(crate::causes(&handled)[&1], "bad-input");
}

#[tokio::test]
async fn ten_thousand_records() {
    let env = Env::new(&string_plugin());
    let handled = env.run(&event(&ticker_rows(10_000))).await;
    assert_eq!(handled.response.records.len(), 10_000);
    assert_eq!(handled.response.ok_count(), 10_000);
    assert_eq!(handled.response.records[9_999].record_id, "r9999");
    assert_eq!(outputs(&env.out_dir(), "default").len(), 10_000);
}

#[tokio::test]
async fn a_six_megabyte_event() {
    // Base64 inflates by 4/3, so ~4.4 MB of rows make a ~6 MB event: the invoke payload limit.
    let rows: Vec<Vec<u8>> = (0..94)
        .map(|i| {
            json!({"id": i, "blob": "x".repeat(49_000), "sector": "ENERGY"})
                .to_string()
                .into_bytes()
        })
        .collect();
    let text = event(&rows);
    assert!(
        text.len() > 6_000_000 && text.len() <= 6 * 1024 * 1024,
        "{}",
        text.len()
    );
    let env = Env::new(&string_plugin());
    let handled = env.run(&text).await;
    assert_eq!(handled.response.ok_count(), 94);
}

#[tokio::test]
async fn an_event_that_is_not_the_contract_is_an_error() {
    let env = Env::new(plugin::IDENTITY);
    let processor = env.processor().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for (text, expected) in [
        ("not json at all", "not valid JSON"),
        (r#"{"invocationId":"x"}"#, "records"),
        (r#"{"records": 5}"#, "records"),
        ("[]", "not a JSON object"),
    ] {
        let err = processor.handle_json(text, deadline).await.unwrap_err();
        assert!(format!("{err:#}").contains(expected), "{text}: {err:#}");
    }
}
