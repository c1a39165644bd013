//! The SNS destination: `sns:TOPIC_ARN`, e.g. `sns:arn:aws:sns:us-east-1:123456789012:alerts`.
//!
//! Outputs are published with `PublishBatch`, up to 10 messages and `#max_batch_bytes`
//! (default 262144) per call, several calls at a time. Entries that fail for a server-side
//! reason are published again with backoff until the deadline; entries SNS rejects
//! (`SenderFault`) and outputs that are not UTF-8 text fail their records alone.
//!
//! FIFO topics (ARN ending in `.fifo`) get `MessageDeduplicationId` = the output's content key
//! and `MessageGroupId` = the destination name (or `#group=NAME`), as for SQS. Standard topics
//! have no deduplication: a replayed record is published again.

use super::{
    AwsContext, BoxFuture, DeliveryError, Destination, Entry, Envelope, Options,
    deliver_text_batches, sdk_error, text,
};
use anyhow::{Result, bail};
use aws_sdk_sns::types::PublishBatchRequestEntry;
use std::time::Instant;

/// Publishes each output as one SNS message, in batches of up to 10.
#[derive(Debug, Clone)]
pub struct SnsDestination {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    fifo: bool,
    group: Option<String>,
    max_batch_bytes: usize,
}

impl SnsDestination {
    /// Parses `sns:TOPIC_ARN` and builds the client.
    pub(crate) async fn new(
        target: &str,
        mut options: Options,
        aws: &AwsContext<'_>,
    ) -> Result<Self> {
        let topic_arn = target.strip_prefix("sns:").unwrap_or_default();
        let parts: Vec<&str> = topic_arn.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
            bail!("SNS target {target:?} is not sns:TOPIC_ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)");
        }
        let group = options.take("group");
        let max_batch_bytes = options.number("max_batch_bytes", 262_144)? as usize;
        options.finish()?;
        let mut config = aws_sdk_sns::config::Builder::from(aws.sdk().await);
        if let Some(url) = aws.settings().service_endpoint("SNS") {
            config = config.endpoint_url(url);
        }
        Ok(SnsDestination {
            client: aws_sdk_sns::Client::from_conf(config.build()),
            topic_arn: topic_arn.to_string(),
            fifo: topic_arn.ends_with(".fifo"),
            group,
            max_batch_bytes,
        })
    }

    async fn send(&self, items: &[Envelope], indices: Vec<usize>) -> Result<Vec<Entry>, String> {
        let mut request = self.client.publish_batch().topic_arn(&self.topic_arn);
        for (n, &i) in indices.iter().enumerate() {
            let item = &items[i];
            let mut entry = PublishBatchRequestEntry::builder()
                .id(n.to_string())
                .message(text(&items[i]));
            if self.fifo {
                entry = entry
                    .message_deduplication_id(&item.key)
                    .message_group_id(self.group.as_deref().unwrap_or(&item.destination));
            }
            request =
                request.publish_batch_request_entries(entry.build().map_err(|e| e.to_string())?);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| format!("SNS PublishBatch to {}: {}", self.topic_arn, sdk_error(&e)))?;
        let mut entries: Vec<Entry> = (0..indices.len())
            .map(|_| Entry::Retry("SNS did not answer for this message".into()))
            .collect();
        for ok in answer.successful() {
            if let Some(entry) = ok
                .id()
                .and_then(|id| id.parse::<usize>().ok())
                .and_then(|n| entries.get_mut(n))
            {
                *entry = Entry::Accepted;
            }
        }
        for failed in answer.failed() {
            let message = format!(
                "SNS rejected the message: {} {}",
                failed.code(),
                failed.message().unwrap_or_default()
            );
            if let Some(entry) = failed
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|n| entries.get_mut(n))
            {
                *entry = if failed.sender_fault() {
                    Entry::Rejected(message)
                } else {
                    Entry::Retry(message)
                };
            }
        }
        Ok(entries)
    }
}

impl Destination for SnsDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(deliver_text_batches(
            "SNS",
            items,
            self.fifo,
            self.max_batch_bytes,
            deadline,
            move |indices| self.send(items, indices),
        ))
    }
}
