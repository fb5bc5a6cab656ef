//! Builds a guest crate directory into a component: `cargo build --release --target
//! wasm32-wasip2`, with cargo's progress on stderr, and finds the `.wasm` it produced.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

/// The target scripts are built for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("{0} has no Cargo.toml; give a .wasm component or a guest crate directory")]
    NotACrate(PathBuf),
    #[error(
        "cannot run cargo: {0}; install Rust (https://rustup.rs) or give a built .wasm component"
    )]
    Cargo(std::io::Error),
    #[error(
        "building {dir} failed (see cargo's messages above); if the target is missing, run `rustup target add {GUEST_TARGET}`"
    )]
    Failed { dir: PathBuf },
    #[error("building {0} produced no .wasm; is it a `cdylib` crate?")]
    NoArtifact(PathBuf),
}

/// Builds the crate in `dir` and returns the path of its component. `quiet` hides
/// cargo's progress (errors are still shown). `target_dir` overrides cargo's target
/// directory, so several guests can share compiled dependencies.
pub fn build_guest(
    dir: &Path,
    quiet: bool,
    target_dir: Option<&Path>,
) -> Result<PathBuf, BuildError> {
    let dir = &std::path::absolute(dir).map_err(BuildError::Cargo)?;
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::NotACrate(dir.to_owned()));
    }
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
