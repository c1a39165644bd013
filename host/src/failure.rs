//! Why a record was answered `DeliveryFailed`: the one typed error callers branch on.

use serde::Serialize;
use std::fmt;

/// The kind of failure, as logged in the `cause` field of a failed-record line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The plugin used up its per-record fuel (instruction budget).
    Fuel,
    /// The plugin tried to grow its memory past the cap.
    Memory,
    /// The plugin overflowed its wasm stack.
    Stack,
    /// The record hit its wall-clock limit, or the invocation ran out of time.
    Deadline,
    /// The plugin trapped (a panic, `unreachable`, a bad host call, ...).
    Trap,
    /// The plugin returned an error for the record.
    PluginError,
    /// The record itself is unusable (e.g. its data is not valid base64).
    BadInput,
    /// The plugin's outputs for one record were larger than allowed.
    OutputLimit,
    /// A destination did not accept an output (or none is bound to its name).
    Destination,
}

impl Cause {
    /// The kebab-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Fuel => "fuel",
            Cause::Memory => "memory",
            Cause::Stack => "stack",
            Cause::Deadline => "deadline",
            Cause::Trap => "trap",
            Cause::PluginError => "plugin-error",
            Cause::BadInput => "bad-input",
            Cause::OutputLimit => "output-limit",
            Cause::Destination => "destination",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed record: the cause and a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cause}: {message}")]
pub struct Failure {
    /// What kind of failure it was.
    pub cause: Cause,
    /// What happened, in words.
    pub message: String,
}

impl Failure {
    /// A failure of the given cause.
    pub fn new(cause: Cause, message: impl Into<String>) -> Self {
        Failure {
            cause,
            message: message.into(),
        }
    }
}
