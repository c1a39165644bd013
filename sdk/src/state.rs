//! Key-value state kept by the host, in two [`Scope`]s.
//!
//! Writes made while processing a record take effect only if that call succeeds, so a record
//! that fails leaves no partial state behind.

use crate::{Scope, host};

/// Returns the value stored under `key`, or `None`.
pub fn get(scope: Scope, key: &str) -> Option<Vec<u8>> {
    host::state_get(scope, key)
}

/// Stores `value` under `key`.
pub fn set(scope: Scope, key: &str, value: &[u8]) {
    host::state_set(scope, key, value)
}

/// Removes `key`.
pub fn delete(scope: Scope, key: &str) {
    host::state_delete(scope, key)
}

/// Lists the keys starting with `prefix`, in ascending order.
pub fn keys(scope: Scope, prefix: &str) -> Vec<String> {
    host::state_keys(scope, prefix)
}
