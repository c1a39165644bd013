//! The DynamoDB destination: `dynamodb:TABLE`; each output, a JSON object, becomes one item.
//!
//! Type mapping: string → `S`, number → `N`, `true`/`false` → `BOOL`, `null` → `NULL`,
//! array → `L`, object → `M`, recursively. An output that is not a JSON object fails its record.
//! The item must carry the table's key attributes; `#key=ATTR` sets attribute `ATTR` to the
//! output's content key, for tables keyed by content.
//!
//! Items are written with `BatchWriteItem`, 25 per call; `UnprocessedItems` are sent again
//! with backoff until the deadline. When DynamoDB refuses a whole batch as invalid (one item
//! lacks a key attribute, or two items share a key), that batch is written item by item with
//! `PutItem`, so only the invalid items fail. A put replaces the item with the same key, so
//! replaying a record rewrites the same items: idempotent as long as the key comes from the
//! content (the row's own key fields, or `#key`).

use super::{
    AwsContext, BoxFuture, DeliveryError, Destination, Entry, Envelope, Options, batches,
    deliver_batches, sdk_error,
};
use anyhow::{Result, bail};
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Instant;

type Item = HashMap<String, AttributeValue>;

/// Writes each output as one DynamoDB item, in batches of up to 25.
#[derive(Debug, Clone)]
pub struct DynamoDbDestination {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key_attribute: Option<String>,
}

impl DynamoDbDestination {
    /// Parses `dynamodb:TABLE` and builds the client.
    pub(crate) async fn new(
        target: &str,
        mut options: Options,
        aws: &AwsContext<'_>,
    ) -> Result<Self> {
        let table = target.strip_prefix("dynamodb:").unwrap_or_default();
        if table.len() < 3 {
            bail!("DynamoDB target {target:?} names no table: use dynamodb:TABLE");
        }
        let key_attribute = options.take("key");
        if key_attribute.as_deref().is_some_and(str::is_empty) {
            bail!("DynamoDB option key= names no attribute");
        }
        options.finish()?;
        let mut config = aws_sdk_dynamodb::config::Builder::from(aws.sdk().await);
        if let Some(url) = aws.settings().service_endpoint("DYNAMODB") {
            config = config.endpoint_url(url);
        }
        Ok(DynamoDbDestination {
            client: aws_sdk_dynamodb::Client::from_conf(config.build()),
            table: table.to_string(),
            key_attribute,
        })
    }

    /// The item for an output, or why there is none.
    fn item(&self, envelope: &Envelope) -> Result<Item, String> {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&envelope.data) else {
            return Err("a DynamoDB item must come from a JSON object".into());
        };
        let mut item: Item = fields.into_iter().map(|(k, v)| (k, attribute(v))).collect();
        if let Some(key) = &self.key_attribute {
            item.insert(key.clone(), AttributeValue::S(envelope.key.clone()));
        }
        Ok(item)
    }

    async fn write(
        &self,
        items: &[Option<Item>],
        indices: Vec<usize>,
    ) -> Result<Vec<Entry>, String> {
        let requests = indices
            .iter()
            .map(|&i| {
                let put = PutRequest::builder()
                    .set_item(items[i].clone())
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, String>>()?;
        let answer = self
            .client
            .batch_write_item()
            .request_items(&self.table, requests)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) if e.code() == Some("ValidationException") => {
                return Ok(self.put_each(items, &indices).await);
            }
            Err(e) => {
                return Err(format!(
                    "DynamoDB BatchWriteItem to {}: {}",
                    self.table,
                    sdk_error(&e)
                ));
            }
        };
        let unprocessed: Vec<&Item> = answer
            .unprocessed_items()
            .and_then(|tables| tables.get(&self.table))
            .into_iter()
            .flatten()
            .filter_map(|w| w.put_request().map(PutRequest::item))
            .collect();
        Ok(indices
            .iter()
            .map(|&i| match &items[i] {
                Some(item) if unprocessed.contains(&item) => {
                    Entry::Retry("DynamoDB left the item unprocessed".into())
                }
                _ => Entry::Accepted,
            })
            .collect())
    }

    /// Writes a batch DynamoDB refused as a whole one item at a time, to find the bad ones.
    async fn put_each(&self, items: &[Option<Item>], indices: &[usize]) -> Vec<Entry> {
        let puts = indices.iter().map(|&i| async move {
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(items[i].clone())
                .send()
                .await;
            match put {
                Ok(_) => Entry::Accepted,
                Err(e) => {
                    let message = format!("DynamoDB PutItem to {}: {}", self.table, sdk_error(&e));
                    match e.code() {
                        Some(
                            "ProvisionedThroughputExceededException"
                            | "ThrottlingException"
                            | "RequestLimitExceeded",
                        ) => Entry::Retry(message),
                        _ => Entry::Rejected(message),
                    }
                }
            }
        });
        futures::future::join_all(puts).await
    }
}

/// A JSON value as a DynamoDB attribute value.
fn attribute(value: Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s),
        Value::Array(values) => AttributeValue::L(values.into_iter().map(attribute).collect()),
        Value::Object(fields) => {
            AttributeValue::M(fields.into_iter().map(|(k, v)| (k, attribute(v))).collect())
        }
    }
}

impl Destination for DynamoDbDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let converted: Vec<Result<Item, String>> = items.iter().map(|e| self.item(e)).collect();
            // Identical outputs are one item: BatchWriteItem refuses a batch that names a key
            // twice, so each content key is written once and its result shared.
            let mut first: HashMap<&str, usize> = HashMap::new();
            let mut valid = Vec::new();
            for (i, (envelope, item)) in items.iter().zip(&converted).enumerate() {
                if item.is_ok() && *first.entry(envelope.key.as_str()).or_insert(i) == i {
                    valid.push(i);
                }
            }
            let prepared: Vec<Option<Item>> =
                converted.iter().map(|r| r.as_ref().ok().cloned()).collect();
            let batches = batches(&valid, |i| items[i].data.len(), 25, 15 << 20);
            let mut results = deliver_batches(items.len(), batches, 4, deadline, |indices| {
                self.write(&prepared, indices)
            })
            .await;
            for (i, (envelope, item)) in items.iter().zip(&converted).enumerate() {
                match item {
                    Err(message) => results[i] = Err(DeliveryError::new(message.clone())),
                    Ok(_) => {
                        let original = first[envelope.key.as_str()];
                        if original != i {
                            results[i] = results[original].clone();
                        }
                    }
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
    fn json_maps_to_attribute_values() {
        let value = serde_json::json!({"a": [1, "x", null, true], "m": {"n": 1.5}});
        let AttributeValue::M(fields) = attribute(value) else {
            panic!("an object maps to M")
        };
        assert_eq!(
            fields["a"],
            AttributeValue::L(vec![
                AttributeValue::N("1".into()),
                AttributeValue::S("x".into()),
                AttributeValue::Null(true),
                AttributeValue::Bool(true),
            ])
        );
        assert_eq!(
            fields["m"],
            AttributeValue::M([("n".to_string(), AttributeValue::N("1.5".into()))].into())
        );
    }
}
