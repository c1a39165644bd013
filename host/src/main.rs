//! The `postprocess` binary: wires configuration, logging and the entry points together.

use anyhow::Result;
use clap::Parser;
use postprocess::cli::{self, Cli, Command};
use postprocess::config::Limits;
use postprocess::{Config, Processor, lambda};
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    // Structured JSON logs on stderr: stdout carries the response (and the stdout destination).
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .init();

    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "postprocess failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Compile { input, output }) => {
            cli::compile(&Limits::from_env()?, &input, &output)
        }
        Some(Command::Invoke { event, timeout_ms }) => {
            cli::invoke(
                &Config::from_env()?,
                &event,
                Duration::from_millis(timeout_ms),
            )
            .await
        }
        None if cli.exit_after_init => Processor::new(&Config::from_env()?).await.map(drop),
        None if lambda::is_lambda() => {
            lambda::start(async { Processor::new(&Config::from_env()?).await }).await
        }
        None => anyhow::bail!(
            "AWS_LAMBDA_RUNTIME_API is not set, so this is not Lambda: \
             run `postprocess invoke --event FILE` to process an event locally"
        ),
    }
}
