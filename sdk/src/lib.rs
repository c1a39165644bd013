//! Write post-processing plugins for the `postprocess` host.
//!
//! A plugin is a Rust library compiled to a WebAssembly component (`wasm32-wasip2`). The host
//! calls your `process` function once per record of a batch, and optionally a `flush` function
//! once at the end of the batch. Each output names a destination that the operator binds to a
//! target (S3, SQS, a file, ...); `"default"` is the one every pipeline has.
//!
//! Returning an [`Error`], panicking, or exceeding a resource limit fails that one record: the
//! host reports it as not delivered and the source delivers it again later. State written while
//! processing a failed record is discarded.
//!
//! The same code compiles natively, where the host functions ([`config`], [`state`], [`log`])
//! are backed by an in-memory stand-in ([`testing`]), so plugin logic is unit-tested with a
//! plain `cargo test`.
//!
//! # Example
//!
//! ```
//! use postprocess_sdk::{Error, Output, Record};
//!
//! /// Upper-cases every record; drops empty ones.
//! fn process(record: Record) -> Result<Vec<Output>, Error> {
//!     let text = record.text()?;
//!     if text.trim().is_empty() {
//!         return Ok(vec![]);
//!     }
//!     Ok(vec![Output::new(text.to_uppercase())])
//! }
//!
//! postprocess_sdk::export!(process);
//!
//! # fn main() {
//! let out = process(Record::new("hello")).unwrap();
//! assert_eq!(out, vec![Output::new("HELLO")]);
//! # }
//! ```
//!
//! An aggregating plugin also passes a flush function: `export!(process, flush = emit_totals)`,
//! where `fn emit_totals() -> Result<Vec<Output>, Error>` reads what `process` gathered in
//! [`Scope::Batch`] state.
#![deny(missing_docs)]

extern crate self as postprocess_sdk;

mod host;
mod types;

pub mod state;
pub mod testing;

pub use host::{config, log};
pub use types::{Error, Level, Metadata, Output, Record, Scope};

/// Exports your functions as the plugin. Call it once, at the top level of your crate.
///
/// `export!(process)` exports `process` and a flush that emits nothing;
/// `export!(process, flush = my_flush)` exports both. The functions must have these types:
///
/// ```text
/// fn process(record: Record) -> Result<Vec<Output>, Error>
/// fn my_flush() -> Result<Vec<Output>, Error>
/// ```
///
/// Your crate needs `crate-type = ["cdylib", "rlib"]` in its `[lib]` section to build as a
/// component with `cargo build --target wasm32-wasip2`. On other targets the macro only checks
/// the function types, so the crate still builds and unit-tests natively.
#[macro_export]
macro_rules! export {
    ($process:path $(,)?) => {
        $crate::export!($process, flush = $crate::__private::no_flush);
    };
    ($process:path, flush = $flush:path $(,)?) => {
        const _: () = {
            // A wrong signature fails here, with the expected type spelled out.
            const _PROCESS_MUST_BE_fn_Record_to_Result_Vec_Output_Error:
                fn(
                    $crate::Record,
                )
                    -> ::core::result::Result<::std::vec::Vec<$crate::Output>, $crate::Error> =
                $process;
            const _FLUSH_MUST_BE_fn_to_Result_Vec_Output_Error: fn() -> ::core::result::Result<
                ::std::vec::Vec<$crate::Output>,
                $crate::Error,
            > = $flush;
            $crate::__export_wasm!($process, $flush);
            // Using the checks marks the functions as used in native builds too, where nothing
            // else calls them outside of tests.
            let _ = (
                _PROCESS_MUST_BE_fn_Record_to_Result_Vec_Output_Error,
                _FLUSH_MUST_BE_fn_to_Result_Vec_Output_Error,
            );
        };
    };
}

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! __export_wasm {
    ($process:path, $flush:path) => {
        struct __PostprocessPlugin;
        impl $crate::__private::Guest for __PostprocessPlugin {
            fn process(
                record: $crate::__private::WitRecord,
            ) -> ::core::result::Result<
                ::std::vec::Vec<$crate::__private::WitOutput>,
                $crate::__private::WitError,
            > {
                $crate::__private::call_process($process, record)
            }
            fn flush() -> ::core::result::Result<
                ::std::vec::Vec<$crate::__private::WitOutput>,
                $crate::__private::WitError,
            > {
                $crate::__private::call_flush($flush)
            }
        }
        $crate::__private::bindings::__export_plugin!(
            __PostprocessPlugin with_types_in $crate::__private::bindings
        );
    };
}

#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! __export_wasm {
    ($process:path, $flush:path) => {};
}

/// Implementation details used by [`export!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// The flush used when a plugin does not pass one: it emits nothing.
    pub fn no_flush() -> Result<Vec<crate::Output>, crate::Error> {
        Ok(Vec::new())
    }

    #[cfg(target_arch = "wasm32")]
    pub use crate::host::wasm::{
        Guest, WitError, WitOutput, WitRecord, bindings, call_flush, call_process,
    };
}
