//! Fault injection for crash tests: with the `fault-injection` cargo feature, the host
//! exits abruptly at the protocol step named by `WASMTX_FAULT` (e.g. `after-prepare-1`),
//! as if killed. Without the feature every point is a no-op and the variable is ignored.

/// Marks a protocol step. Names: `after-begin`, `after-script`, `after-prepare-<k>`,
/// `after-decision`, `after-commit-<k>` (k = the branch's position among XA branches).
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    if std::env::var("WASMTX_FAULT").is_ok_and(|wanted| wanted == name) {
        eprintln!("wasmtx: fault injected at {name}");
        // No destructors, no flushing, no rollback: like SIGKILL to the databases.
        std::process::exit(86);
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
