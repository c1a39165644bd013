//! Builds the plugins under `plugins/` and `tests/plugins/` from source into WebAssembly
//! components, and writes `$OUT_DIR/plugins.rs` with one path constant per plugin, so the tests
//! always run the plugins as they are in the tree and no `.wasm` file is ever committed.
//!
//! This follows wasmtime's `crates/test-programs/artifacts/build.rs`: a nested
//! `cargo build --target wasm32-wasip2` in a target directory of its own, with the environment
//! of the outer build scrubbed so that it describes the wasm build and not this one.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The target the plugins are built for: Rust's WASI 0.2 target emits components directly.
const WASM_TARGET: &str = "wasm32-wasip2";

/// The plugins to build: package, constant name in `plugins.rs`, and its doc line.
const PLUGINS: &[(&str, &str, &str)] = &[
    (
        "string-transform",
        "STRING_TRANSFORM",
        "`plugins/string-transform`: drops, renames, trims, re-cases and masks JSON fields.",
    ),
    (
        "aggregate",
        "AGGREGATE",
        "`plugins/aggregate`: per-group count, sum, min and max, emitted on flush.",
    ),
    (
        "router",
        "ROUTER",
        "`plugins/router`: sends each record to the destination one of its fields selects.",
    ),
    (
        "identity",
        "IDENTITY",
        "`plugins/identity`: returns every record unchanged (the benchmark baseline).",
    ),
    (
        "hostile-plugin",
        "HOSTILE",
        "`tests/plugins/hostile`: misbehaves on `POISON:<kind>` markers in the record data.",
    ),
];

/// Variables the outer cargo sets (or the user set for it) that would make the nested build
/// build something else: flags and wrappers meant for native code (coverage, sanitizers,
/// `clippy-driver`), the outer target and target directory, and facts about this package.
const LEAKING_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "OUT_DIR",
    "TARGET",
];

/// Prefixes of variables that describe the outer target and package. Cargo sets only the ones
/// that apply, so a `CARGO_CFG_UNIX` from the native build would survive into the build scripts
/// of the wasm build (serde's, for example) if it were not removed.
const LEAKING_PREFIXES: &[&str] = &["CARGO_CFG_", "CARGO_FEATURE_", "CARGO_PKG_", "DEP_"];

fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // `cargo::error` shows the message as an error of this package and fails the build.
            for line in failure.message.lines() {
                println!("cargo::error={line}");
            }
            // Exiting with an error also makes cargo print this script's output, which is only
            // worth reading when it holds the nested cargo's compiler errors.
            if failure.show_output {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// Why the build script failed.
struct Failure {
    message: String,
    show_output: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            show_output: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

fn build() -> Result<(), Failure> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("tests/ has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    // Directories count as changed when any file under them does.
    for path in [
        "sdk",
        "wit",
        "plugins",
        "tests/plugins",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo::rerun-if-changed={}", workspace.join(path).display());
    }

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    check_target_installed(Path::new(&rustc))?;

    let target_dir = outer_target_dir(&out_dir).join("wasm-plugins");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, ..) in PLUGINS {
        cmd.args(["-p", package]);
    }
    for var in LEAKING_VARS {
        cmd.env_remove(var);
    }
    for (var, _) in env::vars_os() {
        let name = var.to_string_lossy();
        if LEAKING_PREFIXES.iter().any(|p| name.starts_with(p)) {
            cmd.env_remove(&var);
        }
    }
    // Cargo reads directives from this script's stdout, so the nested cargo must not write
    // there. The jobserver variables (CARGO_MAKEFLAGS) are kept: they make the nested build share
    // the outer build's job slots instead of starting a second full set of compilers.
    cmd.stdout(std::io::stderr());
    eprintln!("running: {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo to build the plugins: {e}"))?;
    if !status.success() {
        return Err(Failure {
            message: format!(
                "building the plugins for {WASM_TARGET} failed ({status}); \
                 the nested cargo's errors are in the stderr below"
            ),
            show_output: true,
        });
    }

    let artifacts = target_dir.join(WASM_TARGET).join("release");
    let mut code = String::from("// Generated by tests/build.rs; do not edit.\n");
    for (package, constant, doc) in PLUGINS {
        let wasm = artifacts.join(format!("{}.wasm", package.replace('-', "_")));
        if !wasm.is_file() {
            return Err(format!("cargo did not produce {}", wasm.display()).into());
        }
        let wasm = wasm
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", wasm.display()))?;
        writeln!(code, "/// {doc}\npub const {constant}: &str = {wasm:?};").unwrap();
    }
    std::fs::write(out_dir.join("plugins.rs"), code)
        .map_err(|e| format!("cannot write plugins.rs: {e}").into())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|e| format!("{name}: {e}"))
}

/// Fails with the fix when the wasm standard library is missing, instead of letting the nested
/// build fail with "can't find crate for `core`".
fn check_target_installed(rustc: &Path) -> Result<(), String> {
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.display()))?;
    let libdir = String::from_utf8_lossy(&output.stdout);
    let installed = output.status.success()
        && std::fs::read_dir(libdir.trim()).is_ok_and(|mut entries| entries.next().is_some());
    if installed {
        Ok(())
    } else {
        Err(format!(
            "the {WASM_TARGET} target is not installed, and the tests need it to build the \
             plugins.\nrun: rustup target add {WASM_TARGET}"
        ))
    }
}

/// The target directory of the outer build, derived from `OUT_DIR`
/// (`<target>[/<triple>]/<profile>/build/<package>-<hash>/out`) because that is always absolute,
/// unlike `CARGO_TARGET_DIR`, which may be relative to wherever cargo was started. Sharing one
/// directory across profiles and `cargo build`/`test`/`clippy` builds the plugins once.
fn outer_target_dir(out_dir: &Path) -> PathBuf {
    let Some(profile_dir) = out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(Path::parent)
    else {
        return out_dir.to_path_buf();
    };
    let dir = profile_dir.parent().unwrap_or(profile_dir);
    // With an explicit `--target`, artifacts live one level down, in `<target>/<triple>`.
    match (dir.file_name(), env::var_os("TARGET")) {
        (Some(name), Some(triple)) if name == triple => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}
