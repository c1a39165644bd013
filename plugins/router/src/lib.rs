//! A plugin that routes each JSON record, unchanged, to a destination chosen by one of its
//! fields, e.g. `type` = `order` to an orders queue and everything else to an archive.
//!
//! # Configuration
//!
//! | key        | value                            | default   |
//! |------------|----------------------------------|-----------|
//! | `field`    | the field whose value routes     | required  |
//! | `routes`   | `value:destination;value2:dest2` | none      |
//! | `fallback` | a destination name               | `default` |
//!
//! With `routes`, a record goes to the destination listed for its field's value, and to
//! `fallback` when the value is not listed. Without `routes`, the value itself names the
//! destination. Either way a record whose field is missing, null, empty, an object or an array
//! goes to `fallback`. String values route by their text; numbers and booleans by their JSON
//! text (`1`, `true`). Route entries are split at their last `:`, so values may contain `:`.
//!
//! A record that is not a JSON object fails with [`Error::InvalidRecord`]; a missing `field`
//! or a malformed `routes` entry fails every record with [`Error::InvalidConfig`].

use postprocess_sdk::{Error, Output, Record, config};
use serde_json::{Map, Value};
use std::borrow::Cow;

fn process(record: Record) -> Result<Vec<Output>, Error> {
    let field = config("field")
        .ok_or_else(|| Error::InvalidConfig("`field` names no field to route by".into()))?;
    let routes = config("routes");
    let routes = routes.as_deref().map(parse_routes).transpose()?;
    let fallback = config("fallback");
    let fallback = fallback.as_deref().unwrap_or(Output::DEFAULT_DESTINATION);

    let row: Map<String, Value> = serde_json::from_slice(&record.data)
        .map_err(|e| Error::InvalidRecord(format!("record is not a JSON object: {e}")))?;
    let value = route_value(row.get(field.trim()));

    let destination = match (&value, &routes) {
        (Some(value), Some(routes)) => routes
            .iter()
            .find(|(listed, _)| listed == value)
            .map_or(fallback, |(_, destination)| destination),
        (Some(value), None) => value,
        (None, _) => fallback,
    };
    let destination = destination.to_owned();
    Ok(vec![Output::to(destination, record.data)])
}

postprocess_sdk::export!(process);

/// The text a field's value routes by, or `None` if it cannot route.
fn route_value(value: Option<&Value>) -> Option<Cow<'_, str>> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
        v @ (Value::Number(_) | Value::Bool(_)) => Some(Cow::Owned(v.to_string())),
        _ => None,
    }
}

fn parse_routes(spec: &str) -> Result<Vec<(&str, &str)>, Error> {
    spec.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .rsplit_once(':')
                .map(|(value, destination)| (value.trim(), destination.trim()))
                .filter(|(_, destination)| !destination.is_empty())
                .ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "`routes` entry `{entry}` is not `value:destination`"
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postprocess_sdk::testing;

    /// Routes `row` with `config` and returns its destination, checking the data is unchanged.
    fn route(config: &[(&str, &str)], row: &str) -> Result<String, Error> {
        testing::reset();
        for (key, value) in config {
            testing::set_config(key, value);
        }
        let mut out = process(Record::new(row))?;
        assert_eq!(out.len(), 1);
        let out = out.pop().unwrap();
        assert_eq!(
            out.data,
            row.as_bytes(),
            "data passes through byte for byte"
        );
        Ok(out.destination)
    }

    #[test]
    fn routes_listed_values_and_falls_back_for_others() {
        let routes = [
            ("field", "type"),
            ("routes", "order:orders; refund : payments;"),
            ("fallback", "archive"),
        ];
        assert_eq!(
            route(&routes, r#"{"type":"order","n":1}"#).unwrap(),
            "orders"
        );
        assert_eq!(
            route(&routes, r#"{ "type" : "refund" }"#).unwrap(),
            "payments"
        );
        assert_eq!(route(&routes, r#"{"type":"other"}"#).unwrap(), "archive");
        assert_eq!(route(&routes, r#"{"type":"Order"}"#).unwrap(), "archive");
    }

    #[test]
    fn missing_or_unroutable_values_go_to_the_fallback() {
        let config = [("field", "type"), ("fallback", "archive")];
        for row in [
            r#"{"kind":"order"}"#,
            r#"{"type":null}"#,
            r#"{"type":""}"#,
            r#"{"type":{"a":1}}"#,
            r#"{"type":["order"]}"#,
        ] {
            assert_eq!(route(&config, row).unwrap(), "archive", "{row}");
        }
    }

    #[test]
    fn fallback_defaults_to_default() {
        let config = [("field", "type"), ("routes", "a:x")];
        assert_eq!(route(&config, r#"{"type":"b"}"#).unwrap(), "default");
        assert_eq!(route(&config, r#"{}"#).unwrap(), "default");
    }

    #[test]
    fn without_routes_the_value_names_the_destination() {
        let config = [("field", "dest")];
        assert_eq!(route(&config, r#"{"dest":"s3-raw"}"#).unwrap(), "s3-raw");
        assert_eq!(route(&config, r#"{"dest":"ünï"}"#).unwrap(), "ünï");
        assert_eq!(route(&config, r#"{"dest":42}"#).unwrap(), "42");
    }

    #[test]
    fn numbers_booleans_and_colons_match_by_text() {
        let config = [
            ("field", "v"),
            ("routes", "1:one;true:yes;12:30:noon;é:accent"),
        ];
        assert_eq!(route(&config, r#"{"v":1}"#).unwrap(), "one");
        assert_eq!(route(&config, r#"{"v":true}"#).unwrap(), "yes");
        assert_eq!(route(&config, r#"{"v":"12:30"}"#).unwrap(), "noon");
        assert_eq!(route(&config, r#"{"v":"é"}"#).unwrap(), "accent");
        // 1.0 is not the text `1`.
        assert_eq!(route(&config, r#"{"v":1.0}"#).unwrap(), "default");
    }

    #[test]
    fn config_errors() {
        let error = |config: &[(&str, &str)]| match route(config, "{}") {
            Err(Error::InvalidConfig(message)) => message,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        assert!(error(&[]).contains("`field`"));
        assert!(error(&[("field", "t"), ("routes", "a:b;click:")]).contains("`click:`"));
        assert!(error(&[("field", "t"), ("routes", "a:b;nocolon")]).contains("`nocolon`"));
    }

    #[test]
    fn non_object_records_are_invalid() {
        for row in ["[]", "\"order\"", "{", ""] {
            assert!(
                matches!(route(&[("field", "t")], row), Err(Error::InvalidRecord(_))),
                "{row}"
            );
        }
    }
}
