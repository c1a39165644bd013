//! Support for the integration tests: paths of the plugins that `build.rs` compiled from source
//! to WebAssembly components, real servers (moto, PostgreSQL, HTTP) started on 127.0.0.1, and a
//! protocol bridge that lets current AWS SDK CloudWatch clients talk to moto.

pub mod plugins;
pub mod rpc_v2_cbor;
pub mod services;
