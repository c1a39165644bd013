//! A plugin that folds JSON records into per-group totals (count, and sum, min and max of
//! numeric fields) and emits one summary per group when the batch is flushed.
//!
//! `process` consumes every record (it returns no outputs) and keeps the running totals of the
//! record's group in state under `agg/<group>`, as compact JSON. `flush` emits, sorted by
//! group, one output per group touched in this batch:
//!
//! ```json
//! {"group":"a","count":3,"sum":{"x":6.0},"min":{"x":1.0},"max":{"x":3.0}}
//! ```
//!
//! # Configuration
//!
//! | key           | value                  | default     |                                      |
//! |---------------|------------------------|-------------|--------------------------------------|
//! | `group_by`    | a field name           | none        | without it, all records form group `*` |
//! | `fields`      | `f1;f2`                | none        | numeric fields to sum, min and max   |
//! | `scope`       | `batch` or `durable`   | `batch`     | where totals live (see below)        |
//! | `destination` | a destination name     | `default`   | where summaries go                   |
//!
//! With `scope` = `batch`, totals cover one batch and are cleared after `flush`. With
//! `durable`, totals are running totals across batches, so late-arriving records update the
//! group they belong to: `flush` emits the updated totals of the groups this batch touched,
//! which it tracks in batch state under `touched/<group>`.
//!
//! A record that is not a JSON object, lacks the `group_by` field (or has it null, an object or
//! an array), or lacks an aggregated field or has a non-number there, fails with
//! [`Error::InvalidRecord`], and the host discards its state writes so the totals stay exact.
//! String, number and boolean group values name the group by their text (`"a"`, `1`, `true`).

use postprocess_sdk::{Error, Level, Output, Record, Scope, config, log, state};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The group of every record when `group_by` is not configured.
const ALL_RECORDS: &str = "*";
/// Prefix of the state keys holding each group's totals.
const TOTALS_PREFIX: &str = "agg/";
/// Prefix of the batch state keys naming the groups a durable batch touched.
const TOUCHED_PREFIX: &str = "touched/";

/// Folds one record into its group's totals. Public so benchmarks can run the same code
/// natively.
pub fn process(record: Record) -> Result<Vec<Output>, Error> {
    let config = Config::load()?;
    let row: Map<String, Value> = serde_json::from_slice(&record.data)
        .map_err(|e| Error::InvalidRecord(format!("record is not a JSON object: {e}")))?;

    let group = match &config.group_by {
        Some(field) => group_name(&row, field)?,
        None => ALL_RECORDS.to_owned(),
    };
    // Read every value before touching state, so a bad record changes nothing even natively.
    let mut values: Vec<(&str, f64)> = Vec::new();
    for field in config.fields() {
        if values.iter().any(|(seen, _)| *seen == field) {
            continue; // Listed twice: count it once.
        }
        values.push((field, number(&row, field)?));
    }

    let key = format!("{TOTALS_PREFIX}{group}");
    let mut totals = load(config.scope, &key)?.unwrap_or_default();
    totals.add(&values)?;
    state::set(config.scope, &key, &to_json(&totals)?);
    if config.scope == Scope::Durable {
        state::set(Scope::Batch, &format!("{TOUCHED_PREFIX}{group}"), b"");
    }
    Ok(vec![])
}

/// Emits the totals of every group this batch touched.
pub fn flush() -> Result<Vec<Output>, Error> {
    let config = Config::load()?;
    // Batch totals are themselves the list of touched groups; durable ones need the list.
    let prefix = match config.scope {
        Scope::Batch => TOTALS_PREFIX,
        Scope::Durable => TOUCHED_PREFIX,
    };
    let mut outputs = Vec::new();
    // Keys come sorted, and share the prefix, so the groups come sorted too.
    for key in state::keys(Scope::Batch, prefix) {
        let group = &key[prefix.len()..];
        match load(config.scope, &format!("{TOTALS_PREFIX}{group}"))? {
            Some(totals) => {
                let summary = to_json(&Summary { group, totals })?;
                outputs.push(Output::to(config.destination.as_str(), summary));
            }
            None => log(
                Level::Warn,
                &format!("group `{group}` was touched but has no stored totals; skipped"),
            ),
        }
        state::delete(Scope::Batch, &key);
    }
    Ok(outputs)
}

postprocess_sdk::export!(process, flush = flush);

struct Config {
    group_by: Option<String>,
    fields: Option<String>,
    scope: Scope,
    destination: String,
}

impl Config {
    fn load() -> Result<Self, Error> {
        let scope = match config("scope").as_deref().map(str::trim) {
            None | Some("batch") => Scope::Batch,
            Some("durable") => Scope::Durable,
            Some(other) => {
                return Err(Error::InvalidConfig(format!(
                    "`scope` is `{other}`; expected `batch` or `durable`"
                )));
            }
        };
        Ok(Config {
            group_by: config("group_by")
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty()),
            fields: config("fields"),
            scope,
            destination: config("destination")
                .unwrap_or_else(|| Output::DEFAULT_DESTINATION.to_owned()),
        })
    }

    /// The aggregated field names, skipping empty entries such as a trailing `;`.
    fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields
            .as_deref()
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|f| !f.is_empty())
    }
}

/// The running totals of one group, as stored in state and emitted by `flush`. Maps are sorted
/// by field name, so output does not depend on the order of `fields`.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Totals {
    count: u64,
    sum: BTreeMap<String, f64>,
    min: BTreeMap<String, f64>,
    max: BTreeMap<String, f64>,
}

impl Totals {
    fn add(&mut self, values: &[(&str, f64)]) -> Result<(), Error> {
        self.count += 1;
        for &(field, x) in values {
            let sum = fold(&mut self.sum, field, x, |a, b| a + b);
            // JSON has no infinity: an overflowed sum would be stored as null and lost.
            if !sum.is_finite() {
                return Err(Error::InvalidRecord(format!(
                    "the sum of `{field}` overflows a 64-bit float"
                )));
            }
            fold(&mut self.min, field, x, f64::min);
            fold(&mut self.max, field, x, f64::max);
        }
        Ok(())
    }
}

/// Combines `x` into the value for `field` (or starts it with `x`) and returns the result.
fn fold(map: &mut BTreeMap<String, f64>, field: &str, x: f64, f: fn(f64, f64) -> f64) -> f64 {
    match map.get_mut(field) {
        Some(value) => {
            *value = f(*value, x);
            *value
        }
        // Allocating the key only for a field's first value keeps the common path cheap.
        None => *map.entry(field.to_owned()).or_insert(x),
    }
}

/// One line of `flush` output.
#[derive(Serialize)]
struct Summary<'a> {
    group: &'a str,
    #[serde(flatten)]
    totals: Totals,
}

fn group_name(row: &Map<String, Value>, field: &str) -> Result<String, Error> {
    match row.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        None | Some(Value::Null) => Err(Error::InvalidRecord(format!(
            "record has no `{field}` to group by"
        ))),
        Some(_) => Err(Error::InvalidRecord(format!(
            "`{field}` must be a string, number or boolean to group by"
        ))),
    }
}

fn number(row: &Map<String, Value>, field: &str) -> Result<f64, Error> {
    match row.get(field) {
        Some(value) => value
            .as_f64()
            .ok_or_else(|| Error::InvalidRecord(format!("field `{field}` is not a number"))),
        None => Err(Error::InvalidRecord(format!(
            "record has no field `{field}` to aggregate"
        ))),
    }
}

fn load(scope: Scope, key: &str) -> Result<Option<Totals>, Error> {
    state::get(scope, key)
        .map(|bytes| serde_json::from_slice(&bytes))
        .transpose()
        // Only another plugin sharing this stage's store could have written it; retrying later
        // is the best a record can do.
        .map_err(|e| Error::Transient(format!("stored totals under `{key}` are unreadable: {e}")))
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Transient(format!("cannot serialize totals: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use postprocess_sdk::testing;

    fn setup(config: &[(&str, &str)]) {
        testing::reset();
        for (key, value) in config {
            testing::set_config(key, value);
        }
    }

    fn feed(rows: &[&str]) {
        for row in rows {
            assert_eq!(process(Record::new(*row)), Ok(vec![]), "{row}");
        }
    }

    /// Flushes and returns the outputs as (destination, text) pairs.
    fn flushed() -> Vec<(String, String)> {
        flush()
            .unwrap()
            .into_iter()
            .map(|o| (o.destination, String::from_utf8(o.data).unwrap()))
            .collect()
    }

    fn texts(outputs: Vec<(String, String)>) -> Vec<String> {
        outputs.into_iter().map(|(_, text)| text).collect()
    }

    fn invalid_record(row: &str) -> String {
        match process(Record::new(row)) {
            Err(Error::InvalidRecord(message)) => message,
            other => panic!("{row}: expected InvalidRecord, got {other:?}"),
        }
    }

    #[test]
    fn batch_totals_per_group_sorted_by_group() {
        setup(&[("group_by", "k"), ("fields", "x;y")]);
        feed(&[
            r#"{"k":"b","x":10,"y":-1.5}"#,
            r#"{"k":"a","x":1,"y":0}"#,
            r#"{"k":"a","x":3,"y":2.25,"extra":"ignored"}"#,
            r#"{"k":"a","x":2,"y":-7}"#,
        ]);
        assert_eq!(
            flushed(),
            vec![
                (
                    "default".to_owned(),
                    r#"{"group":"a","count":3,"sum":{"x":6.0,"y":-4.75},"min":{"x":1.0,"y":-7.0},"max":{"x":3.0,"y":2.25}}"#.to_owned()
                ),
                (
                    "default".to_owned(),
                    r#"{"group":"b","count":1,"sum":{"x":10.0,"y":-1.5},"min":{"x":10.0,"y":-1.5},"max":{"x":10.0,"y":-1.5}}"#.to_owned()
                ),
            ]
        );
    }

    #[test]
    fn flush_clears_batch_state_so_a_second_flush_is_empty() {
        setup(&[("group_by", "k"), ("fields", "x")]);
        feed(&[r#"{"k":"a","x":1}"#]);
        assert_eq!(state::keys(Scope::Batch, ""), vec!["agg/a".to_owned()]);
        assert_eq!(flushed().len(), 1);
        assert!(state::keys(Scope::Batch, "").is_empty());
        assert!(state::keys(Scope::Durable, "").is_empty());
        assert_eq!(flushed(), vec![]);
    }

    #[test]
    fn state_holds_compact_json_totals() {
        setup(&[("fields", "x")]);
        feed(&[r#"{"x":2}"#]);
        let stored = state::get(Scope::Batch, "agg/*").unwrap();
        assert_eq!(
            String::from_utf8(stored).unwrap(),
            r#"{"count":1,"sum":{"x":2.0},"min":{"x":2.0},"max":{"x":2.0}}"#
        );
    }

    #[test]
    fn without_group_by_everything_is_group_star() {
        setup(&[("fields", " x ;")]);
        feed(&[r#"{"x":1}"#, r#"{"x":4,"k":"a"}"#]);
        assert_eq!(
            texts(flushed()),
            vec![r#"{"group":"*","count":2,"sum":{"x":5.0},"min":{"x":1.0},"max":{"x":4.0}}"#]
        );
    }

    #[test]
    fn without_fields_only_counts() {
        setup(&[("group_by", "k")]);
        feed(&[r#"{"k":"a"}"#, r#"{"k":"a","x":"not checked"}"#]);
        assert_eq!(
            texts(flushed()),
            vec![r#"{"group":"a","count":2,"sum":{},"min":{},"max":{}}"#]
        );
    }

    #[test]
    fn a_field_listed_twice_counts_once() {
        setup(&[("fields", "x;x")]);
        feed(&[r#"{"x":3}"#]);
        assert!(texts(flushed())[0].contains(r#""sum":{"x":3.0}"#));
    }

    #[test]
    fn numbers_booleans_and_unicode_name_groups() {
        setup(&[("group_by", "k")]);
        feed(&[
            r#"{"k":7}"#,
            r#"{"k":true}"#,
            r#"{"k":"日本/東京"}"#,
            r#"{"k":1.5}"#,
        ]);
        let groups: Vec<String> = texts(flushed())
            .iter()
            .map(|t| serde_json::from_str::<Value>(t).unwrap()["group"].to_string())
            .collect();
        assert_eq!(
            groups,
            [r#""1.5""#, r#""7""#, r#""true""#, r#""日本/東京""#]
        );
    }

    #[test]
    fn destination_is_configurable() {
        setup(&[("destination", "totals")]);
        feed(&[r#"{}"#]);
        assert_eq!(flushed()[0].0, "totals");
    }

    #[test]
    fn bad_records_fail_without_touching_state() {
        setup(&[("group_by", "k"), ("fields", "x"), ("scope", "durable")]);
        assert!(invalid_record(r#"{"k":"a"}"#).contains("no field `x`"));
        assert!(invalid_record(r#"{"k":"a","x":"12"}"#).contains("`x` is not a number"));
        assert!(invalid_record(r#"{"k":"a","x":null}"#).contains("`x` is not a number"));
        assert!(invalid_record(r#"{"x":1}"#).contains("no `k` to group by"));
        assert!(invalid_record(r#"{"k":null,"x":1}"#).contains("no `k` to group by"));
        assert!(invalid_record(r#"{"k":["a"],"x":1}"#).contains("string, number or boolean"));
        assert!(invalid_record("[1]").contains("not a JSON object"));
        assert!(invalid_record("").contains("not a JSON object"));
        assert!(state::keys(Scope::Batch, "").is_empty());
        assert!(state::keys(Scope::Durable, "").is_empty());
    }

    #[test]
    fn an_overflowing_sum_fails_the_record_and_keeps_the_totals() {
        setup(&[("fields", "x")]);
        feed(&[r#"{"x":1e308}"#]);
        let before = state::get(Scope::Batch, "agg/*");
        assert!(invalid_record(r#"{"x":1e308}"#).contains("overflows"));
        assert_eq!(state::get(Scope::Batch, "agg/*"), before);
    }

    #[test]
    fn unknown_scope_is_a_config_error() {
        setup(&[("scope", "forever")]);
        assert!(matches!(
            process(Record::new("{}")),
            Err(Error::InvalidConfig(m)) if m.contains("`forever`")
        ));
        assert!(matches!(flush(), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn corrupt_stored_totals_are_reported() {
        setup(&[]);
        state::set(Scope::Batch, "agg/*", b"not json");
        assert!(matches!(
            process(Record::new("{}")),
            Err(Error::Transient(m)) if m.contains("agg/*")
        ));
    }

    #[test]
    fn durable_totals_run_across_batches_and_flush_only_touched_groups() {
        setup(&[("group_by", "k"), ("fields", "x"), ("scope", "durable")]);
        feed(&[r#"{"k":"a","x":1}"#, r#"{"k":"b","x":5}"#]);
        assert_eq!(
            texts(flushed()),
            vec![
                r#"{"group":"a","count":1,"sum":{"x":1.0},"min":{"x":1.0},"max":{"x":1.0}}"#,
                r#"{"group":"b","count":1,"sum":{"x":5.0},"min":{"x":5.0},"max":{"x":5.0}}"#,
            ]
        );
        assert!(
            state::keys(Scope::Batch, "").is_empty(),
            "touched list cleared"
        );
        testing::end_batch();

        // A late record for `a` updates a's running totals; `b` is not emitted again.
        feed(&[r#"{"k":"a","x":-2}"#]);
        assert_eq!(
            texts(flushed()),
            vec![r#"{"group":"a","count":2,"sum":{"x":-1.0},"min":{"x":-2.0},"max":{"x":1.0}}"#]
        );
        assert_eq!(
            state::keys(Scope::Durable, ""),
            vec!["agg/a".to_owned(), "agg/b".to_owned()]
        );
        testing::end_batch();
        assert_eq!(flushed(), vec![]);
    }

    #[test]
    fn durable_flush_skips_and_logs_a_touched_group_without_totals() {
        setup(&[("scope", "durable")]);
        state::set(Scope::Batch, "touched/ghost", b"");
        assert_eq!(flushed(), vec![]);
        let logs = testing::logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].0, Level::Warn);
        assert!(logs[0].1.contains("ghost"));
    }
}
