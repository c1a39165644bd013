//! Where outputs go. Operators bind destination names to targets with `DESTINATIONS`
//! (`name=target,name=target`); plugins name the destination of each output.
//!
//! A destination receives all of a batch's outputs for its name at once, so it can batch
//! writes, and answers per output: an output is delivered only when the target accepted it.
//! Every output carries a key derived from its content and destination name, so writes are
//! idempotent where the target allows (KDA redelivers failed records, with new record ids).
//!
//! A target is `scheme:rest`, optionally followed by `#key=value&key=value` options
//! (percent-decoded; a fragment is never part of a URL sent anywhere, so it cannot clash with
//! a queue URL's or an API's own query string). Each kind lives in its own module and documents
//! its syntax; the README has the table.

mod cloudwatch;
mod discard;
mod dynamodb;
mod files;
mod http;
mod postgres;
mod s3;
mod sns;
mod sqs;
mod stdout;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::AwsSettings;
pub use cloudwatch::{CloudWatchLogsDestination, CloudWatchMetricsDestination};
pub use dynamodb::DynamoDbDestination;
pub use files::FileDestination;
pub use http::HttpDestination;
pub use postgres::PostgresDestination;
pub use s3::S3Destination;
pub use sns::SnsDestination;
pub use sqs::SqsDestination;
pub use stdout::StdoutDestination;

/// A boxed future, as destinations are used through `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One output on its way to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The destination name the output was routed to.
    pub destination: String,
    /// The bytes to write.
    pub data: Vec<u8>,
    /// A key derived from the destination name and the content (hex SHA-256): the same output
    /// redelivered has the same key, so targets can deduplicate.
    pub key: String,
}

impl Envelope {
    /// An envelope with its content key computed.
    pub fn new(destination: &str, data: Vec<u8>) -> Self {
        let mut hash = Sha256::new();
        hash.update(destination.as_bytes());
        hash.update([0]);
        hash.update(&data);
        Envelope {
            destination: destination.to_string(),
            key: format!("{:x}", hash.finalize()),
            data,
        }
    }
}

/// Why an output was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What went wrong, for the operator.
    pub message: String,
}

impl DeliveryError {
    /// An error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
        }
    }
}

/// A target that accepts outputs.
pub trait Destination: Send + Sync + std::fmt::Debug {
    /// Writes `items`, finishing (or giving up) by `deadline`. Returns one result per item, in
    /// order; `Ok` only for items the target has accepted.
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>>;
}

/// The destinations bound to names.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    by_name: HashMap<String, Arc<dyn Destination>>,
}

impl Destinations {
    /// Binds destinations from a `DESTINATIONS` value, or the default binding when it is
    /// `None`: `default` to files under `output_dir` if set, else to stdout. Clients and pools
    /// are built here, once; the AWS SDK configuration is loaded (from `aws`, then the
    /// standard chain) only when an AWS target is bound. Nothing is connected yet, so a
    /// destination that is down fails deliveries, not start-up.
    pub async fn from_config(
        spec: Option<&str>,
        output_dir: Option<&PathBuf>,
        aws: &AwsSettings,
    ) -> Result<Self> {
        let spec = match (spec, output_dir) {
            (Some(s), _) => s.to_string(),
            (None, Some(dir)) => format!("default=dir:{}", dir.display()),
            (None, None) => "default=stdout".to_string(),
        };
        let aws = AwsContext {
            settings: aws,
            sdk: tokio::sync::OnceCell::new(),
        };
        let mut by_name = HashMap::new();
        for binding in spec.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            let (name, target) = binding
                .split_once('=')
                .with_context(|| format!("DESTINATIONS entry {binding:?} is not name=target"))?;
            let (name, target) = (name.trim(), target.trim());
            if name.is_empty() {
                bail!("DESTINATIONS entry {binding:?} has an empty name");
            }
            let destination = Self::target(name, target, &aws)
                .await
                .with_context(|| format!("DESTINATIONS entry {name:?}={target:?}"))?;
            if by_name.insert(name.to_string(), destination).is_some() {
                bail!("DESTINATIONS binds {name:?} twice");
            }
        }
        Ok(Destinations { by_name })
    }

    async fn target(
        name: &str,
        target: &str,
        aws: &AwsContext<'_>,
    ) -> Result<Arc<dyn Destination>> {
        let (scheme, rest) = target.split_once(':').unwrap_or((target, ""));
        let (base, options) = split_options(target)?;
        Ok(match scheme {
            "stdout" => Arc::new(StdoutDestination),
            "discard" => Arc::new(discard::DiscardDestination),
            "dir" if !rest.is_empty() => Arc::new(FileDestination::new(rest)),
            "file" => Arc::new(FileDestination::new(
                rest.strip_prefix("//").unwrap_or(rest),
            )),
            "s3" => Arc::new(S3Destination::new(base, options, aws).await?),
            "sqs" => Arc::new(SqsDestination::new(base, options, aws).await?),
            "sns" => Arc::new(SnsDestination::new(base, options, aws).await?),
            "dynamodb" => Arc::new(DynamoDbDestination::new(base, options, aws).await?),
            "cloudwatch-logs" => {
                Arc::new(CloudWatchLogsDestination::new(base, options, aws).await?)
            }
            "cloudwatch-metrics" => {
                Arc::new(CloudWatchMetricsDestination::new(base, options, aws).await?)
            }
            "http" | "https" => Arc::new(HttpDestination::new(base, options)?),
            "postgres" | "postgresql" => Arc::new(PostgresDestination::new(base, options)?),
            _ => bail!(
                "unknown target {target:?} for destination {name:?}: use stdout, dir:PATH, \
                 s3://BUCKET/PREFIX/, sqs:QUEUE_URL, sns:TOPIC_ARN, dynamodb:TABLE, \
                 cloudwatch-logs:GROUP/STREAM, cloudwatch-metrics:NAMESPACE, http(s)://URL \
                 or postgres://URL#table=T&columns=..."
            ),
        })
    }

    /// The destination bound to `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Destination>> {
        self.by_name.get(name)
    }

    /// The bound names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The AWS settings, and the SDK configuration loaded from them on first use.
#[derive(Debug)]
pub(crate) struct AwsContext<'a> {
    settings: &'a AwsSettings,
    sdk: tokio::sync::OnceCell<aws_config::SdkConfig>,
}

impl AwsContext<'_> {
    /// The SDK configuration, loaded once for all AWS targets.
    pub(crate) async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk.get_or_init(|| self.settings.load()).await
    }

    /// The settings the SDK configuration is loaded from.
    pub(crate) fn settings(&self) -> &AwsSettings {
        self.settings
    }
}

/// A target's options: what follows `#`, as `key=value&...` pairs, percent-decoded.
#[derive(Debug, Default)]
pub(crate) struct Options(BTreeMap<String, String>);

impl Options {
    /// Takes an option out, so that [`Options::finish`] can reject the ones nobody read.
    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Takes every option whose name starts with `prefix`, without the prefix.
    pub(crate) fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let keys: Vec<String> = self
            .0
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let value = self.0.remove(&k)?;
                Some((k[prefix.len()..].to_string(), value))
            })
            .collect()
    }

    /// Takes a whole-number option, or `default` when it is absent.
    pub(crate) fn number(&mut self, key: &str, default: u64) -> Result<u64> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .with_context(|| format!("option {key}={v:?} is not a whole number")),
        }
    }

    /// Fails naming any option that no one took: a typo must not be silently ignored.
    pub(crate) fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            let names: Vec<&str> = self.0.keys().map(String::as_str).collect();
            bail!("unknown option(s) {names:?}")
        }
    }
}

/// Splits `target#options` into the target and its options.
fn split_options(target: &str) -> Result<(&str, Options)> {
    let Some((base, fragment)) = target.split_once('#') else {
        return Ok((target, Options::default()));
    };
    let mut options = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(fragment.as_bytes()) {
        if options
            .insert(key.to_string(), value.into_owned())
            .is_some()
        {
            bail!("option {key:?} is given twice");
        }
    }
    Ok((base, Options(options)))
}

/// Waits before retry number `attempt` (1 for the first retry): exponential from 50 ms,
/// capped at 2 s, with full jitter so that concurrent retries spread out. Returns `false`,
/// without waiting, when the wait would end past `deadline`: the caller gives up.
pub(crate) async fn backoff(attempt: u32, deadline: Instant) -> bool {
    let cap = Duration::from_millis(50)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(2));
    let wait = cap.mul_f64(fastrand::f64().max(0.1));
    wait_until_before(Instant::now() + wait, deadline).await
}

/// Sleeps until `until` if that is before `deadline`; returns whether it slept.
pub(crate) async fn wait_until_before(until: Instant, deadline: Instant) -> bool {
    if until >= deadline {
        return false;
    }
    tokio::time::sleep_until(until.into()).await;
    true
}

/// Splits items with the given sizes into consecutive ranges of at most `max_items` items
/// whose sizes add up to at most `max_bytes` (an item larger than that goes alone).
pub(crate) fn chunks(sizes: &[usize], max_items: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start >= max_items || bytes + size > max_bytes) {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        ranges.push(start..sizes.len());
    }
    ranges
}

/// Groups the item indices `valid` into batches for [`deliver_batches`], by [`chunks`].
pub(crate) fn batches(
    valid: &[usize],
    size: impl Fn(usize) -> usize,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Vec<usize>> {
    let sizes: Vec<usize> = valid.iter().map(|&i| size(i)).collect();
    chunks(&sizes, max_items, max_bytes)
        .into_iter()
        .map(|range| valid[range].to_vec())
        .collect()
}

/// Delivers text messages through a batch API of 10 entries (SQS `SendMessageBatch`, SNS
/// `PublishBatch`): non-UTF-8 outputs fail alone, FIFO batches go one after another so the
/// group keeps its order, others go 4 at a time. `send` gets the indices of one batch; their
/// data is known to be UTF-8 (see [`text`]).
pub(crate) async fn deliver_text_batches<F, Fut>(
    service: &str,
    items: &[Envelope],
    fifo: bool,
    max_batch_bytes: usize,
    deadline: Instant,
    send: F,
) -> Vec<Result<(), DeliveryError>>
where
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = std::result::Result<Vec<Entry>, String>>,
{
    let bodies: Vec<Option<&str>> = items
        .iter()
        .map(|i| std::str::from_utf8(&i.data).ok())
        .collect();
    let valid: Vec<usize> = (0..items.len()).filter(|&i| bodies[i].is_some()).collect();
    let batches = batches(&valid, |i| items[i].data.len(), 10, max_batch_bytes);
    let concurrency = if fifo { 1 } else { 4 };
    let mut results = deliver_batches(items.len(), batches, concurrency, deadline, send).await;
    for (i, body) in bodies.iter().enumerate() {
        if body.is_none() {
            results[i] = Err(DeliveryError::new(format!(
                "an {service} message must be UTF-8 text"
            )));
        }
    }
    results
}

/// The output's data as text ("" if it is not UTF-8, which [`deliver_text_batches`] never
/// sends).
pub(crate) fn text(item: &Envelope) -> &str {
    std::str::from_utf8(&item.data).unwrap_or_default()
}

/// What a batch API answered for one entry.
#[derive(Debug)]
pub(crate) enum Entry {
    /// Written.
    Accepted,
    /// Not written, for a reason that may pass (throttling, an internal error): try again.
    Retry(String),
    /// Not written, and sending it again would not help.
    Rejected(String),
}

/// Delivers `count` items through a batch API, `batches` (lists of item indices) running up to
/// `concurrency` at a time. `send` gets one batch's indices and answers one [`Entry`] per
/// index, or an error for the whole call (after the SDK's own retries). Entries to retry are
/// sent again, alone, with backoff until `deadline`.
pub(crate) async fn deliver_batches<F, Fut>(
    count: usize,
    batches: Vec<Vec<usize>>,
    concurrency: usize,
    deadline: Instant,
    send: F,
) -> Vec<Result<(), DeliveryError>>
where
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = std::result::Result<Vec<Entry>, String>>,
{
    use futures::StreamExt as _;
    let send = &send;
    let outcomes: Vec<Vec<(usize, Result<(), DeliveryError>)>> = futures::stream::iter(batches)
        .map(|mut pending| async move {
            let mut outcome = Vec::with_capacity(pending.len());
            let mut attempt = 0;
            while !pending.is_empty() {
                let entries = match send(pending.clone()).await {
                    Ok(entries) => entries,
                    Err(message) => {
                        let error = DeliveryError::new(message);
                        outcome.extend(pending.drain(..).map(|i| (i, Err(error.clone()))));
                        break;
                    }
                };
                let mut retry = Vec::new();
                let mut last = String::new();
                for (i, entry) in pending.iter().copied().zip(entries) {
                    match entry {
                        Entry::Accepted => outcome.push((i, Ok(()))),
                        Entry::Rejected(message) => {
                            outcome.push((i, Err(DeliveryError::new(message))))
                        }
                        Entry::Retry(message) => {
                            retry.push(i);
                            last = message;
                        }
                    }
                }
                attempt += 1;
                if !retry.is_empty() && !backoff(attempt, deadline).await {
                    let error = DeliveryError::new(format!("{last} (gave up at the deadline)"));
                    outcome.extend(retry.drain(..).map(|i| (i, Err(error.clone()))));
                }
                pending = retry;
            }
            outcome
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut results = all_failed(count, "not sent");
    for (i, result) in outcomes.into_iter().flatten() {
        results[i] = result;
    }
    results
}

/// The failure for every item of a call that failed as a whole.
pub(crate) fn all_failed(count: usize, message: &str) -> Vec<Result<(), DeliveryError>> {
    vec![Err(DeliveryError::new(message)); count]
}

/// An SDK error with its whole chain of causes (the SDK's `Display` says only "service error").
pub(crate) fn sdk_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_names_and_rejects_unknown_targets() {
        let aws = AwsSettings::default();
        let d = Destinations::from_config(Some("default=stdout, audit=dir:/tmp/x"), None, &aws)
            .await
            .unwrap();
        assert_eq!(d.names(), ["audit", "default"]);
        let err = Destinations::from_config(Some("default=carrier-pigeon:x"), None, &aws)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("carrier-pigeon"));
        let err = Destinations::from_config(Some("default"), None, &aws)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("name=target"));
    }

    #[tokio::test]
    async fn malformed_targets_are_init_errors_naming_them() {
        let aws = AwsSettings {
            region: Some("us-east-1".into()),
            static_credentials: Some(crate::aws::StaticCredentials {
                access_key_id: "id".into(),
                secret_access_key: "secret".into(),
                session_token: None,
            }),
            ..AwsSettings::default()
        };
        for (target, expected) in [
            ("s3://", "bucket"),
            ("s3://ab/x", "bucket"),
            ("sqs:", "queue URL"),
            ("sqs:not-a-url", "queue URL"),
            ("sns:topic", "TOPIC_ARN"),
            ("dynamodb:", "table"),
            ("dynamodb:t#key=", "key"),
            ("cloudwatch-logs:group-only", "GROUP/STREAM"),
            ("cloudwatch-metrics:", "namespace"),
            ("https://", "URL"),
            ("https://example.com/x#retries=many", "retries"),
            ("https://example.com/x#colour=blue", "colour"),
            ("postgres://u@127.0.0.1/db", "table"),
            ("postgres://u@127.0.0.1/db#table=t", "columns"),
            ("postgres://u@127.0.0.1/db#table=t&columns=a;b:", "columns"),
            (
                "postgres://u@127.0.0.1:notaport/db#table=t&columns=a",
                "postgres",
            ),
        ] {
            let spec = format!("out={target}");
            let err = Destinations::from_config(Some(&spec), None, &aws)
                .await
                .expect_err(target);
            let text = format!("{err:#}");
            assert!(
                text.contains(target) && text.contains(expected),
                "{target}: {text}"
            );
        }
    }

    #[test]
    fn options_follow_the_hash_and_unknown_ones_are_rejected() {
        let (base, mut options) =
            split_options("https://h/p?q=1#timeout_ms=5&header.X-A=b%2Cc").unwrap();
        assert_eq!(base, "https://h/p?q=1");
        assert_eq!(options.number("timeout_ms", 1).unwrap(), 5);
        assert_eq!(
            options.take_prefixed("header."),
            [("X-A".into(), "b,c".into())]
        );
        options.finish().unwrap();
        let (_, options) = split_options("x#typo=1").unwrap();
        assert!(format!("{:#}", options.finish().unwrap_err()).contains("typo"));
    }

    #[test]
    fn chunks_respect_counts_and_bytes() {
        assert_eq!(chunks(&[1; 25], 10, 100), [0..10, 10..20, 20..25]);
        assert_eq!(
            chunks(&[60, 60, 200, 10], 10, 100),
            [0..1, 1..2, 2..3, 3..4]
        );
        assert_eq!(chunks(&[30, 30, 30, 30], 10, 100), [0..3, 3..4]);
        assert!(chunks(&[], 10, 100).is_empty());
    }

    #[test]
    fn keys_depend_on_content_and_destination() {
        let a = Envelope::new("default", b"x".to_vec());
        assert_eq!(a.key, Envelope::new("default", b"x".to_vec()).key);
        assert_ne!(a.key, Envelope::new("other", b"x".to_vec()).key);
        assert_ne!(a.key, Envelope::new("default", b"y".to_vec()).key);
        assert_eq!(a.key.len(), 64);
    }
}
