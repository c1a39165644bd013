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

impl FileDestination {
    fn write_all(dir: &std::path::Path, items: &[Envelope]) -> Vec<Result<(), DeliveryError>> {
        items
            .iter()
            .map(|item| {
                let dir = dir.join(&item.destination);
                let path = dir.join(&item.key);
                let tmp = dir.join(format!(".{}.tmp", item.key));
                std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(&tmp, &item.data))
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| DeliveryError::new(format!("writing {}: {e}", path.display())))
            })
            .collect()
    }
}

impl Destination for FileDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        _deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            // One blocking task for the batch: per-file async calls cost a thread hop each.
            let (dir, owned) = (self.dir.clone(), items.to_vec());
            tokio::task::spawn_blocking(move || Self::write_all(&dir, &owned))
                .await
                .unwrap_or_else(|e| {
                    let error = DeliveryError::new(format!("file writer failed: {e}"));
                    vec![Err(error); items.len()]
                })
        })
    }
}
