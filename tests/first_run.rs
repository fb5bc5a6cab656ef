//! A first run on a machine whose Rust toolchain lacks the `wasm32-wasip2` target (stable
//! installed before the clone, as rustup leaves it): `wasmtx demo` adds the target itself,
//! says what it runs, builds the examples from scratch and passes.
//!
//! Removing the target changes the machine's toolchain, which every test that builds a guest
//! needs: this is its own test binary, its tests run one at a time, and the target is added
//! back however the test ends.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::{RUN_LIMIT, output_within, repo};

/// The tests of this binary change the machine's toolchain: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const TARGET: &str = "wasm32-wasip2";

#[test]
fn the_demo_adds_a_missing_wasm_target_and_passes() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_removed) = TargetRemoved::remove() else {
        return;
    };
    // A fresh target directory: the examples are compiled against the target just added.
    let guests = tempfile::tempdir().expect("temp dir");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_wasmtx"));
    demo.arg("demo")
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", guests.path())
        .env_remove("RUST_LOG");
    // Downloading the target and building two guests from scratch: more than one run's time.
    let output = output_within(demo, RUN_LIMIT * 5);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "wasmtx demo failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("running `rustup target add {TARGET}`")),
        "the demo did not say that it adds the target:\n{stderr}"
    );
    assert!(
        stdout.contains("every step ended as expected and no money was created or lost."),
        "{stdout}"
    );
    assert!(
        target_installed(),
        "the demo passed but the target is not installed"
    );
}

/// The target removed from the toolchain that builds this repository's guests; dropping it
/// adds the target back.
struct TargetRemoved;

impl TargetRemoved {
    /// `None` (the test skipped) where rustup is not there to remove the target with; under
    /// `CI=true` that fails the test instead.
    fn remove() -> Option<Self> {
        if rustup(&["--version"]).is_err() {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "rustup is needed to remove and restore the {TARGET} target under CI"
            );
            eprintln!("skipping: no rustup to remove the {TARGET} target with");
            return None;
        }
        // Made first, so that even a removal that failed halfway is undone.
        let removed = TargetRemoved;
        rustup(&["target", "remove", TARGET]).expect("rustup target remove");
        assert!(
            !target_installed(),
            "`rustup target remove {TARGET}` left the target in place"
        );
        Some(removed)
    }
}

impl Drop for TargetRemoved {
    fn drop(&mut self) {
        if let Err(e) = rustup(&["target", "add", TARGET]) {
            eprintln!(
                "could not restore the {TARGET} target ({e}): run `rustup target add {TARGET}`"
            );
        }
    }
}

/// Runs rustup in the repository (so its `rust-toolchain.toml` applies), output on stderr.
fn rustup(args: &[&str]) -> Result<(), String> {
    let status = Command::new("rustup")
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("rustup {} exited with {status}", args.join(" ")))
}

/// Whether the toolchain that builds the repository's guests has the target's library.
fn target_installed() -> bool {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(repo())
        .output()
        .expect("running rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    sysroot
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}
