//! Makes sure the toolchain that builds a guest crate has the `wasm32-wasip2` standard
//! library before the build starts: a cheap look in its sysroot, then `rustup target add`
//! where rustup is present (said on stderr), or at once the exact fix where it is not.
//!
//! Both commands run in the crate's directory with the caller's environment, so they act
//! on the toolchain cargo will use there (`rust-toolchain.toml`, `RUSTUP_TOOLCHAIN`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{BuildError, GUEST_TARGET};

/// Sysroots already seen to have the target: one look per toolchain and process.
static READY: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Adds the guest target to the toolchain that builds `dir` if it lacks it.
pub(super) fn ensure_installed(dir: &Path) -> Result<(), BuildError> {
    let sysroot = sysroot(dir)?;
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if ready.contains(&sysroot) {
        return Ok(());
    }
    if !has_target(&sysroot) {
        add_target(dir, &sysroot)?;
    }
    ready.push(sysroot);
    Ok(())
}

/// The rustc cargo runs: `$RUSTC`, else `rustc` from the path (rustup's proxy when there).
fn rustc() -> std::ffi::OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// The sysroot of the toolchain that builds `dir`.
fn sysroot(dir: &Path) -> Result<PathBuf, BuildError> {
    let output = Command::new(rustc())
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(BuildError::Rustc)?;
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || printed.is_empty() {
        return Err(BuildError::Rustc(std::io::Error::other(format!(
            "`rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))));
    }
    Ok(PathBuf::from(printed))
}

/// Whether the sysroot holds the guest target's standard library.
fn has_target(sysroot: &Path) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(GUEST_TARGET)
        .join("lib")
        .is_dir()
}

/// `rustup target add` for the toolchain of `dir`, said on stderr first; without rustup,
/// the error that says how to get the target.
fn add_target(dir: &Path, sysroot: &Path) -> Result<(), BuildError> {
    let missing = || BuildError::TargetMissing {
        sysroot: sysroot.to_owned(),
    };
    let rustup_present = Command::new("rustup")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !rustup_present {
        return Err(missing());
    }
    eprintln!(
        "the {GUEST_TARGET} target is not installed in {}; running `rustup target add {GUEST_TARGET}` …",
        sysroot.display()
    );
    let status = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .current_dir(dir)
        .stdin(Stdio::null())
        // All of rustup's output on stderr: stdout may be a command's JSON.
        .stdout(std::io::stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| BuildError::TargetAdd(e.to_string()))?;
    if !status.success() {
        return Err(BuildError::TargetAdd(format!("it exited with {status}")));
    }
    if !has_target(sysroot) {
        return Err(BuildError::TargetAdd(format!(
            "it succeeded but {} still has no {GUEST_TARGET} library (does rustup manage that toolchain?)",
            sysroot.display()
        )));
    }
    Ok(())
}
