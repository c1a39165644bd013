//! The S3 destination: `s3://BUCKET/PREFIX`, one object per output at `PREFIX<content key>`.
//!
//! One object per output, not per batch: KDA retries the records that failed, not the batch,
//! and regroups them freely, so an object holding a batch would get a different key (and a
//! second copy of the rows that did succeed) on every retry. A key derived from the output's
//! content makes a replay overwrite the same object, and each output is acknowledged on its
//! own, so a failed PUT fails exactly the records behind it. Puts run concurrently
//! (`#concurrency=N`, default 16); the SDK retries throttling and transient errors with backoff.
//! `#suffix=.json` appends a suffix to every key; `#content_type=...` sets the objects'
//! `Content-Type`.

use super::{AwsContext, BoxFuture, DeliveryError, Destination, Envelope, Options, sdk_error};
use anyhow::{Result, bail};
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt as _;
use std::time::Instant;

/// Writes each output to its own S3 object, named by its content key.
#[derive(Debug, Clone)]
pub struct S3Destination {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    suffix: String,
    content_type: Option<String>,
    concurrency: usize,
}

impl S3Destination {
    /// Parses `s3://BUCKET/PREFIX` and builds the client.
    pub(crate) async fn new(
        target: &str,
        mut options: Options,
        aws: &AwsContext<'_>,
    ) -> Result<Self> {
        let rest = target.strip_prefix("s3://").unwrap_or_default();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.len() < 3 {
            bail!("S3 target {target:?} names no bucket: use s3://BUCKET/PREFIX");
        }
        let suffix = options.take("suffix").unwrap_or_default();
        let content_type = options.take("content_type");
        let concurrency = options.number("concurrency", 16)?.clamp(1, 256) as usize;
        options.finish()?;

        Ok(S3Destination {
            client: aws.settings().s3_client(aws.sdk().await),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            suffix,
            content_type,
            concurrency,
        })
    }

    /// The object key of an output.
    pub fn object_key(&self, item: &Envelope) -> String {
        format!("{}{}{}", self.prefix, item.key, self.suffix)
    }

    async fn put(&self, item: &Envelope) -> Result<(), DeliveryError> {
        let key = self.object_key(item);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .set_content_type(self.content_type.clone())
            .body(ByteStream::from(item.data.clone()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                DeliveryError::new(format!(
                    "S3 PutObject s3://{}/{key}: {}",
                    self.bucket,
                    sdk_error(&e)
                ))
            })
    }
}

impl Destination for S3Destination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        _deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        // The handler cuts delivery off at the deadline; `buffered` keeps the results in order.
        Box::pin(
            futures::stream::iter(items)
                .map(|item| self.put(item))
                .buffered(self.concurrency)
                .collect(),
        )
    }
}
