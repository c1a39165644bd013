//! A plugin that cleans up the fields of JSON records: drops, renames, trims, re-cases and masks
//! them, and sends the result as compact JSON to the `default` destination.
//!
//! Each record must be one JSON object. Only its top-level fields are touched, the order of its
//! keys is kept, and fields named in the configuration but missing from a record are ignored.
//!
//! # Configuration
//!
//! Field lists are separated by `;`; whitespace around names is ignored.
//!
//! | key      | value                       | effect                                              |
//! |----------|-----------------------------|-----------------------------------------------------|
//! | `drop`   | `f1;f2`                     | removes the fields                                  |
//! | `rename` | `old:new;old2:new2`         | renames fields in place; split at the last `:`      |
//! | `trim`   | `f1;f2` or `*`              | strips leading and trailing whitespace of strings   |
//! | `upper`  | `f1;f2` or `*`              | upper-cases strings                                 |
//! | `lower`  | `f1;f2` or `*`              | lower-cases strings                                 |
//! | `mask`   | `f1;f2` or `*`              | replaces all but the last 4 characters with `*`     |
//!
//! The steps run in the order of the table, so later steps see the effects of earlier ones: a
//! renamed field is trimmed, upper-cased, ... under its new name. `*` stands for every field.
//! Steps leave fields of other JSON types alone, except `mask`, which turns a number into a
//! masked string (`12345678` becomes `"****5678"`) so its digits do not leak. Masking counts
//! Unicode scalar values, not bytes, so it never splits a character; values of 4 characters or
//! fewer are left as they are. Renames apply all at once (`a:b;b:a` swaps two fields), and a
//! renamed field replaces a field that already had the new name.
//!
//! A malformed value (a `rename` entry without `:`, a name renamed twice, `*` in `drop`) fails
//! every record with [`Error::InvalidConfig`]; a record that is not a JSON object fails with
//! [`Error::InvalidRecord`].

use postprocess_sdk::{Error, Output, Record, config};
use serde_json::{Map, Value};

/// How many trailing characters `mask` leaves readable.
const MASK_KEEP: usize = 4;

/// Cleans up one record's fields as configured. Public so benchmarks can run the same code
/// natively.
pub fn process(record: Record) -> Result<Vec<Output>, Error> {
    let config = Config::load()?;
    let renames = config.rename.as_deref().map(parse_renames).transpose()?;

    let mut fields: Map<String, Value> = serde_json::from_slice(&record.data)
        .map_err(|e| Error::InvalidRecord(format!("record is not a JSON object: {e}")))?;

    if let Some(drop) = &config.drop {
        fields.retain(|key, _| !names(drop).any(|name| name == key));
    }
    if let Some(renames) = &renames {
        fields = rename(fields, renames);
    }
    apply(&mut fields, config.trim.as_deref(), trim);
    apply(&mut fields, config.upper.as_deref(), upper);
    apply(&mut fields, config.lower.as_deref(), lower);
    apply(&mut fields, config.mask.as_deref(), mask);

    // The output is rarely longer than the input, so this usually allocates once.
    let mut data = Vec::with_capacity(record.data.len());
    serde_json::to_writer(&mut data, &fields)
        .map_err(|e| Error::InvalidRecord(format!("cannot serialize the result: {e}")))?;
    Ok(vec![Output::new(data)])
}

postprocess_sdk::export!(process);

/// The configured field lists, kept as the operator wrote them and split on use, so reading the
/// configuration costs one small string per configured key and nothing more.
struct Config {
    drop: Option<String>,
    rename: Option<String>,
    trim: Option<String>,
    upper: Option<String>,
    lower: Option<String>,
    mask: Option<String>,
}

impl Config {
    fn load() -> Result<Self, Error> {
        let config = Config {
            drop: config("drop"),
            rename: config("rename"),
            trim: config("trim"),
            upper: config("upper"),
            lower: config("lower"),
            mask: config("mask"),
        };
        if config
            .drop
            .as_deref()
            .is_some_and(|d| names(d).any(|n| n == "*"))
        {
            return Err(Error::InvalidConfig(
                "`drop` takes field names; `*` would drop every field".into(),
            ));
        }
        Ok(config)
    }
}

/// The names of a `;`-separated list, trimmed, skipping empty entries such as a trailing `;`.
fn names(list: &str) -> impl Iterator<Item = &str> {
    list.split(';').map(str::trim).filter(|n| !n.is_empty())
}

fn parse_renames(spec: &str) -> Result<Vec<(&str, &str)>, Error> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for entry in names(spec) {
        let (old, new) = entry
            .rsplit_once(':')
            .map(|(old, new)| (old.trim(), new.trim()))
            .filter(|(old, new)| !old.is_empty() && !new.is_empty())
            .ok_or_else(|| {
                Error::InvalidConfig(format!("`rename` entry `{entry}` is not `old:new`"))
            })?;
        // Two renames of one field, or two fields renamed to one name, would lose data.
        if pairs.iter().any(|&(o, n)| o == old || n == new) {
            return Err(Error::InvalidConfig(format!(
                "`rename` entry `{entry}` repeats a name used by an earlier entry"
            )));
        }
        pairs.push((old, new));
    }
    Ok(pairs)
}

/// Renames keys in place. A map cannot rename a key where it stands, so this rebuilds it, and
/// only when one of the old names is present.
fn rename(fields: Map<String, Value>, renames: &[(&str, &str)]) -> Map<String, Value> {
    // Only renames of present fields count: an absent field must not replace anything.
    let present: Vec<(&str, &str)> = renames
        .iter()
        .copied()
        .filter(|(old, _)| fields.contains_key(*old))
        .collect();
    if present.is_empty() {
        return fields;
    }
    let mut out = Map::with_capacity(fields.len());
    for (key, value) in fields {
        if let Some((_, new)) = present.iter().find(|(old, _)| *old == key) {
            out.insert((*new).to_owned(), value);
        } else if !present.iter().any(|(_, new)| *new == key) {
            // A key that a renamed field takes over is left out.
            out.insert(key, value);
        }
    }
    out
}

/// Applies `step` to the fields of `list`, or to every field for `*`.
fn apply(fields: &mut Map<String, Value>, list: Option<&str>, step: fn(&mut Value)) {
    let Some(list) = list else { return };
    if names(list).any(|n| n == "*") {
        fields.values_mut().for_each(step);
    } else {
        for name in names(list) {
            if let Some(value) = fields.get_mut(name) {
                step(value);
            }
        }
    }
}

fn trim(value: &mut Value) {
    if let Value::String(s) = value {
        // In place: cut the end, then shift the rest over the leading whitespace.
        s.truncate(s.trim_end().len());
        let start = s.len() - s.trim_start().len();
        s.drain(..start);
    }
}

fn upper(value: &mut Value) {
    if let Value::String(s) = value {
        if s.is_ascii() {
            s.make_ascii_uppercase();
        } else {
            *s = s.to_uppercase();
        }
    }
}

fn lower(value: &mut Value) {
    if let Value::String(s) = value {
        if s.is_ascii() {
            s.make_ascii_lowercase();
        } else {
            *s = s.to_lowercase();
        }
    }
}

fn mask(value: &mut Value) {
    let masked = match value {
        Value::String(s) => masked(s),
        Value::Number(n) => {
            let digits = n.to_string();
            Some(masked(&digits).unwrap_or(digits))
        }
        _ => None,
    };
    if let Some(masked) = masked {
        *value = Value::String(masked);
    }
}

/// `s` with all but its last [`MASK_KEEP`] characters replaced by `*`, or `None` if it is too
/// short to mask.
fn masked(s: &str) -> Option<String> {
    let hidden = s
        .chars()
        .count()
        .checked_sub(MASK_KEEP)
        .filter(|&n| n > 0)?;
    let (cut, _) = s.char_indices().nth(hidden)?;
    let mut out = String::with_capacity(hidden + s.len() - cut);
    out.extend(std::iter::repeat_n('*', hidden));
    out.push_str(&s[cut..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postprocess_sdk::testing;

    /// Runs one record through the plugin with `config` and returns the output text.
    fn run(config: &[(&str, &str)], input: &str) -> Result<String, Error> {
        testing::reset();
        for (key, value) in config {
            testing::set_config(key, value);
        }
        let mut out = process(Record::new(input))?;
        assert_eq!(out.len(), 1, "one output per record");
        let out = out.pop().unwrap();
        assert_eq!(out.destination, "default");
        Ok(String::from_utf8(out.data).unwrap())
    }

    fn config_error(config: &[(&str, &str)]) -> String {
        match run(config, r#"{"a":1}"#) {
            Err(Error::InvalidConfig(message)) => message,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn without_config_compacts_and_keeps_key_order() {
        let out = run(
            &[],
            "{ \"z\": 1,\n \"a\": [1, 2], \"m\": {\"y\": null, \"b\": true} }",
        );
        assert_eq!(out.unwrap(), r#"{"z":1,"a":[1,2],"m":{"y":null,"b":true}}"#);
    }

    #[test]
    fn drop_removes_listed_fields_and_ignores_missing_ones() {
        let out = run(
            &[("drop", " b ; missing;d;")],
            r#"{"a":1,"b":2,"c":3,"d":4}"#,
        );
        assert_eq!(out.unwrap(), r#"{"a":1,"c":3}"#);
    }

    #[test]
    fn drop_rejects_star() {
        assert!(config_error(&[("drop", "a;*")]).contains("drop"));
    }

    #[test]
    fn rename_keeps_position_and_ignores_missing_fields() {
        let out = run(&[("rename", "b:beta;missing:x")], r#"{"a":1,"b":2,"c":3}"#);
        assert_eq!(out.unwrap(), r#"{"a":1,"beta":2,"c":3}"#);
    }

    #[test]
    fn rename_applies_all_at_once() {
        let swapped = run(&[("rename", "a:b;b:a")], r#"{"a":1,"b":2}"#);
        assert_eq!(swapped.unwrap(), r#"{"b":1,"a":2}"#);
        // a:b;b:c is not a chain: a ends as b, b ends as c.
        let shifted = run(&[("rename", "a:b;b:c")], r#"{"a":1,"b":2}"#);
        assert_eq!(shifted.unwrap(), r#"{"b":1,"c":2}"#);
    }

    #[test]
    fn renamed_field_replaces_existing_field_of_that_name() {
        let out = run(&[("rename", "a:b")], r#"{"b":"old","a":"new","c":0}"#);
        assert_eq!(out.unwrap(), r#"{"b":"new","c":0}"#);
        // Renaming to an existing name when the source is absent leaves the existing field.
        let out = run(&[("rename", "x:b")], r#"{"b":"kept"}"#);
        assert_eq!(out.unwrap(), r#"{"b":"kept"}"#);
    }

    #[test]
    fn rename_splits_at_the_last_colon() {
        let out = run(&[("rename", "urn:id : id")], r#"{"urn:id":7}"#);
        assert_eq!(out.unwrap(), r#"{"id":7}"#);
    }

    #[test]
    fn malformed_rename_is_a_config_error() {
        assert!(config_error(&[("rename", "a:b;nocolon")]).contains("`nocolon`"));
        assert!(config_error(&[("rename", ":b")]).contains("old:new"));
        assert!(config_error(&[("rename", "a: ")]).contains("old:new"));
        assert!(config_error(&[("rename", "a:c;b:c")]).contains("repeats"));
        assert!(config_error(&[("rename", "a:b;a:c")]).contains("repeats"));
    }

    #[test]
    fn config_errors_come_before_record_errors() {
        testing::reset();
        testing::set_config("rename", "bad");
        assert!(matches!(
            process(Record::new("not json")),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn trim_named_fields_only_and_only_strings() {
        let out = run(
            &[("trim", "a;n;missing")],
            r#"{"a":"  x y \t\n","b":"  untouched ","n":5}"#,
        );
        assert_eq!(out.unwrap(), r#"{"a":"x y","b":"  untouched ","n":5}"#);
    }

    #[test]
    fn trim_star_trims_every_string_including_unicode_spaces() {
        let out = run(
            &[("trim", "*")],
            "{\"a\":\" x \",\"b\":\"\u{3000}日本\u{a0}\",\"c\":[\" y \"],\"d\":\"   \"}",
        );
        assert_eq!(out.unwrap(), r#"{"a":"x","b":"日本","c":[" y "],"d":""}"#);
    }

    #[test]
    fn upper_and_lower_handle_ascii_and_unicode() {
        let out = run(
            &[("upper", "a;b"), ("lower", "c;d")],
            r#"{"a":"abc-1","b":"straße é","c":"ABC","d":"ÉCOLE ΣΑΣ","e":"Keep"}"#,
        );
        assert_eq!(
            out.unwrap(),
            r#"{"a":"ABC-1","b":"STRASSE É","c":"abc","d":"école σας","e":"Keep"}"#
        );
    }

    #[test]
    fn upper_and_lower_star_leave_non_strings_alone() {
        let out = run(&[("upper", "*")], r#"{"a":"x","n":1.5,"t":true,"z":null}"#);
        assert_eq!(out.unwrap(), r#"{"a":"X","n":1.5,"t":true,"z":null}"#);
        let out = run(&[("lower", "*")], r#"{"a":"X","o":{"k":"V"}}"#);
        assert_eq!(out.unwrap(), r#"{"a":"x","o":{"k":"V"}}"#);
    }

    #[test]
    fn mask_keeps_the_last_four_characters() {
        let out = run(
            &[("mask", "card;short;exact;missing")],
            r#"{"card":"4111111111111111","short":"abc","exact":"abcd","other":"visible"}"#,
        );
        assert_eq!(
            out.unwrap(),
            r#"{"card":"************1111","short":"abc","exact":"abcd","other":"visible"}"#
        );
    }

    #[test]
    fn mask_counts_characters_not_bytes() {
        let out = run(
            &[("mask", "*")],
            r#"{"a":"日本語テキスト","b":"😀😀😀😀😀x","c":"ü"}"#,
        );
        assert_eq!(
            out.unwrap(),
            r#"{"a":"***テキスト","b":"**😀😀😀x","c":"ü"}"#
        );
    }

    #[test]
    fn mask_turns_numbers_into_masked_strings() {
        let out = run(
            &[("mask", "acct;pin;neg;flag")],
            r#"{"acct":12345678,"pin":42,"neg":-1234.5,"flag":true}"#,
        );
        assert_eq!(
            out.unwrap(),
            r#"{"acct":"****5678","pin":"42","neg":"***34.5","flag":true}"#
        );
    }

    #[test]
    fn steps_run_in_the_documented_order() {
        let config = [
            ("drop", "secret"),
            // Renaming a dropped field does nothing: drop runs first.
            ("rename", "secret:s;name:Name;card:Card"),
            // The later steps see the new names.
            ("trim", "Name;Card"),
            ("upper", "Name"),
            ("lower", "Name"),
            // Masking after trimming hides digits, not spaces.
            ("mask", "Card"),
        ];
        let out = run(
            &config,
            r#"{"name":"  Ada ","secret":"x","card":" 1234567 ","name2":" b "}"#,
        );
        assert_eq!(
            out.unwrap(),
            r#"{"Name":"ada","Card":"***4567","name2":" b "}"#
        );
    }

    #[test]
    fn non_object_records_are_invalid() {
        for input in ["[1,2]", "42", "\"text\"", "null", "{\"a\":", "", "not json"] {
            match run(&[], input) {
                Err(Error::InvalidRecord(m)) => {
                    assert!(m.starts_with("record is not a JSON object"), "{input}: {m}")
                }
                other => panic!("{input}: expected InvalidRecord, got {other:?}"),
            }
        }
        testing::reset();
        assert!(matches!(
            process(Record::new(vec![b'{', 0xff, b'}'])),
            Err(Error::InvalidRecord(_))
        ));
    }
}
