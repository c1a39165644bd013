//! The Kinesis Data Analytics "Lambda as output" contract: the event KDA sends and the
//! response it expects.
//!
//! KDA sends `{invocationId, applicationArn, records: [{recordId, lambdaDeliveryRecordMetadata:
//! {retryHint}, data}]}` with `data` in base64, and needs every `recordId` answered exactly once
//! with `Ok` or `DeliveryFailed`. Unknown fields are ignored and the metadata is optional.
//! A record that is malformed on its own (bad base64, `data` not a string) fails alone;
//! only an event that is not this contract at all (not JSON, no `records` array) is an error.

use anyhow::{Context, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A decoded KDA output event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The invocation's id, for logs.
    pub invocation_id: String,
    /// The KDA application that produced the rows ("" when absent).
    pub application_arn: String,
    /// The records, in the order they must be answered.
    pub records: Vec<Record>,
}

/// One record of the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The id to answer with.
    pub record_id: String,
    /// Failed deliveries so far (0 when the metadata is absent).
    pub retry_hint: u32,
    /// The decoded row, or why it could not be decoded.
    pub data: Result<Vec<u8>, String>,
}

/// How one record was handled, in KDA's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryResult {
    /// Delivered (or deliberately consumed by a plugin).
    Ok,
    /// Not delivered; KDA retries it.
    DeliveryFailed,
}

/// The answer for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordResponse {
    /// The id from the request.
    pub record_id: String,
    /// `Ok` or `DeliveryFailed`.
    pub result: DeliveryResult,
}

/// The response KDA expects: one entry per request record, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The answers.
    pub records: Vec<RecordResponse>,
}

// The fast path: a well-formed event deserializes straight into these.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    #[serde(default)]
    invocation_id: String,
    #[serde(default)]
    application_arn: String,
    records: Vec<WireRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord {
    record_id: String,
    #[serde(default)]
    lambda_delivery_record_metadata: Option<WireMetadata>,
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMetadata {
    #[serde(default)]
    retry_hint: u32,
}

fn decode_base64(data: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim_end_matches(['\n', '\r']))
        .map_err(|e| format!("data is not valid base64: {e}"))
}

impl Event {
    /// Decodes an event from JSON text. Errors only when the text is not a KDA output event at
    /// all; a malformed record is kept, with its `data` set to the reason.
    pub fn from_json(text: &str) -> Result<Self> {
        match serde_json::from_str::<WireEvent>(text) {
            Ok(wire) => Ok(Event {
                invocation_id: wire.invocation_id,
                application_arn: wire.application_arn,
                records: wire
                    .records
                    .into_iter()
                    .map(|r| Record {
                        record_id: r.record_id,
                        retry_hint: r
                            .lambda_delivery_record_metadata
                            .map_or(0, |m| m.retry_hint),
                        data: decode_base64(&r.data),
                    })
                    .collect(),
            }),
            // Something is off; the slow path finds out whether it is one record or the event.
            Err(_) => {
                Self::from_value(serde_json::from_str(text).context("the event is not valid JSON")?)
            }
        }
    }

    /// Decodes an event leniently from a JSON value (see [`Event::from_json`]).
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(mut event) = value else {
            anyhow::bail!("the event is not a JSON object, so it is not a KDA output event");
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(Value::Array(records)) = event.remove("records") else {
            anyhow::bail!("the event has no \"records\" array, so it is not a KDA output event");
        };
        let records = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let record_id = match r.get("recordId") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                };
                let retry_hint = r
                    .pointer("/lambdaDeliveryRecordMetadata/retryHint")
                    .and_then(Value::as_u64)
                    .map_or(0, |h| u32::try_from(h).unwrap_or(u32::MAX));
                let data = match r.get("data") {
                    Some(Value::String(s)) => decode_base64(s),
                    Some(_) => Err("data is not a base64 string".to_string()),
                    None => Err(format!("record {i} has no data")),
                };
                Record {
                    record_id,
                    retry_hint,
                    data,
                }
            })
            .collect();
        Ok(Event {
            invocation_id: text(event.get("invocationId")),
            application_arn: text(event.get("applicationArn")),
            records,
        })
    }
}

impl Response {
    /// The number of records answered `Ok`.
    pub fn ok_count(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.result == DeliveryResult::Ok)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn decodes_a_well_formed_event() {
        let text = json!({
            "invocationId": "inv",
            "applicationArn": "arn:aws:kinesisanalytics:us-east-1:1:application/a",
            "records": [
                {"recordId": "r1", "lambdaDeliveryRecordMetadata": {"retryHint": 2}, "data": b64("héllo")},
                {"recordId": "r2", "data": b64("x"), "extra": true}
            ],
            "unknown": 1
        })
        .to_string();
        let e = Event::from_json(&text).unwrap();
        assert_eq!(e.invocation_id, "inv");
        assert_eq!(e.records[0].retry_hint, 2);
        assert_eq!(e.records[0].data.as_deref(), Ok("héllo".as_bytes()));
        assert_eq!(e.records[1].retry_hint, 0);
    }

    #[test]
    fn a_malformed_record_is_kept_with_its_reason() {
        let text = json!({"records": [
            {"recordId": "ok", "data": b64("a")},
            {"recordId": "bad", "data": "!!not base64!!"},
            {"recordId": "num", "data": 7},
            {"recordId": 42, "data": b64("b")}
        ]})
        .to_string();
        let e = Event::from_json(&text).unwrap();
        assert_eq!(e.records.len(), 4);
        assert!(e.records[0].data.is_ok());
        assert!(e.records[1].data.as_ref().unwrap_err().contains("base64"));
        assert!(e.records[2].data.is_err());
        assert_eq!(e.records[3].record_id, "42");
    }

    #[test]
    fn not_the_contract_is_an_error_with_a_message() {
        let err = Event::from_json("not json").unwrap_err();
        assert!(format!("{err:#}").contains("not valid JSON"));
        let err = Event::from_json(r#"{"invocationId":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("records"));
        let err = Event::from_json("[1,2]").unwrap_err();
        assert!(err.to_string().contains("not a JSON object"));
    }

    #[test]
    fn response_serializes_in_kda_words() {
        let r = Response {
            records: vec![RecordResponse {
                record_id: "a".into(),
                result: DeliveryResult::DeliveryFailed,
            }],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"records":[{"recordId":"a","result":"DeliveryFailed"}]}"#
        );
    }
}
