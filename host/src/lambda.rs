//! Serving the AWS Lambda runtime API with `lambda_runtime`.

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
