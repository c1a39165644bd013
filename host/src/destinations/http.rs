//! The HTTP destination: `https://HOST/PATH` (or `http://`), one request per output.
//!
//! Each output is the body of one `POST` (or `#method=PUT`) to the URL as written (its query
//! string included), with `Content-Type` from `#content_type=` (default `application/json`),
//! the headers given as `#header.NAME=VALUE` (percent-encode `,` as `%2C` and `&` as `%26`),
//! and `Idempotency-Key: <content key>`, so an API that honours that header can drop
//! replays; others receive a replayed record again. Any 2xx answer is success. Connection
//! errors, timeouts, 429 and 5xx (but 501) are retried with backoff up to `#retries=N`
//! (default 3) times, waiting at least what `Retry-After` asks, and never past the
//! deadline; other answers fail the record at once. Each attempt is bounded by
//! `#timeout_ms=` (default 10000); connecting by `#connect_timeout_ms=` (default 3000).
//! Up to `#concurrency=N` (default 8) requests are in flight at once.

use super::{BoxFuture, DeliveryError, Destination, Envelope, Options, backoff, wait_until_before};
use anyhow::{Context, Result, bail};
use futures::StreamExt as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::{Duration, Instant};

/// Sends each output as the body of one HTTP request.
#[derive(Debug, Clone)]
pub struct HttpDestination {
    client: reqwest::Client,
    url: reqwest::Url,
    method: reqwest::Method,
    timeout: Duration,
    retries: u32,
    concurrency: usize,
}

impl HttpDestination {
    /// Parses the URL and options and builds the client (connections are made on first use).
    pub(crate) fn new(target: &str, mut options: Options) -> Result<Self> {
        let url = reqwest::Url::parse(target)
            .ok()
            .filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            })
            .with_context(|| format!("HTTP target {target:?} is not an http(s) URL"))?;
        let method = match options
            .take("method")
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("POST") => reqwest::Method::POST,
            Some("PUT") => reqwest::Method::PUT,
            Some(other) => bail!("HTTP option method={other:?}: use POST or PUT"),
        };
        let timeout = Duration::from_millis(options.number("timeout_ms", 10_000)?.max(1));
        let connect_timeout =
            Duration::from_millis(options.number("connect_timeout_ms", 3_000)?.max(1));
        let retries =
            u32::try_from(options.number("retries", 3)?).context("option retries is too large")?;
        let concurrency = options.number("concurrency", 8)?.clamp(1, 256) as usize;
        let mut headers = HeaderMap::new();
        let content_type = options
            .take("content_type")
            .unwrap_or_else(|| "application/json".into());
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_str(&content_type)
                .context("option content_type is not a header value")?,
        );
        for (name, value) in options.take_prefixed("header.") {
            let name = HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("option header.{name} is not a header name"))?;
            let value = HeaderValue::from_str(&value)
                .with_context(|| format!("option header.{name} has a bad value"))?;
            headers.append(name, value);
        }
        options.finish()?;
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(connect_timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(HttpDestination {
            client,
            url,
            method,
            timeout,
            retries,
            concurrency,
        })
    }

    async fn send(&self, item: &Envelope, deadline: Instant) -> Result<(), DeliveryError> {
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = self
                .client
                .request(self.method.clone(), self.url.clone())
                .header("Idempotency-Key", &item.key)
                .timeout(self.timeout.min(left))
                .body(item.data.clone())
                .send()
                .await;
            let (message, retry_after) = match sent {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer) => {
                    let status = answer.status();
                    let retry_after = answer
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = answer.text().await.unwrap_or_default();
                    let message = format!(
                        "{} {} answered {status}: {}",
                        self.method,
                        self.url,
                        body.chars().take(200).collect::<String>()
                    );
                    let transient = status.as_u16() == 429
                        || (status.is_server_error()
                            && status != reqwest::StatusCode::NOT_IMPLEMENTED);
                    if !transient {
                        return Err(DeliveryError::new(message));
                    }
                    (message, retry_after)
                }
                Err(e) => (
                    format!("{} {}: {}", self.method, self.url, super::sdk_error(&e)),
                    None,
                ),
            };
            attempt += 1;
            if attempt > self.retries {
                return Err(DeliveryError::new(format!(
                    "{message} (after {attempt} attempts)"
                )));
            }
            let waited = match retry_after {
                Some(wait) => wait_until_before(Instant::now() + wait, deadline).await,
                None => backoff(attempt, deadline).await,
            };
            if !waited {
                return Err(DeliveryError::new(format!(
                    "{message} (no time left to retry)"
                )));
            }
        }
    }
}

impl Destination for HttpDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(
            futures::stream::iter(items)
                .map(move |item| self.send(item, deadline))
                .buffered(self.concurrency)
                .collect(),
        )
    }
}
