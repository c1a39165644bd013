//! The discard destination: accepts every output and keeps none of it.
//!
//! For benchmarks and dry runs: it lets a measurement see what the host and the plugins cost
//! without the cost of a real target (a file per output, a network round trip) drowning it.

use super::{BoxFuture, DeliveryError, Destination, Envelope};
use std::time::Instant;

/// Answers every output as delivered and drops it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscardDestination;

impl Destination for DiscardDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        _deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move { vec![Ok(()); items.len()] })
    }
}
