//! From `PLUGIN_URI` to plugins ready to run, at init only (Cranelift never runs at invoke
//! time).
//!
//! For each stage: a pinned plugin whose compiled artifact is in the cache loads from there,
//! with no download and no compile. Otherwise the bytes are fetched under the size cap, their
//! SHA-256 checked against the pin before anything else looks at them, and then:
//! - a precompiled artifact (`postprocess compile` output, detected by content) is loaded as
//!   is, or refused with a clear error when another engine configuration made it. It cannot be
//!   recompiled: the original wasm is not at hand;
//! - a component is looked up in the cache by digest, and compiled (then cached) on a miss.
//!
//! Finally the component is checked against the plugin world. Every failure is an init error
//! naming the stage's URI and what to do.

use crate::config::{Config, PluginSpec};
use crate::plugin_cache::PluginCache;
use crate::plugin_source::{Fetcher, PluginSource, Sha256Digest};
use crate::sandbox::{LoadedPlugin, Sandbox};
use anyhow::{Context, Result, bail};
use std::time::Instant;
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

/// Loads every stage of the pipeline into `sandbox`, in order.
pub async fn load_plugins(config: &Config, sandbox: &Sandbox) -> Result<Vec<LoadedPlugin>> {
    let fetcher = Fetcher::new(config.plugin_max_bytes, config.aws.clone());
    let cache = PluginCache::new(&config.plugin_cache_dir, sandbox.engine());
    let mut stages = Vec::with_capacity(config.plugins.len());
    for (index, spec) in config.plugins.iter().enumerate() {
        let component = load_component(sandbox, &fetcher, &cache, spec)
            .await
            .with_context(|| format!("loading pipeline stage {index} ({:?})", spec.name))?;
        stages.push(sandbox.prepare(spec, &component)?);
    }
    Ok(stages)
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

async fn load_component(
    sandbox: &Sandbox,
    fetcher: &Fetcher,
    cache: &PluginCache,
    spec: &PluginSpec,
) -> Result<Component> {
    let stage = spec.name.as_str();
    let location = spec.location.as_str();
    let started = Instant::now();

    // A pin names the content up front, so a cached artifact needs no download at all.
    if let Some(pin) = &spec.pin
        && let Some(component) = from_cache(sandbox, cache, spec, pin)
    {
        tracing::info!(stage, location, digest = %pin, load_ms = ms_since(started),
            "plugin cache hit: no download, no compile");
        return Ok(component);
    }

    let bytes = fetcher.fetch(location, &spec.source).await?;
    let digest = Sha256Digest::of(&bytes);
    tracing::info!(stage, location, bytes = bytes.len(), digest = %digest,
        fetch_ms = ms_since(started), "plugin fetched");
    if let Some(pin) = &spec.pin
        && *pin != digest
    {
        bail!(
            "plugin {location}: sha256 mismatch: the URI pins {pin} but the fetched bytes \
             hash to {digest}; refusing to start (fix the #sha256= pin or the plugin)"
        );
    }

    match Engine::detect_precompiled(&bytes) {
        Some(Precompiled::Component) => {
            // A precompiled artifact is native code: over the network it must be pinned, so
            // nobody but the operator decides what runs.
            if matches!(spec.source, PluginSource::Http(_)) && spec.pin.is_none() {
                bail!(
                    "plugin {location} is a precompiled artifact (native code) fetched over \
                     HTTP(S) without a pin: add #sha256={digest} to the URI if that is the \
                     artifact you built, or serve the .wasm component instead"
                );
            }
            let component = sandbox.deserialize(location, &bytes)?;
            if spec.source.is_remote() {
                cache.put(&digest, &bytes);
            }
            tracing::info!(
                stage,
                location,
                load_ms = ms_since(started),
                "precompiled plugin loaded: no compile"
            );
            return Ok(component);
        }
        Some(Precompiled::Module) => bail!(
            "plugin {location} is a precompiled core module, not a component: precompile the \
             component (.wasm built for wasm32-wasip2) with `postprocess compile`"
        ),
        None => check_is_component(location, &bytes)?,
    }

    if let Some(component) = from_cache(sandbox, cache, spec, &digest) {
        tracing::info!(stage, location, digest = %digest, load_ms = ms_since(started),
            "plugin cache hit: no compile");
        return Ok(component);
    }
    tracing::info!(stage, location, digest = %digest, cache = %cache.path(&digest).display(),
        "plugin cache miss: compiling");
    let compiling = Instant::now();
    let component = sandbox.compile(spec, &bytes)?;
    let compile_ms = ms_since(compiling);
    match component.serialize() {
        Ok(artifact) => cache.put(&digest, &artifact),
        Err(e) => {
            tracing::warn!(stage, error = %e, "could not serialize the compiled plugin for the cache")
        }
    }
    tracing::info!(
        stage,
        location,
        compile_ms,
        load_ms = ms_since(started),
        "plugin compiled"
    );
    Ok(component)
}

/// The cached artifact for `digest`, if there is one that loads. One that does not (damaged,
/// say) is removed and reported, and the plugin is loaded from its source instead.
fn from_cache(
    sandbox: &Sandbox,
    cache: &PluginCache,
    spec: &PluginSpec,
    digest: &Sha256Digest,
) -> Option<Component> {
    let artifact = cache.get(digest)?;
    match sandbox.deserialize(&spec.location, &artifact) {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(stage = spec.name, path = %cache.path(digest).display(),
                error = format!("{e:#}"), "cached plugin unusable; removed, loading from the source");
            cache.remove(digest);
            None
        }
    }
}

/// Tells a core module or a non-wasm file from a component before Cranelift sees it, so the
/// error says what to do rather than what the parser choked on.
fn check_is_component(location: &str, bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(b"\0asm") || bytes.len() < 8 {
        bail!(
            "plugin {location} is not WebAssembly (no \\0asm header): check that the URI names \
             the plugin's .wasm (or a .cwasm from `postprocess compile`)"
        );
    }
    // The preamble's last two bytes are the layer: 0 for a core module, 1 for a component.
    if bytes[6..8] == [0, 0] {
        bail!(
            "plugin {location} is a core WebAssembly module, not a component: build the plugin \
             for wasm32-wasip2 with the postprocess SDK (or wrap the module with \
             `wasm-tools component new`)"
        );
    }
    Ok(())
}
