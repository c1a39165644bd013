//! Where outputs go. Operators bind destination names to targets with `DESTINATIONS`
//! (`name=target,name=target`); plugins name the destination of each output.
//!
//! A destination receives all of a batch's outputs for its name at once, so it can batch
//! writes, and answers per output: an output is delivered only when the target accepted it.
//! Every output carries a key derived from its content and destination name, so writes are
//! idempotent where the target allows (KDA redelivers failed records, with new record ids).

mod discard;
mod files;
mod stdout;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

pub use files::FileDestination;
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
    /// `None`: `default` to files under `output_dir` if set, else to stdout.
    pub async fn from_config(spec: Option<&str>, output_dir: Option<&PathBuf>) -> Result<Self> {
        let spec = match (spec, output_dir) {
            (Some(s), _) => s.to_string(),
            (None, Some(dir)) => format!("default=dir:{}", dir.display()),
            (None, None) => "default=stdout".to_string(),
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
            let destination = Self::target(name, target)
                .await
                .with_context(|| format!("DESTINATIONS entry {name:?}={target:?}"))?;
            if by_name.insert(name.to_string(), destination).is_some() {
                bail!("DESTINATIONS binds {name:?} twice");
            }
        }
        Ok(Destinations { by_name })
    }

    async fn target(name: &str, target: &str) -> Result<Arc<dyn Destination>> {
        let (scheme, rest) = target.split_once(':').unwrap_or((target, ""));
        Ok(match scheme {
            "stdout" => Arc::new(StdoutDestination),
            "discard" => Arc::new(discard::DiscardDestination),
            "dir" if !rest.is_empty() => Arc::new(FileDestination::new(rest)),
            "file" => Arc::new(FileDestination::new(
                rest.strip_prefix("//").unwrap_or(rest),
            )),
            _ => {
                bail!("unknown target {target:?} for destination {name:?}: use stdout or dir:PATH")
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_names_and_rejects_unknown_targets() {
        let d = Destinations::from_config(Some("default=stdout, audit=dir:/tmp/x"), None)
            .await
            .unwrap();
        assert_eq!(d.names(), ["audit", "default"]);
        let err = Destinations::from_config(Some("default=carrier-pigeon:x"), None)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("carrier-pigeon"));
        let err = Destinations::from_config(Some("default"), None)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("name=target"));
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
