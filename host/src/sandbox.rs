//! The WebAssembly sandbox: one engine per process, plugins compiled once, and per-record
//! calls bounded by fuel, memory, stack and wall-clock limits.
//!
//! This is the only module that generates bindings from `wit/`.
//!
//! Instance lifetime: by default a stage keeps one instance for a whole batch (about 1 µs per
//! call), because a fresh instance costs tens of µs per record. An instance that trapped is
//! dropped and a fresh one serves the next record, so a poison pill never leaves a broken
//! instance behind. `INSTANCE_REUSE=record` gives every record a fresh instance.

use crate::config::{InstanceReuse, Limits, PluginSpec};
use crate::failure::{Cause, Failure};
use crate::state::{DurableStore, Scope, StageState};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: trappable },
});

use self::postprocess::plugin::host::{self as wit_host, Level};
use self::postprocess::plugin::types::Metadata;

/// How often the engine's epoch advances: the granularity of wall-clock limits.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes of guest stdout/stderr kept per call; the rest is dropped (and counted).
const GUEST_OUTPUT_CAP: usize = 16 << 10;

/// The engine and its limits, shared by every plugin of the process.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StoreState>,
    limits: Limits,
    reuse: InstanceReuse,
    ticker: Arc<Ticker>,
    ticker_thread: std::thread::Thread,
}

/// The epoch ticker's switches. It ticks only while some [`StageRun`] is alive and sleeps
/// (parked) otherwise, so an idle host, between invocations or while it waits on destinations,
/// is not woken a thousand times a second.
#[derive(Default)]
struct Ticker {
    /// Stage runs alive now.
    active: AtomicUsize,
    /// Set when the sandbox is dropped.
    stop: AtomicBool,
}

/// Keeps the epoch ticker running while held.
struct Ticking<'a>(&'a Sandbox);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.ticker.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .field("reuse", &self.reuse)
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Relaxed);
        self.ticker_thread.unpark();
    }
}

/// The wasmtime configuration this host compiles and runs plugins with. Precompiled artifacts
/// must come from an engine with the same settings.
pub fn engine_config(limits: &Limits) -> EngineConfig {
    let mut config = EngineConfig::new();
    config.consume_fuel(limits.fuel.is_some());
    config.epoch_interruption(true);
    config.max_wasm_stack(limits.stack_bytes);
    // wasmtime-wasi brings in async support, whose fiber stacks must hold the wasm stack even
    // though plugins run synchronously.
    config.async_stack_size(limits.stack_bytes.max(2 << 20) + (1 << 20));
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Deep enough to tell a linear-memory stack overflow from a stray access (see `classify`).
    config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(DEEP_RECURSION_FRAMES));
    let mut pool = PoolingAllocationConfig::default();
    // A few slots suffice: instances are used one at a time per stage. Keeping the pool small
    // keeps the virtual-memory reservation small.
    pool.total_component_instances(64)
        .total_core_instances(256)
        .total_memories(128)
        .total_tables(128)
        .max_memory_size(limits.memory_bytes);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl Sandbox {
    /// Creates the engine and starts the epoch ticker that enforces wall-clock limits.
    pub fn new(limits: &Limits, reuse: InstanceReuse) -> Result<Self> {
        let engine = Engine::new(&engine_config(limits))
            .map_err(anyhow::Error::from)
            .context("creating the wasm engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        Plugin::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the host interface")?;

        let ticker = Arc::new(Ticker::default());
        let (weak, switches) = (engine.weak(), ticker.clone());
        let ticker_thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !switches.stop.load(Ordering::Relaxed) {
                    if switches.active.load(Ordering::Acquire) == 0 {
                        // An unpark that came first makes this return at once.
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("starting the epoch ticker")?
            .thread()
            .clone();

        Ok(Sandbox {
            engine,
            linker,
            limits: limits.clone(),
            reuse,
            ticker,
            ticker_thread,
        })
    }

    /// Starts the epoch ticker if it sleeps, and keeps it running until the guard is dropped.
    fn ticking(&self) -> Ticking<'_> {
        if self.ticker.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.ticker_thread.unpark();
        }
        Ticking(self)
    }

    /// The engine, for compiling or deserializing components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Prepares a compiled component for cheap instantiation, checking that its imports are
    /// ones this host provides and that it exports the plugin world.
    pub fn prepare(&self, spec: &PluginSpec, component: &Component) -> Result<LoadedPlugin> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "plugin {:?} needs an import this host does not provide \
                 (it must target the postprocess:plugin world and WASI 0.2)",
                    spec.location
                )
            })?;
        let pre = PluginPre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "plugin {:?} does not export the postprocess:plugin world (process and flush)",
                    spec.location
                )
            })?;
        Ok(LoadedPlugin {
            name: spec.name.clone(),
            config: Arc::new(spec.config.clone()),
            pre,
        })
    }

    /// Compiles a component from wasm bytes (Cranelift; tens of ms for a typical plugin).
    pub fn compile(&self, spec: &PluginSpec, bytes: &[u8]) -> Result<Component> {
        Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "plugin {:?} is not a valid WebAssembly component",
                    spec.location
                )
            })
    }

    /// Loads a precompiled artifact (`postprocess compile` output, or an entry of the plugin
    /// cache). Fails with an actionable message when it was made by an engine this one cannot
    /// run: another wasmtime version or target, or other settings such as `PLUGIN_FUEL` on/off.
    ///
    /// Callers pass only artifacts from trusted places: the operator's own `PLUGIN_URI` (local,
    /// S3 under the function's role, or HTTPS with a `#sha256=` pin, which the loader checked)
    /// or this host's cache directory.
    #[allow(unsafe_code)]
    pub fn deserialize(&self, location: &str, artifact: &[u8]) -> Result<Component> {
        // SAFETY: `Component::deserialize` trusts that the bytes are an artifact wasmtime
        // produced, since they are native code run as is. wasmtime itself checks the header,
        // version and engine settings (so a mismatch is an error, not UB); what it cannot check
        // is that the code was not forged. The loader only gets here with bytes the operator
        // chose and we verified (see above) or that this host wrote atomically to its own cache,
        // so they are `serialize` output of a wasmtime engine.
        let component = unsafe { Component::deserialize(&self.engine, artifact) };
        component.map_err(anyhow::Error::from).with_context(|| {
            format!(
                "plugin {location} is a precompiled artifact this host cannot load: it must come \
                 from `postprocess compile` of this same postprocess build, run with the same \
                 PLUGIN_FUEL (on or off) and limits as this function; recompile it, or point \
                 PLUGIN_URI at the .wasm component instead"
            )
        })
    }
}

/// A plugin compiled and linked, ready to instantiate.
#[derive(Clone)]
pub struct LoadedPlugin {
    name: String,
    config: Arc<BTreeMap<String, String>>,
    pre: PluginPre<StoreState>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// The stage name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Per-store data: WASI, limits, the plugin's config and its state.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    config: Arc<BTreeMap<String, String>>,
    state: StageState,
    stage: String,
    record_id: String,
    guest_output: GuestOutput,
}

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreState")
            .field("stage", &self.stage)
            .field("record_id", &self.record_id)
            .finish_non_exhaustive()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers that the cap was hit, so the resulting trap is reported
/// as a memory failure rather than a generic one.
struct MemoryLimiter {
    max_bytes: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        self.exceeded |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Guest stdout and stderr, kept in memory and forwarded to the host log after each call.
#[derive(Clone, Default)]
struct GuestOutput {
    buffer: Arc<Mutex<(Vec<u8>, usize)>>,
}

impl GuestOutput {
    fn take(&self) -> (Vec<u8>, usize) {
        let mut guard = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *guard)
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl GuestOutput {
    fn append(&self, bytes: &[u8]) {
        let mut guard = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = GUEST_OUTPUT_CAP.saturating_sub(guard.0.len());
        let kept = room.min(bytes.len());
        guard.0.extend_from_slice(&bytes[..kept]);
        guard.1 += bytes.len() - kept;
    }
}

impl wasmtime_wasi::p2::OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl wit_host::Host for StoreState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let (stage, record_id) = (&self.stage, &self.record_id);
        match level {
            Level::Trace => tracing::trace!(stage, record_id, "{message}"),
            Level::Debug => tracing::debug!(stage, record_id, "{message}"),
            Level::Info => tracing::info!(stage, record_id, "{message}"),
            Level::Warn => tracing::warn!(stage, record_id, "{message}"),
            Level::Error => tracing::error!(stage, record_id, "{message}"),
        }
        Ok(())
    }

    fn config_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.get(&key).cloned())
    }

    fn state_get(
        &mut self,
        scope: wit_host::Scope,
        key: String,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.state
            .get(scope.into(), &key)
            .map_err(wasmtime::Error::from_anyhow)
    }

    fn state_set(
        &mut self,
        scope: wit_host::Scope,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.state.set(scope.into(), &key, Some(value));
        Ok(())
    }

    fn state_delete(&mut self, scope: wit_host::Scope, key: String) -> wasmtime::Result<()> {
        self.state.set(scope.into(), &key, None);
        Ok(())
    }

    fn state_keys(
        &mut self,
        scope: wit_host::Scope,
        prefix: String,
    ) -> wasmtime::Result<Vec<String>> {
        self.state
            .keys(scope.into(), &prefix)
            .map_err(wasmtime::Error::from_anyhow)
    }
}

impl self::postprocess::plugin::types::Host for StoreState {}

impl From<wit_host::Scope> for Scope {
    fn from(s: wit_host::Scope) -> Self {
        match s {
            wit_host::Scope::Batch => Scope::Batch,
            wit_host::Scope::Durable => Scope::Durable,
        }
    }
}

/// What a plugin call gets to know about its input.
#[derive(Debug, Clone)]
pub struct CallInput<'a> {
    /// The record id (empty for outputs of a flush).
    pub record_id: &'a str,
    /// Failed deliveries so far.
    pub retry_hint: u32,
    /// The source ARN.
    pub source_arn: &'a str,
    /// The source contract.
    pub source_kind: &'a str,
    /// The destination an earlier stage chose.
    pub destination: &'a str,
    /// The bytes, handed over: the call moves them into the guest, and nothing reads them after.
    pub data: Vec<u8>,
}

/// One output of a call: destination name and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutput {
    /// The destination name the plugin chose.
    pub destination: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// One stage's instance and state for one batch.
pub struct StageRun<'a> {
    sandbox: &'a Sandbox,
    plugin: &'a LoadedPlugin,
    /// `None` between a trap and the next call, or after every call in per-record mode.
    instance: Option<(Store<StoreState>, Plugin)>,
    /// Kept here whenever no store holds it.
    state: Option<StageState>,
    /// The argument of `process`, kept between calls so that its metadata strings keep their
    /// buffers (`None` during a call).
    record: Option<InputRecord>,
    /// Wall-clock limits need the epoch ticker while plugin code can run.
    _ticking: Ticking<'a>,
}

impl std::fmt::Debug for StageRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageRun")
            .field("plugin", &self.plugin.name)
            .field("instantiated", &self.instance.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> StageRun<'a> {
    /// Starts a batch for `plugin`, with durable state from `store`.
    pub fn new(
        sandbox: &'a Sandbox,
        plugin: &'a LoadedPlugin,
        store: Arc<dyn DurableStore>,
    ) -> Self {
        StageRun {
            sandbox,
            plugin,
            instance: None,
            state: Some(StageState::new(plugin.name(), store)),
            record: None,
            _ticking: sandbox.ticking(),
        }
    }

    fn instantiate(&mut self) -> Result<(), Failure> {
        if self.instance.is_some() {
            return Ok(());
        }
        let state = self
            .state
            .take()
            .expect("stage state is held by the run or the store");
        let output = GuestOutput::default();
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut store = Store::new(
            self.sandbox.engine(),
            StoreState {
                wasi,
                table: ResourceTable::new(),
                limiter: MemoryLimiter {
                    max_bytes: self.sandbox.limits.memory_bytes,
                    exceeded: false,
                },
                config: self.plugin.config.clone(),
                state,
                stage: self.plugin.name.clone(),
                record_id: String::new(),
                guest_output: output,
            },
        );
        store.limiter(|s| &mut s.limiter);
        // Instantiation runs guest start code: bound it like a call.
        self.arm(
            &mut store,
            Instant::now() + self.sandbox.limits.call_timeout,
        );
        match self.plugin.pre.instantiate(&mut store) {
            Ok(bindings) => {
                self.instance = Some((store, bindings));
                Ok(())
            }
            Err(e) => {
                let failure = classify(&store, &e, "instantiating");
                self.state = Some(store.into_data().state);
                Err(failure)
            }
        }
    }

    fn arm(&self, store: &mut Store<StoreState>, deadline: Instant) {
        if let Some(fuel) = self.sandbox.limits.fuel {
            // Cannot fail: fuel metering is on whenever a fuel limit is set.
            let _ = store.set_fuel(fuel);
        }
        let limit = deadline
            .min(Instant::now() + self.sandbox.limits.call_timeout)
            .saturating_duration_since(Instant::now());
        let ticks = limit.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        store.data_mut().limiter.exceeded = false;
    }

    /// Runs `process` for one input, before `deadline` (the invocation's), and commits its
    /// state writes only if it succeeds.
    pub fn process(
        &mut self,
        input: CallInput<'_>,
        deadline: Instant,
    ) -> Result<Vec<CallOutput>, Failure> {
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Cause::Deadline,
                "the invocation deadline passed before this record was processed",
            ));
        }
        self.instantiate()?;
        // The previous call's record is overwritten in place, so its strings are not allocated
        // again, and the data is moved in rather than copied.
        let mut record = self.record.take().unwrap_or_else(|| InputRecord {
            data: Vec::new(),
            metadata: Metadata {
                record_id: String::new(),
                retry_hint: 0,
                source_arn: String::new(),
                source_kind: String::new(),
                destination: String::new(),
            },
        });
        record.data = input.data;
        let metadata = &mut record.metadata;
        input.record_id.clone_into(&mut metadata.record_id);
        metadata.retry_hint = input.retry_hint;
        input.source_arn.clone_into(&mut metadata.source_arn);
        input.source_kind.clone_into(&mut metadata.source_kind);
        input.destination.clone_into(&mut metadata.destination);
        let result = self.call(input.record_id, deadline, |store, bindings| {
            bindings.call_process(store, &record)
        });
        record.data = Vec::new();
        self.record = Some(record);
        result
    }

    /// Runs `flush` at the end of the batch.
    pub fn flush(&mut self, deadline: Instant) -> Result<Vec<CallOutput>, Failure> {
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Cause::Deadline,
                "the invocation deadline passed before the stage could flush",
            ));
        }
        self.instantiate()?;
        self.call("", deadline, |store, bindings| bindings.call_flush(store))
    }

    fn call(
        &mut self,
        record_id: &str,
        deadline: Instant,
        f: impl FnOnce(
            &mut Store<StoreState>,
            &Plugin,
        ) -> wasmtime::Result<Result<Vec<Output>, PluginError>>,
    ) -> Result<Vec<CallOutput>, Failure> {
        let (mut store, bindings) = self.instance.take().expect("instantiated above");
        self.arm(&mut store, deadline);
        record_id.clone_into(&mut store.data_mut().record_id);
        let result = f(&mut store, &bindings);
        forward_guest_output(store.data());

        let outcome = match result {
            Ok(Ok(outputs)) => {
                let size: usize = outputs.iter().map(|o| o.data.len()).sum();
                if size > self.sandbox.limits.output_bytes {
                    Err(Failure::new(
                        Cause::OutputLimit,
                        format!(
                            "the plugin returned {size} bytes of output, more than the limit of {}",
                            self.sandbox.limits.output_bytes
                        ),
                    ))
                } else {
                    Ok(outputs
                        .into_iter()
                        .map(|o| CallOutput {
                            destination: o.destination,
                            data: o.data,
                        })
                        .collect())
                }
            }
            Ok(Err(e)) => Err(Failure::new(Cause::PluginError, plugin_error_message(&e))),
            Err(trap) => {
                // A trapped instance is never called again: its state may be inconsistent.
                let failure = classify(&store, &trap, "running");
                let mut data = store.into_data();
                data.state.rollback();
                self.state = Some(data.state);
                return Err(failure);
            }
        };
        let state = &mut store.data_mut().state;
        match outcome {
            Ok(_) => state.commit(),
            Err(_) => state.rollback(),
        }
        match self.sandbox.reuse {
            InstanceReuse::Batch => self.instance = Some((store, bindings)),
            InstanceReuse::Record => self.state = Some(store.into_data().state),
        }
        outcome
    }

    /// Ends the batch: writes durable state changes to the store.
    pub fn finish(mut self) -> Result<()> {
        let mut state = match self.instance.take() {
            Some((store, _)) => store.into_data().state,
            None => self
                .state
                .take()
                .expect("stage state is held by the run or the store"),
        };
        state.persist()
    }
}

fn plugin_error_message(e: &PluginError) -> String {
    match e {
        PluginError::InvalidRecord(m) => format!("invalid record: {m}"),
        PluginError::InvalidConfig(m) => format!("invalid plugin config: {m}"),
        PluginError::Transient(m) => format!("transient: {m}"),
    }
}

fn forward_guest_output(state: &StoreState) {
    let (bytes, dropped) = state.guest_output.take();
    if bytes.is_empty() && dropped == 0 {
        return;
    }
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(
            stage = state.stage,
            record_id = state.record_id,
            guest = true,
            "{line}"
        );
    }
    if dropped > 0 {
        tracing::warn!(
            stage = state.stage,
            dropped,
            "guest output over {GUEST_OUTPUT_CAP} bytes per call was dropped"
        );
    }
}

/// Frames of recursion past which an out-of-bounds access counts as a stack overflow.
const DEEP_RECURSION_FRAMES: usize = 256;

/// Names the limit a trap came from.
///
/// Two kinds of stack overflow exist: the wasm stack (`PLUGIN_STACK_KB`, a clean
/// `StackOverflow` trap) and the stack that Rust and C guests keep in their own linear memory
/// for large frames. wasm-ld lays that one out first, so overflowing it reads below address 0:
/// an out-of-bounds trap, recognisable by the deep recursion in its backtrace.
fn classify(store: &Store<StoreState>, error: &wasmtime::Error, doing: &str) -> Failure {
    let trap = error.downcast_ref::<Trap>();
    let backtrace = error.downcast_ref::<wasmtime::WasmBacktrace>();
    let depth = backtrace.map_or(0, |b| b.frames().len());
    let cause = if store.data().limiter.exceeded {
        Cause::Memory
    } else {
        match trap {
            Some(Trap::OutOfFuel) => Cause::Fuel,
            Some(Trap::Interrupt) => Cause::Deadline,
            Some(Trap::StackOverflow) => Cause::Stack,
            Some(Trap::MemoryOutOfBounds) if depth >= DEEP_RECURSION_FRAMES => Cause::Stack,
            _ => Cause::Trap,
        }
    };
    let innermost = backtrace
        .and_then(|b| b.frames().first())
        .and_then(|f| f.func_name())
        .map(|name| format!(" in {name}"))
        .unwrap_or_default();
    let message = match cause {
        Cause::Memory => "the plugin exceeded its memory limit".to_string(),
        Cause::Fuel => "the plugin ran out of fuel (its per-call instruction budget)".to_string(),
        Cause::Deadline => "the plugin hit its wall-clock limit".to_string(),
        Cause::Stack if trap == Some(&Trap::StackOverflow) => {
            format!("the plugin overflowed its wasm stack{innermost}")
        }
        Cause::Stack => format!(
            "the plugin overflowed the stack in its linear memory after {depth} nested calls{innermost}"
        ),
        _ => match trap {
            Some(trap) => format!("the plugin trapped while {doing}{innermost}: {trap}"),
            None => format!("the plugin failed while {doing}: {error:#}"),
        },
    };
    Failure::new(cause, message)
}
