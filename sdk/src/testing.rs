//! The in-memory stand-in for the host that plugin unit tests run against natively.
//!
//! Each test thread has its own configuration, state and log, so tests run in parallel without
//! seeing each other's values. State writes apply at once here; the transactional behaviour
//! (discarding the writes of a failed record) is the real host's and is tested there.
//!
//! ```
//! use postprocess_sdk::{testing, config};
//!
//! testing::reset();
//! testing::set_config("field", "name");
//! assert_eq!(config("field").as_deref(), Some("name"));
//! ```

use crate::{Level, Scope};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
struct FakeHost {
    config: HashMap<String, String>,
    batch: BTreeMap<String, Vec<u8>>,
    durable: BTreeMap<String, Vec<u8>>,
    logs: Vec<(Level, String)>,
}

thread_local! {
    static HOST: RefCell<FakeHost> = RefCell::default();
}

/// Clears this thread's configuration, state and log.
pub fn reset() {
    HOST.with(|h| *h.borrow_mut() = FakeHost::default());
}

/// Sets a configuration value that [`crate::config`] returns on this thread.
pub fn set_config(key: &str, value: &str) {
    HOST.with(|h| h.borrow_mut().config.insert(key.into(), value.into()));
}

/// Clears batch state, as the host does between batches; durable state stays.
pub fn end_batch() {
    HOST.with(|h| h.borrow_mut().batch.clear());
}

/// Returns the log lines written on this thread so far.
pub fn logs() -> Vec<(Level, String)> {
    HOST.with(|h| h.borrow().logs.clone())
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod native {
    use super::*;

    fn with_scope<R>(scope: Scope, f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> R) -> R {
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            match scope {
                Scope::Batch => f(&mut h.batch),
                Scope::Durable => f(&mut h.durable),
            }
        })
    }

    pub fn config(key: &str) -> Option<String> {
        HOST.with(|h| h.borrow().config.get(key).cloned())
    }

    pub fn log(level: Level, message: &str) {
        HOST.with(|h| h.borrow_mut().logs.push((level, message.into())));
    }

    pub fn state_get(scope: Scope, key: &str) -> Option<Vec<u8>> {
        with_scope(scope, |m| m.get(key).cloned())
    }

    pub fn state_set(scope: Scope, key: &str, value: &[u8]) {
        with_scope(scope, |m| m.insert(key.into(), value.to_vec()));
    }

    pub fn state_delete(scope: Scope, key: &str) {
        with_scope(scope, |m| m.remove(key));
    }

    pub fn state_keys(scope: Scope, prefix: &str) -> Vec<String> {
        with_scope(scope, |m| {
            m.range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, _)| k.clone())
                .collect()
        })
    }
}
