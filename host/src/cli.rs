//! The command line: `postprocess invoke --event FILE` runs one event locally through the same
//! code path Lambda uses; with no command under Lambda, the binary serves the runtime API.

use crate::config::Config;
use crate::handler::Processor;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
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
