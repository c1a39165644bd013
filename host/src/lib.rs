//! `postprocess`: the AWS Lambda destination for Kinesis Data Analytics output, with
//! post-processing done by sandboxed WebAssembly component plugins.
//!
//! KDA invokes the function with a batch of base64 rows and needs every `recordId` answered
//! `Ok` or `DeliveryFailed`. Each record runs through a pipeline of plugins ([`sandbox`]) under
//! fuel, memory, stack and wall-clock limits, so a poison pill fails its own record and
//! nothing else; outputs go to the [`destinations`] the operator bound.
//!
//! Layout: [`config`] (one struct from the environment), [`contract`] (KDA's event and
//! response), [`handler`] (one invocation, end to end), [`pipeline`] (stages over a batch),
//! [`sandbox`] (wasmtime), [`plugin_loader`] (from `PLUGIN_URI` to compiled plugins, through
//! [`plugin_source`], [`plugin_cache`] and [`aws`]), [`state`] (plugin key-value state), [`destinations`],
//! [`failure`] (why a record failed), [`cli`] and [`lambda`] (the two ways in).

pub mod aws;
pub mod cli;
pub mod config;
pub mod contract;
pub mod destinations;
pub mod failure;
pub mod handler;
pub mod lambda;
pub mod pipeline;
pub mod plugin_cache;
pub mod plugin_loader;
pub mod plugin_source;
pub mod sandbox;
pub mod state;

pub use config::Config;
pub use handler::Processor;
