//! Absolute paths of the plugins that `tests/build.rs` compiled from source to WebAssembly
//! components (`wasm32-wasip2`, release profile), one constant per plugin crate.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
