//! The plain Rust types a plugin works with.

use std::fmt;

/// One record of a batch: its bytes and what the host knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The decoded bytes of the record (for KDA: one output row, usually JSON or CSV).
    pub data: Vec<u8>,
    /// Where the record came from.
    pub metadata: Metadata,
}

impl Record {
    /// A record with the given data and default metadata, handy in unit tests.
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        Record {
            data: data.into(),
            metadata: Metadata::default(),
        }
    }

    /// The data as UTF-8 text, or an [`Error::InvalidRecord`] saying it is not.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.data)
            .map_err(|e| Error::InvalidRecord(format!("record is not UTF-8: {e}")))
    }
}

/// What the host knows about a record besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The source's id for this delivery; it changes between retries, so it is no dedup key.
    pub record_id: String,
    /// How many deliveries of this record failed before; a hint that sources may reset.
    pub retry_hint: u32,
    /// The ARN of the application or stream that produced the record ("" when unknown).
    pub source_arn: String,
    /// Which contract the batch came in on, e.g. `"kda-output"` or `"local"`.
    pub source_kind: String,
    /// The destination an earlier pipeline stage chose ("default" for the first stage).
    pub destination: String,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            record_id: String::new(),
            retry_hint: 0,
            source_arn: String::new(),
            source_kind: "local".into(),
            destination: Output::DEFAULT_DESTINATION.into(),
        }
    }
}

/// One result of processing, delivered to a destination or fed to the next pipeline stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The destination name the operator binds to a target.
    pub destination: String,
    /// The bytes to deliver.
    pub data: Vec<u8>,
}

impl Output {
    /// The destination every pipeline has.
    pub const DEFAULT_DESTINATION: &'static str = "default";

    /// An output for the default destination.
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        Output::to(Self::DEFAULT_DESTINATION, data)
    }

    /// An output for the named destination.
    pub fn to(destination: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Output {
            destination: destination.into(),
            data: data.into(),
        }
    }
}

/// Why a record could not be processed. Any error fails the record, and the source retries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The record's content cannot be processed; retrying the same content fails again.
    InvalidRecord(String),
    /// The plugin's configuration is missing or wrong.
    InvalidConfig(String),
    /// A failure that may succeed on a later delivery.
    Transient(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRecord(m) => write!(f, "invalid record: {m}"),
            Error::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Error::Transient(m) => write!(f, "transient: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that did not fail the record.
    Warn,
    /// A failure.
    Error,
}

/// How long stored state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Until the end of the current batch; shared by its records and visible to flush.
    Batch,
    /// Across batches, in the host's durable store for this pipeline stage.
    Durable,
}
