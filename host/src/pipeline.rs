//! Runs a batch through the pipeline's stages, tracking which records every output came from.
//!
//! Stages run one after another over the whole batch (stage-major), so each stage's `flush`
//! sees everything its `process` saw. An output of `process` belongs to its record; an output
//! of `flush` belongs to every record the stage processed, so if it is lost they all fail and
//! the source retries them together.

use crate::failure::{Cause, Failure};
use crate::sandbox::{CallInput, LoadedPlugin, Sandbox, StageRun};
use crate::state::DurableStore;
use std::sync::Arc;
use std::time::Instant;

/// The records an item was derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// One record, by index in the batch.
    Record(u32),
    /// Several records (the outputs of a flush).
    Group(Arc<[u32]>),
}

impl Origin {
    /// The record indices.
    pub fn indices(&self) -> &[u32] {
        match self {
            Origin::Record(i) => std::slice::from_ref(i),
            Origin::Group(g) => g,
        }
    }
}

/// Data on its way through the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Where it came from.
    pub origin: Origin,
    /// The destination name chosen so far.
    pub destination: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A batch record as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct BatchRecord {
    /// The record id.
    pub record_id: String,
    /// Failed deliveries so far.
    pub retry_hint: u32,
}

/// What the batch shares: its source and its records.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Source ARN.
    pub source_arn: String,
    /// Source contract name.
    pub source_kind: &'static str,
    /// The records, by index.
    pub records: Vec<BatchRecord>,
}

/// Per-record outcome so far: `None` while the record is fine.
pub type Outcomes = Vec<Option<Failure>>;

/// Marks every record of `origin` failed, logging one structured line per record that had not
/// failed before (an earlier failure is kept: it is the root cause).
pub fn fail(
    batch: &Batch,
    outcomes: &mut Outcomes,
    origin: &Origin,
    stage: &str,
    failure: &Failure,
) {
    for &i in origin.indices() {
        let slot = &mut outcomes[i as usize];
        if slot.is_none() {
            tracing::warn!(
                record_id = batch.records[i as usize].record_id,
                cause = failure.cause.as_str(),
                stage,
                message = failure.message,
                "record failed"
            );
            *slot = Some(failure.clone());
        }
    }
}

fn alive(outcomes: &Outcomes, origin: &Origin) -> bool {
    origin
        .indices()
        .iter()
        .any(|&i| outcomes[i as usize].is_none())
}

/// The default destination name: an output with it keeps its input's destination.
pub const DEFAULT_DESTINATION: &str = "default";

/// Runs `items` through every stage and returns the final items. Failures are written to
/// `outcomes`; items of failed records are dropped as soon as a record fails.
pub fn run(
    sandbox: &Sandbox,
    stages: &[LoadedPlugin],
    store: &Arc<dyn DurableStore>,
    batch: &Batch,
    mut items: Vec<Item>,
    outcomes: &mut Outcomes,
    deadline: Instant,
) -> Vec<Item> {
    for plugin in stages {
        let mut stage = StageRun::new(sandbox, plugin, store.clone());
        let mut next = Vec::with_capacity(items.len());
        let mut contributed: Vec<u32> = Vec::new();
        for item in items {
            if !alive(outcomes, &item.origin) {
                continue;
            }
            let (record_id, retry_hint) = match &item.origin {
                Origin::Record(i) => {
                    let r = &batch.records[*i as usize];
                    (r.record_id.as_str(), r.retry_hint)
                }
                Origin::Group(_) => ("", 0),
            };
            let input = CallInput {
                record_id,
                retry_hint,
                source_arn: &batch.source_arn,
                source_kind: batch.source_kind,
                destination: &item.destination,
                data: item.data,
            };
            match stage.process(input, deadline) {
                Ok(outputs) => {
                    contributed.extend_from_slice(item.origin.indices());
                    // The input's destination moves into the last output that keeps it; only
                    // earlier ones need a copy.
                    let mut inherited = Some(item.destination);
                    let last_default = outputs
                        .iter()
                        .rposition(|o| o.destination == DEFAULT_DESTINATION);
                    next.extend(outputs.into_iter().enumerate().map(|(i, o)| Item {
                        origin: item.origin.clone(),
                        destination: match last_default {
                            Some(last) if i == last => inherited.take().unwrap_or_default(),
                            _ if o.destination == DEFAULT_DESTINATION => {
                                inherited.clone().unwrap_or_default()
                            }
                            _ => o.destination,
                        },
                        data: o.data,
                    }));
                }
                Err(failure) => fail(batch, outcomes, &item.origin, plugin.name(), &failure),
            }
        }

        contributed.sort_unstable();
        contributed.dedup();
        let group = Origin::Group(contributed.into());
        match stage.flush(deadline) {
            Ok(outputs) => next.extend(outputs.into_iter().map(|o| Item {
                origin: group.clone(),
                destination: o.destination,
                data: o.data,
            })),
            Err(failure) => {
                let failure = Failure::new(
                    failure.cause,
                    format!(
                        "flush of stage {:?} failed: {}",
                        plugin.name(),
                        failure.message
                    ),
                );
                fail(batch, outcomes, &group, plugin.name(), &failure);
            }
        }
        if let Err(e) = stage.finish() {
            let failure = Failure::new(Cause::Trap, format!("{e:#}"));
            fail(batch, outcomes, &group, plugin.name(), &failure);
        }
        items = next;
    }
    items.retain(|item| alive(outcomes, &item.origin));
    items
}
