//! The command line: `postprocess invoke --event FILE` runs one event locally through the same
//! code path Lambda uses; `postprocess compile IN.wasm -o OUT.cwasm` precompiles a plugin for
//! this host's engine; with no command under Lambda, the binary serves the runtime API.

use crate::config::{Config, InstanceReuse, Limits, PluginSpec};
use crate::handler::Processor;
use crate::sandbox::Sandbox;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Post-processes Kinesis Data Analytics output with WebAssembly plugins.
///
/// Configuration comes from the environment (PLUGIN_URI, DESTINATIONS, ...); see the README.
#[derive(Debug, Parser)]
#[command(name = "postprocess", version)]
pub struct Cli {
    /// What to do; without a command the binary serves the Lambda runtime API.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Loads the configuration and plugins, logs "ready for the first event" with `init_ms`,
    /// and exits: for measuring cold start (benches/cold_start.rs) and for checking a
    /// configuration before deploying it.
    #[arg(long, hide = true)]
    pub exit_after_init: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs one KDA output event from a file (`-` for stdin) and prints the response JSON.
    Invoke {
        /// The event file, or `-` for stdin.
        #[arg(long)]
        event: PathBuf,
        /// How long the invocation may take, like a Lambda timeout.
        #[arg(long, default_value_t = 300_000)]
        timeout_ms: u64,
    },
    /// Precompiles a plugin component into an artifact (`.cwasm`) that loads with no compile
    /// at cold start. The artifact runs only on this postprocess build with the same
    /// `PLUGIN_FUEL` (on or off) and limits, read from the environment as at run time.
    Compile {
        /// The plugin component (`.wasm`).
        input: PathBuf,
        /// Where to write the artifact.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn read_event(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the event from stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the event file {}", path.display()))
    }
}

/// Runs `invoke`: the response goes to stdout as one JSON line.
pub async fn invoke(config: &Config, event: &PathBuf, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let text = read_event(event)?;
    let processor = Processor::new(config).await?;
    let response = processor.handle_json(&text, started + timeout).await?;
    println!("{}", serde_json::to_string(&response)?);
    Ok(())
}

/// Runs `compile`: compiles `input` with the engine the function would use under `limits`,
/// checks it against the plugin world, and writes the artifact to `output`.
pub fn compile(limits: &Limits, input: &Path, output: &Path) -> Result<()> {
    let location = input.to_string_lossy();
    let spec = PluginSpec::parse(&location).context("naming the plugin")?;
    let bytes =
        std::fs::read(input).with_context(|| format!("reading plugin {}", input.display()))?;
    let sandbox = Sandbox::new(limits, InstanceReuse::default())?;
    let component = sandbox.compile(&spec, &bytes)?;
    sandbox.prepare(&spec, &component)?;
    let artifact = component
        .serialize()
        .map_err(anyhow::Error::from)
        .context("serializing the compiled plugin")?;
    std::fs::write(output, &artifact).with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "wrote {} ({} bytes) for engine {} (PLUGIN_FUEL {}); it loads only where those match",
        output.display(),
        artifact.len(),
        crate::plugin_cache::engine_hash(sandbox.engine()),
        if limits.fuel.is_some() { "on" } else { "off" },
    );
    Ok(())
}
