//! Integration tests: the real host code path (library and `postprocess` binary) with real
//! plugins compiled from source by `postprocess-tests`' build script.

mod cli;
mod contract;
mod destinations;
mod hostile;
mod lambda_runtime;
mod limits;
mod plugin_sources;
mod state;

use base64::Engine as _;
use postprocess::handler::Handled;
use postprocess::{Config, Processor};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A KDA output event with one record per row; record ids are `r0`, `r1`, ...
pub fn event(rows: &[Vec<u8>]) -> String {
    let records: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            json!({
                "recordId": format!("r{i}"),
                "lambdaDeliveryRecordMetadata": {"retryHint": 0},
                "data": base64::engine::general_purpose::STANDARD.encode(row),
            })
        })
        .collect();
    json!({
        "invocationId": "test-invocation",
        "applicationArn": "arn:aws:kinesisanalytics:us-east-1:123456789012:application/test",
        "records": records,
    })
    .to_string()
}

/// JSON rows like a KDA stock-ticker application's output.
pub fn ticker_rows(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let sector = ["TECHNOLOGY", "ENERGY", "RETAIL"][i % 3];
            json!({
                "ticker_symbol": format!("  T{i:05}  "),
                "sector": sector,
                "change": (i % 7) as f64 - 3.0,
                "price": 10.0 + i as f64,
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

/// A test environment: a temporary state and output directory and host settings.
#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
    pub vars: BTreeMap<String, String>,
}

impl Env {
    /// Settings running `plugins` (a `PLUGIN_URI` value), writing outputs to files.
    pub fn new(plugins: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = BTreeMap::new();
        vars.insert("PLUGIN_URI".into(), plugins.into());
        vars.insert(
            "STATE_DIR".into(),
            dir.path().join("state").display().to_string(),
        );
        vars.insert(
            "OUTPUT_DIR".into(),
            dir.path().join("out").display().to_string(),
        );
        // A private compiled-plugin cache, so no test sees another's entries.
        vars.insert(
            "PLUGIN_CACHE_DIR".into(),
            dir.path().join("cache").display().to_string(),
        );
        Env { dir, vars }
    }

    /// Sets one more variable.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    pub fn config(&self) -> Config {
        Config::from_lookup(|k| self.vars.get(k).cloned()).expect("valid test config")
    }

    pub async fn processor(&self) -> Processor {
        Processor::new(&self.config()).await.expect("processor")
    }

    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs one event through a fresh processor with a generous deadline.
    pub async fn run(&self, event: &str) -> Handled {
        run(&self.processor().await, event).await
    }
}

/// Runs one event with a generous deadline.
pub async fn run(processor: &Processor, event: &str) -> Handled {
    let parsed = postprocess::contract::Event::from_json(event).expect("valid event");
    processor
        .handle(parsed, Instant::now() + Duration::from_secs(120))
        .await
}

/// Every file under `dir/<destination>/`, by name (the content key), with its content.
pub fn outputs(dir: &Path, destination: &str) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir.join(destination)) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| {
            let e = e.expect("dir entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("output file"),
            )
        })
        .collect()
}

/// The cause names of the failed records, by record index.
pub fn causes(handled: &Handled) -> BTreeMap<usize, &'static str> {
    handled
        .failures
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| (i, f.cause.as_str())))
        .collect()
}

/// The plugin URIs, as an operator would write them.
pub mod plugin {
    pub use postprocess_tests::plugins::*;
}
