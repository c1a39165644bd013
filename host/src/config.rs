//! Configuration: one struct, read from the environment once at start.
//!
//! Every setting has a default except `PLUGIN_URI`. Reading never panics: a malformed value is
//! an error naming the variable, which fails start-up (the Lambda init phase).

use crate::aws::AwsSettings;
use crate::plugin_source::{PluginSource, Sha256Digest};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the host is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The pipeline, in order (`PLUGIN_URI`, comma-separated). Each stage's outputs feed the
    /// next; the last stage's outputs are delivered.
    pub plugins: Vec<PluginSpec>,
    /// Resource limits applied to every plugin call.
    pub limits: Limits,
    /// Whether a plugin instance serves a whole batch or one record (`INSTANCE_REUSE`).
    pub instance_reuse: InstanceReuse,
    /// Where durable plugin state lives (`STATE_DIR`, default `/tmp/postprocess-state`).
    pub state_dir: PathBuf,
    /// Destination bindings, `name=target,...` (`DESTINATIONS`). When unset, `default` goes to
    /// files under `OUTPUT_DIR` if that is set, else to stdout as JSON lines.
    pub destinations: Option<String>,
    /// Directory for the file destination (`OUTPUT_DIR`).
    pub output_dir: Option<PathBuf>,
    /// Time kept back from the Lambda deadline for delivery and the response
    /// (`DEADLINE_MARGIN_MS`, default 1000).
    pub deadline_margin: Duration,
    /// Largest plugin file or download accepted, enforced while reading
    /// (`PLUGIN_MAX_BYTES`, default 50 MiB).
    pub plugin_max_bytes: u64,
    /// Where compiled plugins are cached by content digest (`PLUGIN_CACHE_DIR`,
    /// default `/tmp/postprocess-cache`).
    pub plugin_cache_dir: PathBuf,
    /// How to reach AWS (S3 plugin sources and the AWS destinations), from the standard AWS
    /// variables.
    pub aws: AwsSettings,
}

/// Per-record resource limits. Each one, when hit, fails that record alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) per call (`PLUGIN_FUEL`, default 100000000;
    /// `0` turns metering off).
    pub fuel: Option<u64>,
    /// Linear memory cap per plugin instance in bytes (`PLUGIN_MEMORY_MB`, default 64).
    pub memory_bytes: usize,
    /// Wasm stack limit in bytes (`PLUGIN_STACK_KB`, default 512).
    pub stack_bytes: usize,
    /// Wall-clock limit per call (`PLUGIN_TIMEOUT_MS`, default 1000).
    pub call_timeout: Duration,
    /// Total bytes a call may output (`PLUGIN_MAX_OUTPUT_BYTES`, default 6291456).
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Some(100_000_000),
            memory_bytes: 64 << 20,
            stack_bytes: 512 << 10,
            call_timeout: Duration::from_millis(1000),
            output_bytes: 6 << 20,
        }
    }
}

/// How long a plugin instance lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceReuse {
    /// One instance per stage per batch, replaced only after a trap. About 1 µs per call.
    #[default]
    Batch,
    /// A fresh instance for every record: nothing in guest memory survives a record,
    /// at tens of µs per record.
    Record,
}

/// One pipeline stage as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// Where the plugin is, without its query string and fragment: a path, or a `file://`,
    /// `s3://`, `https://` (or loopback `http://`) URI.
    pub location: String,
    /// Where the bytes come from, parsed from `location`.
    pub source: PluginSource,
    /// The digest the bytes must have (`#sha256=<hex>` on the URI), checked before compiling.
    pub pin: Option<Sha256Digest>,
    /// The stage's name (the file stem): used in logs, to key `PLUGIN_CONFIG` and to
    /// namespace durable state.
    pub name: String,
    /// The values the plugin reads with `config-get`: the URI's query string, overlaid by
    /// `PLUGIN_CONFIG`.
    pub config: BTreeMap<String, String>,
}

impl PluginSpec {
    /// Parses one stage: `LOCATION[?key=value&...][#sha256=HEX]`, where `LOCATION` is a path or
    /// a `file://`, `s3://bucket/key`, `https://` (or loopback `http://`) URI. Query values are
    /// percent-decoded, so `%2C` stands for a comma.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            bail!("empty plugin location");
        }
        let (text, fragment) = match text.split_once('#') {
            Some((t, f)) => (t, Some(f)),
            None => (text, None),
        };
        let pin = fragment
            .map(|f| {
                let hex = f.strip_prefix("sha256=").with_context(|| {
                    format!("the fragment #{f} is not a pin: write #sha256=<64 hex digits>")
                })?;
                Sha256Digest::parse_hex(hex)
            })
            .transpose()?;
        let (location, query) = match text.split_once('?') {
            Some((l, q)) => (l, q),
            None => (text, ""),
        };
        let config = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let source = PluginSource::parse(location)?;
        let name = source
            .file_stem()
            .with_context(|| format!("plugin location {location:?} names no file"))?;
        Ok(PluginSpec {
            location: location.to_string(),
            source,
            pin,
            name,
            config,
        })
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| set_value(&lookup, key);
        let number = |key: &str, default: u64| whole_number(&lookup, key, default);

        let uri = get("PLUGIN_URI").context(
            "PLUGIN_URI is not set: name the plugin (a .wasm component), or several separated by commas",
        )?;
        let mut plugins = uri
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| PluginSpec::parse(s).with_context(|| format!("PLUGIN_URI entry {s:?}")))
            .collect::<Result<Vec<_>>>()?;
        if plugins.is_empty() {
            bail!("PLUGIN_URI names no plugin");
        }
        if let Some(json) = get("PLUGIN_CONFIG") {
            apply_plugin_config(&mut plugins, &json).context("PLUGIN_CONFIG")?;
        }

        let limits = Limits::from_lookup(&lookup)?;

        let instance_reuse = match get("INSTANCE_REUSE").as_deref().map(str::trim) {
            None | Some("batch") => InstanceReuse::Batch,
            Some("record") => InstanceReuse::Record,
            Some(other) => bail!("INSTANCE_REUSE={other:?}: use \"batch\" or \"record\""),
        };

        let plugin_max_bytes = number("PLUGIN_MAX_BYTES", 50 << 20)?;
        if plugin_max_bytes == 0 {
            bail!("PLUGIN_MAX_BYTES must be at least 1");
        }

        Ok(Config {
            plugins,
            limits,
            instance_reuse,
            state_dir: get("STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp/postprocess-state")),
            destinations: get("DESTINATIONS"),
            output_dir: get("OUTPUT_DIR").map(PathBuf::from),
            deadline_margin: Duration::from_millis(number("DEADLINE_MARGIN_MS", 1000)?),
            plugin_max_bytes,
            plugin_cache_dir: get("PLUGIN_CACHE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp/postprocess-cache")),
            aws: AwsSettings::from_lookup(&lookup)?,
        })
    }
}

/// Overlays `PLUGIN_CONFIG` (a JSON object keyed by stage name or stage index, each value an
/// object of settings) on the stages' query-string settings. Precedence, lowest first: the
/// query string, the stage-name entry, the index entry. A key naming no stage is an error, so a
/// typo does not go unnoticed.
fn apply_plugin_config(plugins: &mut [PluginSpec], json: &str) -> Result<()> {
    let root: serde_json::Value = serde_json::from_str(json).context(
        "not valid JSON: write an object keyed by stage name or index, e.g. \
         {\"string_transform\": {\"rename\": \"a:b\"}}",
    )?;
    let serde_json::Value::Object(entries) = root else {
        bail!("must be a JSON object keyed by stage name or index");
    };
    let mut by_name = Vec::new();
    let mut by_index = Vec::new();
    for (key, value) in entries {
        let serde_json::Value::Object(settings) = value else {
            bail!("the entry {key:?} must be an object of settings");
        };
        let mut values = BTreeMap::new();
        for (name, value) in settings {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => bail!(
                    "the setting {key:?}.{name:?} is {other}: use a string, number or boolean"
                ),
            };
            values.insert(name, text);
        }
        match key.parse::<usize>() {
            Ok(index) if index < plugins.len() => by_index.push((index, values)),
            Ok(index) => bail!(
                "the entry {key:?} names stage index {index}, but the pipeline has {} stage(s)",
                plugins.len()
            ),
            Err(_) if plugins.iter().any(|p| p.name == key) => by_name.push((key, values)),
            Err(_) => bail!(
                "the entry {key:?} names no stage; the stages are {:?} (or use an index)",
                plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>()
            ),
        }
    }
    for (name, values) in by_name {
        for plugin in plugins.iter_mut().filter(|p| p.name == name) {
            plugin.config.extend(values.clone());
        }
    }
    for (index, values) in by_index {
        plugins[index].config.extend(values);
    }
    Ok(())
}

/// A setting's value through `lookup`; blank counts as unset.
fn set_value(lookup: impl Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    lookup(key).filter(|v| !v.trim().is_empty())
}

/// A whole-number setting, `default` when unset; anything else is an error naming the setting.
fn whole_number(lookup: impl Fn(&str) -> Option<String>, key: &str, default: u64) -> Result<u64> {
    match set_value(lookup, key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{key}={v:?} is not a whole number")),
    }
}

impl Limits {
    /// Reads the limits from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the limits through `lookup` (also what `postprocess compile` needs, since they
    /// shape the engine a precompiled artifact must match).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let number = |key: &str, default: u64| whole_number(&lookup, key, default);
        let defaults = Limits::default();
        let fuel = number("PLUGIN_FUEL", defaults.fuel.unwrap_or(0))?;
        let limits = Limits {
            fuel: (fuel > 0).then_some(fuel),
            memory_bytes: usize::try_from(number("PLUGIN_MEMORY_MB", 64)?)
                .ok()
                .and_then(|mb| mb.checked_mul(1 << 20))
                .filter(|&b| b > 0)
                .context("PLUGIN_MEMORY_MB must be between 1 and 4096")?,
            stack_bytes: usize::try_from(number("PLUGIN_STACK_KB", 512)?)
                .ok()
                .and_then(|kb| kb.checked_mul(1 << 10))
                .filter(|&b| (16 << 10..=64 << 20).contains(&b))
                .context("PLUGIN_STACK_KB must be between 16 and 65536")?,
            call_timeout: Duration::from_millis(number("PLUGIN_TIMEOUT_MS", 1000)?.max(1)),
            output_bytes: usize::try_from(number(
                "PLUGIN_MAX_OUTPUT_BYTES",
                defaults.output_bytes as u64,
            )?)
            .context("PLUGIN_MAX_OUTPUT_BYTES is too large")?,
        };
        if limits.memory_bytes > 4 << 30 {
            bail!("PLUGIN_MEMORY_MB must be between 1 and 4096");
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_plugin_is_set() {
        let c = config(&[("PLUGIN_URI", "/p/string.wasm")]).unwrap();
        assert_eq!(c.plugins.len(), 1);
        assert_eq!(c.plugins[0].name, "string");
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.instance_reuse, InstanceReuse::Batch);
    }

    #[test]
    fn a_pipeline_with_per_stage_config() {
        let c = config(&[(
            "PLUGIN_URI",
            "file:///p/router.wasm?field=type, /p/string.wasm?upper=name%3Bcity&trim=*",
        )])
        .unwrap();
        assert_eq!(c.plugins[0].location, "file:///p/router.wasm");
        assert_eq!(c.plugins[0].config["field"], "type");
        assert_eq!(c.plugins[1].name, "string");
        assert_eq!(c.plugins[1].config["upper"], "name;city");
        assert_eq!(c.plugins[1].config["trim"], "*");
        assert_eq!(
            c.plugins[0].source,
            PluginSource::Local(PathBuf::from("/p/router.wasm"))
        );
    }

    #[test]
    fn remote_sources_and_pins_parse() {
        let hex = "ab".repeat(32);
        let c = config(&[(
            "PLUGIN_URI",
            &format!("s3://bucket/dir/router.wasm?field=type#sha256={hex},https://example.com/p/string.cwasm"),
        )])
        .unwrap();
        assert_eq!(
            c.plugins[0].source,
            PluginSource::S3 {
                bucket: "bucket".into(),
                key: "dir/router.wasm".into()
            }
        );
        assert_eq!(c.plugins[0].name, "router");
        assert_eq!(c.plugins[0].config["field"], "type");
        assert_eq!(c.plugins[0].pin.unwrap().to_string(), hex);
        assert_eq!(c.plugins[1].name, "string");
        assert!(c.plugins[1].pin.is_none());

        for (uri, expected) in [
            ("a.wasm#sha256=12", "64 hex digits"),
            ("a.wasm#md5=12", "#sha256="),
            ("http://example.com/a.wasm", "loopback"),
            ("ftp://example.com/a.wasm", "unsupported"),
            ("s3://bucket", "s3://bucket/key"),
        ] {
            let e = config(&[("PLUGIN_URI", uri)]).unwrap_err();
            assert!(format!("{e:#}").contains(expected), "{uri}: {e:#}");
        }
        assert!(config(&[("PLUGIN_URI", "http://127.0.0.1:9/a.wasm")]).is_ok());
    }

    #[test]
    fn plugin_config_overlays_the_query_string_by_name_then_index() {
        let c = config(&[
            (
                "PLUGIN_URI",
                "/p/a.wasm?x=query&y=query,/p/b.wasm,/p/a.wasm",
            ),
            (
                "PLUGIN_CONFIG",
                r#"{"a": {"x": "name", "n": 3}, "2": {"x": "index"}, "b": {"flag": true}}"#,
            ),
        ])
        .unwrap();
        assert_eq!(c.plugins[0].config["x"], "name");
        assert_eq!(c.plugins[0].config["y"], "query");
        assert_eq!(c.plugins[0].config["n"], "3");
        assert_eq!(c.plugins[1].config["flag"], "true");
        assert_eq!(c.plugins[2].config["x"], "index");

        for (json, expected) in [
            ("{oops", "not valid JSON"),
            (r#"{"nope": {}}"#, "names no stage"),
            (r#"{"7": {}}"#, "index 7"),
            (r#"{"a": {"x": [1]}}"#, "string, number or boolean"),
        ] {
            let e = config(&[("PLUGIN_URI", "/p/a.wasm"), ("PLUGIN_CONFIG", json)]).unwrap_err();
            let text = format!("{e:#}");
            assert!(
                text.contains("PLUGIN_CONFIG") && text.contains(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn aws_settings_follow_the_sdk_variables() {
        let c = config(&[
            ("PLUGIN_URI", "a.wasm"),
            ("AWS_ENDPOINT_URL", "http://general"),
            ("AWS_ENDPOINT_URL_S3", "http://s3-only"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        assert_eq!(c.aws.service_endpoint("S3"), Some("http://s3-only"));
        assert_eq!(c.aws.region.as_deref(), Some("eu-west-1"));
        assert!(c.aws.s3_force_path_style);
        assert!(!format!("{:?}", c.aws).contains("secret"));
        let bad =
            config(&[("PLUGIN_URI", "a.wasm"), ("S3_FORCE_PATH_STYLE", "maybe")]).unwrap_err();
        assert!(format!("{bad:#}").contains("S3_FORCE_PATH_STYLE"));
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        let missing = config(&[]).unwrap_err();
        assert!(format!("{missing:#}").contains("PLUGIN_URI"));
        let bad = config(&[("PLUGIN_URI", "a.wasm"), ("PLUGIN_FUEL", "lots")]).unwrap_err();
        assert!(format!("{bad:#}").contains("PLUGIN_FUEL"));
        let reuse = config(&[("PLUGIN_URI", "a.wasm"), ("INSTANCE_REUSE", "never")]).unwrap_err();
        assert!(format!("{reuse:#}").contains("INSTANCE_REUSE"));
        let stack = config(&[("PLUGIN_URI", "a.wasm"), ("PLUGIN_STACK_KB", "1")]).unwrap_err();
        assert!(format!("{stack:#}").contains("PLUGIN_STACK_KB"));
    }

    #[test]
    fn zero_fuel_turns_metering_off() {
        let c = config(&[("PLUGIN_URI", "a.wasm"), ("PLUGIN_FUEL", "0")]).unwrap();
        assert_eq!(c.limits.fuel, None);
    }
}
