//! The SQS destination: `sqs:QUEUE_URL`, e.g.
//! `sqs:https://sqs.us-east-1.amazonaws.com/123456789012/orders.fifo`.
//!
//! Outputs are sent with `SendMessageBatch`, up to 10 messages and `#max_batch_bytes` (default
//! 262144) per call, several calls at a time. Entries that fail for a server-side reason are
//! sent again with backoff until the deadline; entries the queue rejects (`SenderFault`) and
//! outputs that are not UTF-8 text fail their records alone.
//!
//! FIFO queues (URL ending in `.fifo`) get `MessageDeduplicationId` = the output's content
//! key, so a replay within SQS's five-minute deduplication window is dropped by the queue, and
//! `MessageGroupId` = the destination name (or `#group=NAME`): one group keeps the outputs in
//! KDA's order. Standard queues have no deduplication: a replayed record is delivered again.

use super::{
    AwsContext, BoxFuture, DeliveryError, Destination, Entry, Envelope, Options,
    deliver_text_batches, sdk_error, text,
};
use anyhow::{Result, bail};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use std::time::Instant;

/// Sends each output as one SQS message, in batches of up to 10.
#[derive(Debug, Clone)]
pub struct SqsDestination {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: bool,
    group: Option<String>,
    max_batch_bytes: usize,
}

impl SqsDestination {
    /// Parses `sqs:QUEUE_URL` and builds the client.
    pub(crate) async fn new(
        target: &str,
        mut options: Options,
        aws: &AwsContext<'_>,
    ) -> Result<Self> {
        let queue_url = target.strip_prefix("sqs:").unwrap_or_default();
        if !(queue_url.starts_with("https://") || queue_url.starts_with("http://"))
            || url::Url::parse(queue_url).is_err()
        {
            bail!("SQS target {target:?} is not sqs:QUEUE_URL (an http(s) queue URL)");
        }
        let group = options.take("group");
        let max_batch_bytes = options.number("max_batch_bytes", 262_144)? as usize;
        options.finish()?;
        let mut config = aws_sdk_sqs::config::Builder::from(aws.sdk().await);
        if let Some(url) = aws.settings().service_endpoint("SQS") {
            config = config.endpoint_url(url);
        }
        Ok(SqsDestination {
            client: aws_sdk_sqs::Client::from_conf(config.build()),
            queue_url: queue_url.to_string(),
            fifo: queue_url.ends_with(".fifo"),
            group,
            max_batch_bytes,
        })
    }

    async fn send(&self, items: &[Envelope], indices: Vec<usize>) -> Result<Vec<Entry>, String> {
        let mut request = self.client.send_message_batch().queue_url(&self.queue_url);
        for (n, &i) in indices.iter().enumerate() {
            let item = &items[i];
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(n.to_string())
                .message_body(text(&items[i]));
            if self.fifo {
                entry = entry
                    .message_deduplication_id(&item.key)
                    .message_group_id(self.group.as_deref().unwrap_or(&item.destination));
            }
            request = request.entries(entry.build().map_err(|e| e.to_string())?);
        }
        let answer = request.send().await.map_err(|e| {
            format!(
                "SQS SendMessageBatch to {}: {}",
                self.queue_url,
                sdk_error(&e)
            )
        })?;
        let mut entries: Vec<Entry> = (0..indices.len())
            .map(|_| Entry::Retry("SQS did not answer for this message".into()))
            .collect();
        for ok in answer.successful() {
            if let Some(entry) = ok
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|n| entries.get_mut(n))
            {
                *entry = Entry::Accepted;
            }
        }
        for failed in answer.failed() {
            let message = format!(
                "SQS rejected the message: {} {}",
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

impl Destination for SqsDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(deliver_text_batches(
            "SQS",
            items,
            self.fifo,
            self.max_batch_bytes,
            deadline,
            move |indices| self.send(items, indices),
        ))
    }
}
