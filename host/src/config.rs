//! Configuration: one struct, read from the environment once at start.
//!
//! Every setting has a default except `PLUGIN_URI`. Reading never panics: a malformed value is
//! an error naming the variable, which fails start-up (the Lambda init phase).

use crate::destinations::AwsSettings;
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
    /// The AWS region, endpoints and credentials set in the environment (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, ...), and `S3_FORCE_PATH_STYLE`, for the AWS destinations.
    pub aws: AwsSettings,
    /// Time kept back from the Lambda deadline for delivery and the response
    /// (`DEADLINE_MARGIN_MS`, default 1000).
    pub deadline_margin: Duration,
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
    /// Where the plugin is, without its query string: a path or a `file://` URI.
    pub location: String,
    /// The stage's name (the file stem): used in logs and to namespace durable state.
    pub name: String,
    /// The values the plugin reads with `config-get`, from the URI's query string.
    pub config: BTreeMap<String, String>,
}

impl PluginSpec {
    /// Parses one stage: `path/to/x.wasm?key=value&...` or `file:///abs/x.wasm?key=value`.
    /// Query values are percent-decoded, so `%2C` stands for a comma.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            bail!("empty plugin location");
        }
        let (location, query) = match text.split_once('?') {
            Some((l, q)) => (l, q),
            None => (text, ""),
        };
        let config = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let path = location.strip_prefix("file://").unwrap_or(location);
        let name = std::path::Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .with_context(|| format!("plugin location {location:?} names no file"))?
            .to_string();
        Ok(PluginSpec {
            location: location.to_string(),
            name,
            config,
        })
    }

    /// The local file this stage loads from.
    pub fn local_path(&self) -> Result<PathBuf> {
        if let Some(rest) = self.location.strip_prefix("file://") {
            return Ok(PathBuf::from(rest));
        }
        if self.location.contains("://") {
            bail!(
                "unsupported plugin location {:?}: use a path or a file:// URI",
                self.location
            );
        }
        Ok(PathBuf::from(&self.location))
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let number = |key: &str, default: u64| -> Result<u64> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("{key}={v:?} is not a whole number")),
            }
        };

        let uri = get("PLUGIN_URI").context(
            "PLUGIN_URI is not set: name the plugin (a .wasm component), or several separated by commas",
        )?;
        let plugins = uri
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| PluginSpec::parse(s).with_context(|| format!("PLUGIN_URI entry {s:?}")))
            .collect::<Result<Vec<_>>>()?;
        if plugins.is_empty() {
            bail!("PLUGIN_URI names no plugin");
        }

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

        let instance_reuse = match get("INSTANCE_REUSE").as_deref().map(str::trim) {
            None | Some("batch") => InstanceReuse::Batch,
            Some("record") => InstanceReuse::Record,
            Some(other) => bail!("INSTANCE_REUSE={other:?}: use \"batch\" or \"record\""),
        };

        Ok(Config {
            plugins,
            limits,
            instance_reuse,
            state_dir: get("STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp/postprocess-state")),
            destinations: get("DESTINATIONS"),
            output_dir: get("OUTPUT_DIR").map(PathBuf::from),
            aws: AwsSettings::from_lookup(get)?,
            deadline_margin: Duration::from_millis(number("DEADLINE_MARGIN_MS", 1000)?),
        })
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
            c.plugins[0].local_path().unwrap(),
            PathBuf::from("/p/router.wasm")
        );
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
