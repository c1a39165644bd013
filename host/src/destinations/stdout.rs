//! The stdout destination: one JSON line per output. Under Lambda, stdout is the function's
//! CloudWatch log stream; with `postprocess invoke`, the response is printed after these lines.

use super::{BoxFuture, DeliveryError, Destination, Envelope};
use std::io::Write;
use std::time::Instant;

/// Writes outputs to stdout as JSON lines: `{"destination", "key", "data"}` with `data` as
/// text, or `data_base64` when the output is not UTF-8.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutDestination;

impl Destination for StdoutDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        _deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            items
                .iter()
                .map(|item| {
                    let line = match std::str::from_utf8(&item.data) {
                        Ok(text) => serde_json::json!({
                            "destination": item.destination, "key": item.key, "data": text,
                        }),
                        Err(_) => {
                            use base64::Engine as _;
                            serde_json::json!({
                                "destination": item.destination, "key": item.key,
                                "data_base64": base64::engine::general_purpose::STANDARD.encode(&item.data),
                            })
                        }
                    };
                    writeln!(out, "{line}")
                        .and_then(|_| out.flush())
                        .map_err(|e| DeliveryError::new(format!("writing to stdout: {e}")))
                })
                .collect()
        })
    }
}
