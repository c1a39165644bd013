//! Plugin key-value state: batch scope in memory, durable scope in a [`DurableStore`].
//!
//! Writes made during one plugin call are held apart and applied only when the call succeeds
//! ([`StageState::commit`]), so a poison-pill record leaves no half-written state. Durable
//! writes reach the store once, at the end of the batch.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How long a value lives (mirrors the WIT `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Until the end of the batch.
    Batch,
    /// Across batches.
    Durable,
}

/// Where durable state lives between invocations.
pub trait DurableStore: Send + Sync + std::fmt::Debug {
    /// The value under `key` in `namespace`.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Every key of `namespace`, sorted.
    fn keys(&self, namespace: &str) -> Result<Vec<String>>;
    /// Applies `changes` (`None` deletes) to `namespace`.
    fn apply(&self, namespace: &str, changes: &BTreeMap<String, Option<Vec<u8>>>) -> Result<()>;
}

/// Durable state as files: `<dir>/<namespace>/<hex of key>`, each written atomically.
/// On Lambda `/tmp` is per execution environment, so this state is per container.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore { dir: dir.into() }
    }

    fn namespace_dir(&self, namespace: &str) -> PathBuf {
        self.dir.join(hex(namespace.as_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

impl DurableStore for FileStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.namespace_dir(namespace).join(hex(key.as_bytes()));
        match fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading state {}", path.display())),
        }
    }

    fn keys(&self, namespace: &str) -> Result<Vec<String>> {
        let dir = self.namespace_dir(namespace);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(key) = name.to_str().and_then(unhex) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn apply(&self, namespace: &str, changes: &BTreeMap<String, Option<Vec<u8>>>) -> Result<()> {
        let dir = self.namespace_dir(namespace);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (key, value) in changes {
            let path = dir.join(hex(key.as_bytes()));
            match value {
                Some(v) => write_atomically(&path, v)?,
                None => match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("deleting {}", path.display()));
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The state one pipeline stage sees during one batch.
#[derive(Debug)]
pub struct StageState {
    namespace: String,
    store: Arc<dyn DurableStore>,
    batch: BTreeMap<String, Vec<u8>>,
    /// Durable values read or written this batch (`None` = absent).
    durable: BTreeMap<String, Option<Vec<u8>>>,
    /// Keys changed this batch, to write back at the end.
    durable_dirty: BTreeMap<String, Option<Vec<u8>>>,
    durable_listed: bool,
    /// The current call's uncommitted writes.
    pending: BTreeMap<(Scope, String), Option<Vec<u8>>>,
}

impl StageState {
    /// Empty batch state over the durable `namespace` of `store`.
    pub fn new(namespace: &str, store: Arc<dyn DurableStore>) -> Self {
        StageState {
            namespace: namespace.to_string(),
            store,
            batch: BTreeMap::new(),
            durable: BTreeMap::new(),
            durable_dirty: BTreeMap::new(),
            durable_listed: false,
            pending: BTreeMap::new(),
        }
    }

    /// The value under `key`, seeing this call's own writes first.
    pub fn get(&mut self, scope: Scope, key: &str) -> Result<Option<Vec<u8>>> {
        // Most reads come before the call's first write: then there is no lookup key to build.
        if !self.pending.is_empty()
            && let Some(v) = self.pending.get(&(scope, key.to_string()))
        {
            return Ok(v.clone());
        }
        match scope {
            Scope::Batch => Ok(self.batch.get(key).cloned()),
            Scope::Durable => {
                if let Some(v) = self.durable.get(key) {
                    return Ok(v.clone());
                }
                let v = self.store.get(&self.namespace, key)?;
                self.durable.insert(key.to_string(), v.clone());
                Ok(v)
            }
        }
    }

    /// Records a write (`None` deletes) to apply if the call succeeds.
    pub fn set(&mut self, scope: Scope, key: &str, value: Option<Vec<u8>>) {
        self.pending.insert((scope, key.to_string()), value);
    }

    /// Keys starting with `prefix`, sorted, including this call's writes.
    pub fn keys(&mut self, scope: Scope, prefix: &str) -> Result<Vec<String>> {
        let mut keys: BTreeMap<String, bool> = match scope {
            Scope::Batch => self.batch.keys().map(|k| (k.clone(), true)).collect(),
            Scope::Durable => {
                if !self.durable_listed {
                    for key in self.store.keys(&self.namespace)? {
                        if !self.durable.contains_key(&key) {
                            let v = self.store.get(&self.namespace, &key)?;
                            self.durable.insert(key, v);
                        }
                    }
                    self.durable_listed = true;
                }
                self.durable
                    .iter()
                    .map(|(k, v)| (k.clone(), v.is_some()))
                    .collect()
            }
        };
        for ((s, k), v) in &self.pending {
            if *s == scope {
                keys.insert(k.clone(), v.is_some());
            }
        }
        Ok(keys
            .into_iter()
            .filter(|(k, present)| *present && k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect())
    }

    /// Applies the current call's writes.
    pub fn commit(&mut self) {
        for ((scope, key), value) in std::mem::take(&mut self.pending) {
            match scope {
                Scope::Batch => match value {
                    Some(v) => {
                        self.batch.insert(key, v);
                    }
                    None => {
                        self.batch.remove(&key);
                    }
                },
                Scope::Durable => {
                    self.durable.insert(key.clone(), value.clone());
                    self.durable_dirty.insert(key, value);
                }
            }
        }
    }

    /// Discards the current call's writes.
    pub fn rollback(&mut self) {
        self.pending.clear();
    }

    /// Writes this batch's committed durable changes to the store.
    pub fn persist(&mut self) -> Result<()> {
        if self.durable_dirty.is_empty() {
            return Ok(());
        }
        self.store
            .apply(&self.namespace, &self.durable_dirty)
            .with_context(|| format!("saving durable state of stage {:?}", self.namespace))?;
        self.durable_dirty.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dir: &Path) -> StageState {
        StageState::new("stage", Arc::new(FileStore::new(dir)))
    }

    #[test]
    fn writes_apply_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path());
        s.set(Scope::Batch, "a", Some(b"1".to_vec()));
        assert_eq!(s.get(Scope::Batch, "a").unwrap(), Some(b"1".to_vec()));
        s.rollback();
        assert_eq!(s.get(Scope::Batch, "a").unwrap(), None);
        s.set(Scope::Batch, "a", Some(b"2".to_vec()));
        s.commit();
        assert_eq!(s.get(Scope::Batch, "a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn durable_state_survives_batches_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path());
        s.set(Scope::Durable, "k/1", Some(b"x".to_vec()));
        s.set(Scope::Durable, "k/2", Some(b"y".to_vec()));
        s.set(Scope::Durable, "other", Some(b"z".to_vec()));
        s.commit();
        s.persist().unwrap();

        let mut next = state(dir.path());
        assert_eq!(
            next.get(Scope::Durable, "k/1").unwrap(),
            Some(b"x".to_vec())
        );
        assert_eq!(next.keys(Scope::Durable, "k/").unwrap(), ["k/1", "k/2"]);
        next.set(Scope::Durable, "k/1", None);
        next.commit();
        next.persist().unwrap();

        let mut third = state(dir.path());
        assert_eq!(third.keys(Scope::Durable, "").unwrap(), ["k/2", "other"]);
    }

    #[test]
    fn keys_merge_pending_writes_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(dir.path());
        s.set(Scope::Batch, "b", Some(vec![]));
        s.commit();
        s.set(Scope::Batch, "a", Some(vec![]));
        s.set(Scope::Batch, "b", None);
        assert_eq!(s.keys(Scope::Batch, "").unwrap(), ["a"]);
    }
}
