//! Support for the integration tests: paths of the plugins that `build.rs` compiled from source
//! to WebAssembly components, and real servers (moto, PostgreSQL, HTTP) started on 127.0.0.1.

pub mod plugins;
pub mod services;
