//! The host functions, backed by the real host on wasm and by [`crate::testing`] elsewhere.

use crate::{Level, Scope};

/// Returns the value the operator configured for `key` for this pipeline stage, or `None`.
pub fn config(key: &str) -> Option<String> {
    imp::config(key)
}

/// Writes a log line attributed to this plugin and the current record.
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}

pub(crate) fn state_get(scope: Scope, key: &str) -> Option<Vec<u8>> {
    imp::state_get(scope, key)
}

pub(crate) fn state_set(scope: Scope, key: &str, value: &[u8]) {
    imp::state_set(scope, key, value)
}

pub(crate) fn state_delete(scope: Scope, key: &str) {
    imp::state_delete(scope, key)
}

pub(crate) fn state_keys(scope: Scope, prefix: &str) -> Vec<String> {
    imp::state_keys(scope, prefix)
}

#[cfg(not(target_arch = "wasm32"))]
use crate::testing::native as imp;

#[cfg(target_arch = "wasm32")]
use wasm as imp;

// The generated bindings are undocumented and reached only through the `#[doc(hidden)]`
// `__private` module, so `missing_docs` does not apply to them.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
pub(crate) mod wasm {
    //! The wit-bindgen glue: the only place that knows the generated types.

    // Generated code: its shape (e.g. one parameter per flattened field) is wit-bindgen's.
    #[allow(clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "plugin",
            pub_export_macro: true,
            export_macro_name: "__export_plugin",
            default_bindings_module: "postprocess_sdk::__private::bindings",
        });
    }

    use crate::{Error, Level, Metadata, Output, Record, Scope};
    use bindings::postprocess::plugin::{host, types};

    pub use bindings::Guest;
    pub use types::{InputRecord as WitRecord, Output as WitOutput, PluginError as WitError};

    fn scope(scope: Scope) -> host::Scope {
        match scope {
            Scope::Batch => host::Scope::Batch,
            Scope::Durable => host::Scope::Durable,
        }
    }

    std::thread_local! {
        /// An instance's configuration never changes, so each key crosses the boundary once
        /// per instance instead of once per record.
        static CONFIG: std::cell::RefCell<std::collections::HashMap<String, Option<String>>> =
            std::cell::RefCell::default();
    }

    pub fn config(key: &str) -> Option<String> {
        if let Some(value) = CONFIG.with(|c| c.borrow().get(key).cloned()) {
            return value;
        }
        let value = host::config_get(key);
        CONFIG.with(|c| c.borrow_mut().insert(key.to_string(), value.clone()));
        value
    }

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message)
    }

    pub fn state_get(s: Scope, key: &str) -> Option<Vec<u8>> {
        host::state_get(scope(s), key)
    }

    pub fn state_set(s: Scope, key: &str, value: &[u8]) {
        host::state_set(scope(s), key, value)
    }

    pub fn state_delete(s: Scope, key: &str) {
        host::state_delete(scope(s), key)
    }

    pub fn state_keys(s: Scope, prefix: &str) -> Vec<String> {
        host::state_keys(scope(s), prefix)
    }

    fn outputs(result: Result<Vec<Output>, Error>) -> Result<Vec<WitOutput>, WitError> {
        match result {
            Ok(outputs) => Ok(outputs
                .into_iter()
                .map(|o| WitOutput {
                    destination: o.destination,
                    data: o.data,
                })
                .collect()),
            Err(Error::InvalidRecord(m)) => Err(WitError::InvalidRecord(m)),
            Err(Error::InvalidConfig(m)) => Err(WitError::InvalidConfig(m)),
            Err(Error::Transient(m)) => Err(WitError::Transient(m)),
        }
    }

    pub fn call_process(
        process: fn(Record) -> Result<Vec<Output>, Error>,
        record: WitRecord,
    ) -> Result<Vec<WitOutput>, WitError> {
        let m = record.metadata;
        outputs(process(Record {
            data: record.data,
            metadata: Metadata {
                record_id: m.record_id,
                retry_hint: m.retry_hint,
                source_arn: m.source_arn,
                source_kind: m.source_kind,
                destination: m.destination,
            },
        }))
    }

    pub fn call_flush(
        flush: fn() -> Result<Vec<Output>, Error>,
    ) -> Result<Vec<WitOutput>, WitError> {
        outputs(flush())
    }
}
