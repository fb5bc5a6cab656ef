//! Builds a script directory into a component: a Rust guest crate with `cargo build
//! --release --target wasm32-wasip2` (cargo's progress on stderr, the `.wasm` it produced
//! found in its messages) once its toolchain has the target (`target.rs`), a Python script
//! directory with componentize-py (`python.rs`).

mod python;
mod target;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

/// The target scripts are built for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

pub use python::{COMPONENTIZE_PY_ENV, componentize_py_version};

/// The languages a script directory can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// A guest crate: `Cargo.toml`.
    Rust,
    /// A Python script: `app.py`, built with componentize-py.
    Python,
}

impl GuestKind {
    /// The kind of script `dir` holds, if any.
    pub fn of(dir: &Path) -> Option<GuestKind> {
        if dir.join("Cargo.toml").is_file() {
            Some(GuestKind::Rust)
        } else if dir.join(python::APP_FILE).is_file() {
            Some(GuestKind::Python)
        } else {
            None
        }
    }

    /// How it is built, for progress messages: `for wasm32-wasip2`, `with componentize-py`.
    pub fn describe(self) -> &'static str {
        match self {
            GuestKind::Rust => "for wasm32-wasip2",
            GuestKind::Python => "with componentize-py",
        }
    }
}

#[derive(Debug, Error)]
pub enum BuildError {
    #[error(
        "{0} has neither a Cargo.toml (a Rust guest crate) nor an app.py (a Python script); give a .wasm component or a script directory"
    )]
    NotACrate(PathBuf),
    #[error(
        "cannot run cargo: {0}; install Rust (https://rustup.rs) or give a built .wasm component"
    )]
    Cargo(std::io::Error),
    #[error("building {dir} failed (see cargo's messages above)")]
    Failed { dir: PathBuf },
    #[error(
        "cannot run rustc to find the toolchain that builds guest crates: {0}; install Rust (https://rustup.rs) or give a built .wasm component"
    )]
    Rustc(std::io::Error),
    #[error(
        "the toolchain in {} has no {GUEST_TARGET} target and rustup is not installed to add it: install Rust with rustup (https://rustup.rs), then run `rustup target add {GUEST_TARGET}`; or add the {GUEST_TARGET} standard library to that toolchain as its distribution provides it; or give a built .wasm component",
        sysroot.display()
    )]
    TargetMissing { sysroot: PathBuf },
    #[error("`rustup target add {GUEST_TARGET}` did not install the target: {0}")]
    TargetAdd(String),
    #[error("building {0} produced no .wasm; is it a `cdylib` crate?")]
    NoArtifact(PathBuf),
    #[error(
        "cannot run componentize-py: {0}; install it with `pip install componentize-py=={pinned}` or set {COMPONENTIZE_PY_ENV} to its path",
        pinned = python::PINNED_VERSION
    )]
    Componentize(std::io::Error),
    #[error("building {dir} with componentize-py failed: {message}")]
    PythonFailed { dir: PathBuf, message: String },
    #[error("cannot prepare the Python build of {dir}: {source}")]
    PythonFiles {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Builds the script in `dir` (a Rust guest crate or a Python script directory) and
/// returns the path of its component. `quiet` hides the build's progress (errors are
/// still shown). `target_dir` overrides where the build goes (cargo's target directory,
/// or the folder of Python components), so several guests can share it.
pub fn build_guest(
    dir: &Path,
    quiet: bool,
    target_dir: Option<&Path>,
) -> Result<PathBuf, BuildError> {
    let dir = &std::path::absolute(dir).map_err(BuildError::Cargo)?;
    match GuestKind::of(dir) {
        Some(GuestKind::Rust) => build_crate(dir, quiet, target_dir),
        Some(GuestKind::Python) => python::build(dir, quiet, target_dir),
        None => Err(BuildError::NotACrate(dir.to_owned())),
    }
}

/// `cargo build` of the guest crate in `dir`.
fn build_crate(dir: &Path, quiet: bool, target_dir: Option<&Path>) -> Result<PathBuf, BuildError> {
    target::ensure_installed(dir)?;
    let manifest = dir.join("Cargo.toml");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args([
            "build",
            "--release",
            "--target",
            GUEST_TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(dir)
        // A host build's settings must not leak into the guest build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if quiet {
        command.arg("--quiet");
    }
    if let Some(target_dir) = target_dir {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    let output = command.output().map_err(BuildError::Cargo)?;
    if !output.status.success() {
        return Err(BuildError::Failed {
            dir: dir.to_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter_map(|msg| msg["filenames"].as_array().cloned())
        .flatten()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| BuildError::NoArtifact(dir.to_owned()))
}
