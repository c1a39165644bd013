//! The file destination: one file per output, `<dir>/<destination name>/<content key>`.
//! The name is the content key, so redelivering the same output rewrites the same file.

use super::{BoxFuture, DeliveryError, Destination, Envelope};
use std::path::PathBuf;
use std::time::Instant;

/// Writes each output to its own file under a directory, atomically (write, then rename).
#[derive(Debug, Clone)]
pub struct FileDestination {
    dir: PathBuf,
}

impl FileDestination {
    /// A destination writing under `dir` (created when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileDestination { dir: dir.into() }
    }
}

impl Destination for FileDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        _deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                let dir = self.dir.join(&item.destination);
                let path = dir.join(&item.key);
                let tmp = dir.join(format!(".{}.tmp", item.key));
                let written = async {
                    tokio::fs::create_dir_all(&dir).await?;
                    tokio::fs::write(&tmp, &item.data).await?;
                    tokio::fs::rename(&tmp, &path).await
                }
                .await;
                results.push(
                    written.map_err(|e| {
                        DeliveryError::new(format!("writing {}: {e}", path.display()))
                    }),
                );
            }
            results
        })
    }
}
