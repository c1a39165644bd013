//! The CloudWatch destinations: Logs (`cloudwatch-logs:GROUP/STREAM`) and metrics
//! (`cloudwatch-metrics:NAMESPACE`).
//!
//! **Logs**: each output (UTF-8 text, not empty) becomes one log event, timestamped at
//! delivery, sent with `PutLogEvents` in batches of up to 10,000 events and 1 MiB, in order.
//! The group is everything before the last `/` (group names may contain `/`), the stream what
//! follows it. A missing group or stream is created (`logs:CreateLogGroup`,
//! `logs:CreateLogStream`). Events CloudWatch rejects as too old, too new or expired fail their
//! records. CloudWatch Logs does not deduplicate: a replayed record is logged again.
//!
//! **Metrics**: each output is a JSON object, or an array of them, each one datum:
//!
//! ```json
//! {"metric": "Latency", "value": 12.5, "unit": "Milliseconds",
//!  "dimensions": {"sector": "TECHNOLOGY"}, "timestamp": 1700000000000, "storage_resolution": 1}
//! ```
//!
//! `metric` and `value` (a finite number) are required; `unit` is a CloudWatch standard unit
//! (default `None`); `dimensions` map names to strings or numbers (at most 30); `timestamp` is
//! epoch milliseconds or RFC 3339 text (default: when received); `storage_resolution` is 1
//! (high resolution) or 60. Outputs that do not fit fail their records alone. Datums go out
//! with `PutMetricData`, up to 1000 per call; a call CloudWatch refuses as invalid is split
//! into one call per output to find the bad ones. Metrics have no deduplication: a replay
//! adds the datums again (averages, minimums and maximums are unchanged by an identical
//! datum, sums and sample counts are not).

use super::{
    AwsContext, BoxFuture, DeliveryError, Destination, Entry, Envelope, Options, batches,
    deliver_batches, sdk_error,
};
use anyhow::{Result, bail};
use aws_sdk_cloudwatch::error::ProvideErrorMetadata as _;
use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::Value;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// CloudWatch Logs counts 26 bytes of overhead per event towards the batch size.
const LOG_EVENT_OVERHEAD: usize = 26;

/// Writes each output as one log event of a CloudWatch Logs stream.
#[derive(Debug, Clone)]
pub struct CloudWatchLogsDestination {
    client: aws_sdk_cloudwatchlogs::Client,
    group: String,
    stream: String,
}

impl CloudWatchLogsDestination {
    /// Parses `cloudwatch-logs:GROUP/STREAM` and builds the client.
    pub(crate) async fn new(target: &str, options: Options, aws: &AwsContext<'_>) -> Result<Self> {
        let rest = target.strip_prefix("cloudwatch-logs:").unwrap_or_default();
        let Some((group, stream)) = rest
            .rsplit_once('/')
            .filter(|(g, s)| !g.is_empty() && !s.is_empty())
        else {
            bail!("CloudWatch Logs target {target:?} is not cloudwatch-logs:GROUP/STREAM");
        };
        options.finish()?;
        let mut config = aws_sdk_cloudwatchlogs::config::Builder::from(aws.sdk().await);
        if let Some(url) = aws.settings().service_endpoint("CLOUDWATCH_LOGS") {
            config = config.endpoint_url(url);
        }
        Ok(CloudWatchLogsDestination {
            client: aws_sdk_cloudwatchlogs::Client::from_conf(config.build()),
            group: group.to_string(),
            stream: stream.to_string(),
        })
    }

    async fn put(
        &self,
        messages: &[Option<&str>],
        indices: Vec<usize>,
    ) -> Result<Vec<Entry>, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let events = indices
            .iter()
            .map(|&i| {
                InputLogEvent::builder()
                    .timestamp(now)
                    .message(messages[i].unwrap_or_default())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut created = false;
        let answer = loop {
            let sent = self
                .client
                .put_log_events()
                .log_group_name(&self.group)
                .log_stream_name(&self.stream)
                .set_log_events(Some(events.clone()))
                .send()
                .await;
            match sent {
                Err(e) if !created && e.code() == Some("ResourceNotFoundException") => {
                    self.create().await?;
                    created = true;
                }
                Err(e) => {
                    return Err(format!(
                        "CloudWatch Logs PutLogEvents to {}/{}: {}",
                        self.group,
                        self.stream,
                        sdk_error(&e)
                    ));
                }
                Ok(answer) => break answer,
            }
        };
        let rejected = answer.rejected_log_events_info();
        // The end indices are read as inclusive: at worst one accepted event is reported
        // failed and logged again, never the reverse.
        let too_new = rejected.and_then(|r| r.too_new_log_event_start_index());
        let too_old = rejected.and_then(|r| r.too_old_log_event_end_index());
        let expired = rejected.and_then(|r| r.expired_log_event_end_index());
        Ok((0..indices.len() as i32)
            .map(|n| {
                if too_new.is_some_and(|start| n >= start) {
                    Entry::Rejected("CloudWatch Logs rejected the event as too new".into())
                } else if too_old.is_some_and(|end| n <= end) || expired.is_some_and(|end| n <= end)
                {
                    Entry::Rejected("CloudWatch Logs rejected the event as too old".into())
                } else {
                    Entry::Accepted
                }
            })
            .collect())
    }

    /// Creates the group and the stream, either of which may exist already.
    async fn create(&self) -> Result<(), String> {
        let exists = |code: Option<&str>| code == Some("ResourceAlreadyExistsException");
        if let Err(e) = self
            .client
            .create_log_group()
            .log_group_name(&self.group)
            .send()
            .await
            && !exists(e.code())
        {
            return Err(format!(
                "creating log group {}: {}",
                self.group,
                sdk_error(&e)
            ));
        }
        match self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .send()
            .await
        {
            Err(e) if !exists(e.code()) => Err(format!(
                "creating log stream {}/{}: {}",
                self.group,
                self.stream,
                sdk_error(&e)
            )),
            _ => Ok(()),
        }
    }
}

impl Destination for CloudWatchLogsDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let messages: Vec<Option<&str>> = items
                .iter()
                .map(|i| std::str::from_utf8(&i.data).ok().filter(|m| !m.is_empty()))
                .collect();
            let valid: Vec<usize> = (0..items.len())
                .filter(|&i| messages[i].is_some())
                .collect();
            let batches = batches(
                &valid,
                |i| items[i].data.len() + LOG_EVENT_OVERHEAD,
                10_000,
                1 << 20,
            );
            // One batch at a time keeps the stream in KDA's order.
            let mut results = deliver_batches(items.len(), batches, 1, deadline, |indices| {
                self.put(&messages, indices)
            })
            .await;
            for (i, message) in messages.iter().enumerate() {
                if message.is_none() {
                    results[i] = Err(DeliveryError::new(
                        "a CloudWatch Logs event must be non-empty UTF-8 text",
                    ));
                }
            }
            results
        })
    }
}

/// Sends metric data taken from each output's JSON to a CloudWatch namespace.
#[derive(Debug, Clone)]
pub struct CloudWatchMetricsDestination {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
}

impl CloudWatchMetricsDestination {
    /// Parses `cloudwatch-metrics:NAMESPACE` and builds the client.
    pub(crate) async fn new(target: &str, options: Options, aws: &AwsContext<'_>) -> Result<Self> {
        let namespace = target
            .strip_prefix("cloudwatch-metrics:")
            .unwrap_or_default();
        if namespace.is_empty() || namespace.starts_with("AWS/") {
            bail!(
                "CloudWatch metrics target {target:?} names no namespace of its own: use cloudwatch-metrics:NAMESPACE"
            );
        }
        options.finish()?;
        let mut config = aws_sdk_cloudwatch::config::Builder::from(aws.sdk().await);
        if let Some(url) = aws.settings().service_endpoint("CLOUDWATCH") {
            config = config.endpoint_url(url);
        }
        Ok(CloudWatchMetricsDestination {
            client: aws_sdk_cloudwatch::Client::from_conf(config.build()),
            namespace: namespace.to_string(),
        })
    }

    /// One `PutMetricData` call with the datums of these outputs; the error says whether
    /// CloudWatch refused the data as invalid.
    async fn send(
        &self,
        data: &[Result<Vec<MetricDatum>, String>],
        indices: &[usize],
    ) -> Result<(), (String, bool)> {
        let datums: Vec<MetricDatum> = indices
            .iter()
            .filter_map(|&i| data[i].as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        self.client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(datums))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let invalid = matches!(
                    e.code(),
                    Some(
                        "InvalidParameterValue"
                            | "InvalidParameterCombination"
                            | "MissingParameter"
                    )
                );
                (
                    format!(
                        "CloudWatch PutMetricData to {}: {}",
                        self.namespace,
                        sdk_error(&e)
                    ),
                    invalid,
                )
            })
    }

    async fn put(
        &self,
        data: &[Result<Vec<MetricDatum>, String>],
        indices: Vec<usize>,
    ) -> Result<Vec<Entry>, String> {
        match self.send(data, &indices).await {
            Ok(()) => Ok(indices.iter().map(|_| Entry::Accepted).collect()),
            Err((message, false)) => Err(message),
            Err((message, true)) if indices.len() == 1 => Ok(vec![Entry::Rejected(message)]),
            Err(_) => {
                // Find the bad outputs: each one alone, so the others still land.
                let alone = indices
                    .iter()
                    .map(|i| self.send(data, std::slice::from_ref(i)));
                Ok(futures::future::join_all(alone)
                    .await
                    .into_iter()
                    .map(|sent| match sent {
                        Ok(()) => Entry::Accepted,
                        Err((message, true)) => Entry::Rejected(message),
                        Err((message, false)) => Entry::Retry(message),
                    })
                    .collect())
            }
        }
    }
}

/// The datums of one output, or why it has none.
fn metric_data(data: &[u8]) -> Result<Vec<MetricDatum>, String> {
    let value: Value =
        serde_json::from_slice(data).map_err(|e| format!("metric output is not JSON: {e}"))?;
    match value {
        Value::Array(values) if !values.is_empty() => values.iter().map(datum).collect(),
        Value::Object(_) => Ok(vec![datum(&value)?]),
        _ => Err("metric output must be a JSON object or a non-empty array of them".into()),
    }
}

/// One datum from `{"metric", "value", "unit"?, "dimensions"?, "timestamp"?, "storage_resolution"?}`.
fn datum(value: &Value) -> Result<MetricDatum, String> {
    let name = value["metric"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("metric output needs \"metric\": a name")?;
    let number = value["value"]
        .as_f64()
        .filter(|v| v.is_finite())
        .ok_or("metric output needs \"value\": a finite number")?;
    let mut datum = MetricDatum::builder().metric_name(name).value(number);
    match &value["unit"] {
        Value::Null => {}
        Value::String(unit) if StandardUnit::values().contains(&unit.as_str()) => {
            datum = datum.unit(StandardUnit::from(unit.as_str()));
        }
        other => {
            return Err(format!(
                "metric \"unit\" {other} is not a CloudWatch standard unit"
            ));
        }
    }
    match &value["dimensions"] {
        Value::Null => {}
        Value::Object(dimensions) if dimensions.len() <= 30 => {
            for (name, value) in dimensions {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(format!(
                            "metric dimension {name:?} must be a string or number"
                        ));
                    }
                };
                datum = datum.dimensions(Dimension::builder().name(name).value(value).build());
            }
        }
        _ => return Err("metric \"dimensions\" must be an object of at most 30 names".into()),
    }
    match &value["timestamp"] {
        Value::Null => {}
        Value::Number(ms) => {
            let ms = ms
                .as_i64()
                .ok_or("metric \"timestamp\" must be whole epoch milliseconds")?;
            datum = datum.timestamp(DateTime::from_millis(ms));
        }
        Value::String(text) => {
            let at = DateTime::from_str(text, DateTimeFormat::DateTimeWithOffset)
                .map_err(|e| format!("metric \"timestamp\" {text:?} is not RFC 3339: {e}"))?;
            datum = datum.timestamp(at);
        }
        _ => return Err("metric \"timestamp\" must be epoch milliseconds or RFC 3339 text".into()),
    }
    match value["storage_resolution"].as_i64() {
        None if value["storage_resolution"].is_null() => {}
        Some(resolution @ (1 | 60)) => datum = datum.storage_resolution(resolution as i32),
        _ => return Err("metric \"storage_resolution\" must be 1 or 60".into()),
    }
    Ok(datum.build())
}

impl Destination for CloudWatchMetricsDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let data: Vec<Result<Vec<MetricDatum>, String>> =
                items.iter().map(|i| metric_data(&i.data)).collect();
            let valid: Vec<usize> = (0..items.len()).filter(|&i| data[i].is_ok()).collect();
            let counts = |i: usize| data[i].as_ref().map_or(0, Vec::len);
            let batches = batches(&valid, counts, 1000, 1000);
            let mut results = deliver_batches(items.len(), batches, 4, deadline, |indices| {
                self.put(&data, indices)
            })
            .await;
            for (i, datums) in data.iter().enumerate() {
                if let Err(message) = datums {
                    results[i] = Err(DeliveryError::new(message.clone()));
                }
            }
            results
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_outputs_become_datums() {
        let data = metric_data(
            br#"{"metric":"Latency","value":12.5,"unit":"Milliseconds","dimensions":{"sector":"TECH","n":3},"timestamp":1700000000000,"storage_resolution":1}"#,
        )
        .unwrap();
        assert_eq!(data.len(), 1);
        let d = &data[0];
        assert_eq!(d.metric_name(), Some("Latency"));
        assert_eq!(d.value(), Some(12.5));
        assert_eq!(d.unit(), Some(&StandardUnit::Milliseconds));
        assert_eq!(d.dimensions().len(), 2);
        assert_eq!(
            d.timestamp(),
            Some(&DateTime::from_millis(1_700_000_000_000))
        );
        assert_eq!(d.storage_resolution(), Some(1));
        let two = metric_data(br#"[{"metric":"a","value":1},{"metric":"b","value":2,"timestamp":"2024-01-01T00:00:00Z"}]"#).unwrap();
        assert_eq!(two.len(), 2);
        for bad in [
            &br#"{"value":1}"#[..],
            br#"{"metric":"a"}"#,
            br#"{"metric":"a","value":1,"unit":"Parsecs"}"#,
            br#"{"metric":"a","value":1,"storage_resolution":5}"#,
            br#"[]"#,
            b"not json",
        ] {
            assert!(
                metric_data(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
