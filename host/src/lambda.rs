//! Serving the AWS Lambda runtime API with `lambda_runtime`.
//!
//! An init failure (bad configuration, a plugin that cannot be loaded) is posted to the Runtime
//! API's `/runtime/init/error` before the process exits non-zero, so Lambda reports the
//! message itself as the init error. `lambda_runtime` 1.5 only posts there for SnapStart hooks,
//! so the report goes through its API client crate directly.

use crate::handler::Processor;
use anyhow::{Result, bail};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The variables the Lambda runtime sets, which `lambda_runtime` reads (and would panic
/// without).
const REQUIRED: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// Whether this process runs under the Lambda runtime API.
pub fn is_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Lambda's longest timeout: the budget when the runtime API gives no usable deadline.
const MAX_LAMBDA_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Converts Lambda's deadline (ms since the epoch) into an `Instant`. A deadline already in
/// the past is not one Lambda sends (some local emulators send a constant), so it is treated
/// as unknown rather than failing every record at once.
fn deadline(epoch_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if epoch_ms <= now_ms {
        tracing::warn!(
            deadline_ms = epoch_ms,
            now_ms,
            "the runtime API sent a deadline in the past; assuming Lambda's 15-minute maximum"
        );
        return Instant::now() + MAX_LAMBDA_TIMEOUT;
    }
    Instant::now() + Duration::from_millis(epoch_ms - now_ms)
}

/// Runs `init` (configuration and plugin loading) and then serves; an init error is reported
/// to Lambda and returned.
pub async fn start(init: impl Future<Output = Result<Processor>>) -> Result<()> {
    match init.await {
        Ok(processor) => serve(processor).await,
        Err(error) => {
            report_init_error(&error).await;
            Err(error)
        }
    }
}

/// Posts `error` to `/runtime/init/error`. Failing to report is logged: the non-zero exit
/// still makes Lambda fail the init (as `Runtime.ExitError`).
async fn report_init_error(error: &anyhow::Error) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let result = async {
        let base = if api.contains("://") {
            api.clone()
        } else {
            format!("http://{api}")
        };
        let base: http::Uri = base
            .parse()
            .map_err(|e| anyhow::anyhow!("AWS_LAMBDA_RUNTIME_API={api:?}: {e}"))?;
        let client = lambda_runtime_api_client::Client::builder()
            .with_endpoint(base)
            .build()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = serde_json::json!({
            "errorType": "PluginInitError",
            "errorMessage": format!("{error:#}"),
        });
        let request = lambda_runtime_api_client::build_request()
            .method("POST")
            .uri("/2018-06-01/runtime/init/error")
            .header("lambda-runtime-function-error-type", "Runtime.InitError")
            .header("content-type", "application/json")
            .body(lambda_runtime_api_client::body::Body::from(
                body.to_string(),
            ))?;
        let response = client
            .call(request)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "the Runtime API answered HTTP {}",
            response.status()
        );
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = result.await {
        tracing::error!(
            error = format!("{e:#}"),
            "could not report the init error to the Lambda Runtime API"
        );
    }
}

/// Serves invocations until the runtime stops the process.
pub async fn serve(processor: Processor) -> Result<()> {
    let missing: Vec<_> = REQUIRED
        .iter()
        .filter(|v| std::env::var_os(v).is_none())
        .collect();
    if !missing.is_empty() {
        bail!("not running under Lambda: {missing:?} not set");
    }
    let processor = Arc::new(processor);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let processor = processor.clone();
        async move {
            let deadline = deadline(event.context.deadline);
            processor
                .handle_json(event.payload.get(), deadline)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}
