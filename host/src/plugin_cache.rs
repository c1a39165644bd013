//! The compiled-plugin cache: `<PLUGIN_CACHE_DIR>/<sha256 of the plugin>-<engine hash>.cwasm`.
//!
//! Keyed by the plugin's content digest and by a hash of everything that makes a compiled
//! artifact loadable by an engine (wasmtime version, target, and settings such as fuel
//! metering: `Engine::precompile_compatibility_hash`), so a changed setting or a new host build
//! misses instead of loading something incompatible. On Lambda the default directory is in
//! `/tmp`, which lives as long as the execution environment: a warm container that reloads,
//! or a restart in it, neither downloads (pinned URIs) nor compiles again.
//!
//! The cache is an optimisation: a directory that cannot be written is logged and skipped.
//! Entries are written to a temporary file and renamed into place, so a reader never sees a
//! partial artifact.

use crate::plugin_source::Sha256Digest;
use sha2::{Digest as _, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;

/// A directory of compiled plugins for one engine configuration.
#[derive(Debug, Clone)]
pub struct PluginCache {
    dir: PathBuf,
    engine_hash: String,
}

/// Feeds `Hash` output into SHA-256, so the engine hash is the same in every process (the
/// standard library's hasher is not guaranteed to be).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

/// A short, stable hash of what makes compiled artifacts compatible with `engine`.
pub fn engine_hash(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl PluginCache {
    /// The cache in `dir` for artifacts of `engine`.
    pub fn new(dir: &Path, engine: &Engine) -> Self {
        PluginCache {
            dir: dir.to_path_buf(),
            engine_hash: engine_hash(engine),
        }
    }

    /// Where the artifact for the plugin with `digest` lives.
    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", self.engine_hash))
    }

    /// The cached artifact for `digest`, if there is one.
    pub fn get(&self, digest: &Sha256Digest) -> Option<Vec<u8>> {
        let path = self.path(digest);
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "plugin cache unreadable; compiling instead");
                None
            }
        }
    }

    /// Stores `artifact` for `digest`; failures are logged, not fatal.
    pub fn put(&self, digest: &Sha256Digest, artifact: &[u8]) {
        let path = self.path(digest);
        if let Err(e) = self.write_atomically(&path, artifact) {
            tracing::warn!(
                path = %path.display(),
                error = format!("{e:#}"),
                "could not write the plugin cache (set PLUGIN_CACHE_DIR to a writable directory); continuing without it"
            );
        }
    }

    /// Forgets the artifact for `digest` (one that failed to load).
    pub fn remove(&self, digest: &Sha256Digest) {
        let _ = std::fs::remove_file(self.path(digest));
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let temp = self.dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("artifact"),
            std::process::id()
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}
