//! Cold start: the time from process start to ready for the first event, measured on the real
//! `postprocess` binary with `--exit-after-init` (it loads the configuration and the plugins,
//! logs "ready for the first event" with `init_ms`, and exits).
//!
//! Scenarios, each for one stage and for a four-stage pipeline:
//! - `.wasm`, empty cache: Cranelift compiles every plugin (a first cold start);
//! - `.cwasm` from `postprocess compile`: nothing is compiled;
//! - `.wasm`, warm cache: the compiled artifact is in `PLUGIN_CACHE_DIR` (a restart in a warm
//!   container, or any start after the first on the same `/tmp`).
//!
//! Run with `cargo bench -p postprocess --bench cold_start` (a release build). `RUNS` sets the
//! runs per scenario (default 10). The report is printed and written to
//! `$CARGO_TARGET_TMPDIR/cold_start.md`.

use postprocess_tests::plugins::{AGGREGATE, IDENTITY, ROUTER, STRING_TRANSFORM};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_postprocess");

/// One start: wall-clock milliseconds from spawn to exit, and the `init_ms` the host logged.
fn start_once(uri: &str, cache: &Path) -> (f64, f64) {
    let state = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let out = Command::new(BIN)
        .arg("--exit-after-init")
        .env("PLUGIN_URI", uri)
        .env("PLUGIN_CACHE_DIR", cache)
        .env("STATE_DIR", state.path())
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .expect("run postprocess");
    let wall = started.elapsed().as_secs_f64() * 1e3;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "postprocess failed: {stderr}");
    let init = stderr
        .lines()
        .filter(|l| l.contains("ready for the first event"))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["fields"]["init_ms"].as_f64())
        .unwrap_or(f64::NAN);
    (wall, init)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let work = tempfile::tempdir().expect("temp dir");
    let precompile = |wasm: &str| {
        let name = Path::new(wasm)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("p");
        let cwasm = work.path().join(format!("{name}.cwasm"));
        let out = Command::new(BIN)
            .args(["compile", wasm, "-o"])
            .arg(&cwasm)
            .env_remove("PLUGIN_FUEL")
            .output()
            .expect("run postprocess compile");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cwasm.display().to_string()
    };

    let one = [STRING_TRANSFORM];
    let four = [STRING_TRANSFORM, ROUTER, AGGREGATE, IDENTITY];
    let mut rows = Vec::new();
    for (label, plugins) in [("1 stage", &one[..]), ("4 stages", &four[..])] {
        let wasm_uri = plugins.join(",");
        let cwasm_uri = plugins
            .iter()
            .map(|p| precompile(p))
            .collect::<Vec<_>>()
            .join(",");
        let warm = work.path().join(format!("warm-{}", plugins.len()));
        start_once(&wasm_uri, &warm); // fills the cache
        for (scenario, uri, fresh_cache) in [
            (".wasm, empty cache (compiles)", &wasm_uri, true),
            (".cwasm (precompiled)", &cwasm_uri, true),
            (".wasm, warm cache (cache hit)", &wasm_uri, false),
        ] {
            let (mut walls, mut inits) = (Vec::new(), Vec::new());
            for run in 0..runs {
                let cache = if fresh_cache {
                    work.path()
                        .join(format!("fresh-{}-{run}-{}", plugins.len(), scenario.len()))
                } else {
                    warm.clone()
                };
                let (wall, init) = start_once(uri, &cache);
                walls.push(wall);
                inits.push(init);
            }
            let (min, max) = (
                walls.iter().copied().fold(f64::INFINITY, f64::min),
                walls.iter().copied().fold(0.0, f64::max),
            );
            rows.push(format!(
                "| {label} | {scenario} | {:.1} | {min:.1} / {max:.1} | {:.1} |",
                median(&mut walls),
                median(&mut inits),
            ));
        }
    }

    let report = format!(
        "Cold start of `postprocess --exit-after-init` ({runs} runs per row; release build; \
         string-transform, then string-transform, router, aggregate, identity)\n\n\
         | Pipeline | Plugins as | Process start to ready, median ms | min / max ms | init_ms (in-process), median |\n\
         | --- | --- | --- | --- | --- |\n{}\n",
        rows.join("\n")
    );
    print!("{report}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cold_start.md");
    if let Err(e) = std::fs::write(&path, &report) {
        eprintln!("could not write {}: {e}", path.display());
    } else {
        eprintln!("report written to {}", path.display());
    }
}
