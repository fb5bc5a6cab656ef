//! Fault injection for crash tests: with the `fault-injection` cargo feature, the host
//! exits abruptly at the protocol step named by `WASMTX_FAULT` (e.g. `after-prepare-1`),
//! as if killed. Without the feature every point is a no-op and the variable is ignored.

/// Marks a protocol step. Names: `after-begin`, `after-script`, `after-prepare-<k>`,
/// `before-decision` (a last agent's, just before its commit with the decision row is sent),
/// `after-decision`, `after-commit-<k>` (k = the branch's position among the server branches
/// that are prepared: a last agent is not one of them).
/// `WASMTX_FAULT_PAUSE=<name>:<ms>` sleeps there instead, so a test can break something
/// (e.g. kill a connection) at exactly that step.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    if let Some(ms) = std::env::var("WASMTX_FAULT_PAUSE")
        .ok()
        .and_then(|v| v.strip_prefix(name)?.strip_prefix(':')?.parse::<u64>().ok())
    {
        eprintln!("wasmtx: pausing {ms} ms at {name}");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if std::env::var("WASMTX_FAULT").is_ok_and(|wanted| wanted == name) {
        eprintln!("wasmtx: fault injected at {name}");
        // No destructors, no flushing, no rollback: like SIGKILL to the databases.
        std::process::exit(86);
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
