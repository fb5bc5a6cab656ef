//! Recovery without anyone running `wasmtx recover`.
//!
//! At start, recovery runs until nothing this node left prepared is unresolved — branches
//! of a crashed predecessor become resolvable once their deadline (plus recovery's margin)
//! has passed — and only then does `/readyz` turn true. After that it runs every
//! `recovery_interval_ms`; a gid whose branches fail to resolve (a database down) backs off,
//! doubling from one second up to a minute, so one stuck gid does not cost every run.
//! History rows older than the retention are pruned on the same beat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::state::AppState;
use crate::gid::Gid;
use crate::recovery::{Action, RecoveryReport, TxState};

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often start-up recovery looks again while something is unresolved.
const STARTUP_RETRY: Duration = Duration::from_millis(500);

/// When a failing gid may be tried again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    next: Instant,
}

pub async fn run(state: Arc<AppState>) {
    let backoff: Arc<Mutex<HashMap<Gid, Backoff>>> = Arc::default();
    settle_unfinished(&state).await;
    startup(&state).await;
    let mut tick = tokio::time::interval(state.settings.recovery_interval());
    tick.tick().await;
    loop {
        tick.tick().await;
        let report = pass(&state, &backoff).await;
        state.metrics.recovery("periodic", &report);
        pending_commits(&state).await;
        match state
            .history
            .prune(state.settings.history_retention())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!("pruned {n} finished transactions past the retention"),
            Err(err) => tracing::warn!("cannot prune the history: {err}"),
        }
    }
}

/// Before the first recovery run: a keyed request whose row never finished (the server
/// stopped while it ran) kept its COMMIT decision, if it had one (`keep_decision`), and
/// recovery will let that decision go once its branches are done. So the row records it
/// first (`committing`, or `committed` when nothing is left prepared). A row whose outcome is
/// final — committed, or aborted: nothing prepared, no COMMIT in any source, its deadline
/// past — is ended, so that it is not examined again at every start and retention prunes it.
/// Anything else (in doubt, or not examinable now) is left for later and for `status_of`.
async fn settle_unfinished(state: &AppState) {
    let rows = match state.history.unfinished().await {
        Ok(rows) => rows,
        Err(err) => {
            tracing::warn!("cannot read the history's unfinished rows: {err}");
            return;
        }
    };
    for row in rows {
        let Ok(gid) = Gid::parse(&row.gid) else {
            continue;
        };
        let mut examined = match state.host.examine(&gid).await {
            Ok(examined) => examined,
            Err(err) => {
                tracing::warn!(%gid, "cannot tell what became of an unfinished request: {err}");
                continue;
            }
        };
        // A row that says COMMIT was decided stays so after recovery let go of the decision.
        if row.status == TxState::Committing {
            examined.committed = true;
        }
        let settled = examined.state(std::time::SystemTime::now(), true);
        if !(settled.is_final() || settled == TxState::Committing) || settled == row.status {
            continue;
        }
        match state.history.settle(&row.gid, settled).await {
            Ok(()) => {
                tracing::info!(%gid, status = %settled, "an unfinished keyed request settled")
            }
            Err(err) => tracing::warn!(%gid, "cannot record what became of it: {err}"),
        }
    }
}

/// Start-up: until everything this node left prepared is resolved, then ready.
async fn startup(state: &AppState) {
    recover_until_resolved(state, "startup").await;
}

/// Runs this node's recovery until nothing it left prepared is unresolved, then marks the
/// server ready (at start, and after a lost lease was claimed again).
pub(super) async fn recover_until_resolved(state: &AppState, trigger: &'static str) {
    let started = Instant::now();
    loop {
        let report = {
            let _serial = state.recovery_lock.lock().await;
            state.host.recover(false).await
        };
        state.metrics.recovery(trigger, &report);
        if report.all_resolved() {
            let resolved = report.branches.len();
            tracing::info!(
                resolved,
                "{trigger} recovery finished in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            pending_commits(state).await;
            state.set_ready();
            return;
        }
        let reason = unresolved_reason(&report);
        tracing::info!("{trigger} recovery: {reason}; looking again");
        state.set_not_ready_reason(format!("{trigger} recovery: {reason}"));
        tokio::time::sleep(STARTUP_RETRY).await;
    }
}

fn unresolved_reason(report: &RecoveryReport) -> String {
    if let Some(failure) = report.failures.first() {
        return format!(
            "cannot list {}'s prepared branches: {}",
            failure.participant, failure.message
        );
    }
    let waiting = report
        .branches
        .iter()
        .filter(|b| b.action == Action::LeftInDoubt)
        .count();
    let failed = report
        .branches
        .iter()
        .filter(|b| matches!(b.action, Action::Failed(_)))
        .count();
    format!("{waiting} branches wait for their deadline, {failed} could not be resolved yet")
}

/// One periodic run, skipping gids that are backing off.
async fn pass(state: &AppState, backoff: &Arc<Mutex<HashMap<Gid, Backoff>>>) -> RecoveryReport {
    let recovery = match state.host.recovery().await {
        Ok(recovery) => recovery,
        Err(failure) => {
            return RecoveryReport {
                branches: Vec::new(),
                failures: vec![failure],
            };
        }
    };
    let now = Instant::now();
    let waiting = backoff.clone();
    let recovery = recovery.only(Arc::new(move |gid: &Gid| {
        waiting
            .lock()
            .unwrap()
            .get(gid)
            .is_none_or(|b| b.next <= now)
    }));
    let report = {
        let _serial = state.recovery_lock.lock().await;
        recovery.run(false).await
    };
    let mut backoff = backoff.lock().unwrap();
    for branch in &report.branches {
        let Ok(gid) = Gid::parse(&branch.gid) else {
            continue;
        };
        if matches!(branch.action, Action::Failed(_)) {
            let entry = backoff.entry(gid).or_insert(Backoff {
                failures: 0,
                next: now,
            });
            entry.failures += 1;
            let delay = BACKOFF_FIRST
                .saturating_mul(1 << (entry.failures - 1).min(6))
                .min(BACKOFF_MAX);
            entry.next = Instant::now() + delay;
            tracing::warn!(gid = %branch.gid, participant = %branch.participant, failures = entry.failures, "recovery could not resolve a branch; next try in {} s", delay.as_secs());
        } else if branch.action != Action::LeftInDoubt {
            backoff.remove(&gid);
        }
    }
    report
}

async fn pending_commits(state: &AppState) {
    if let Some((own, others)) = state.host.pending_commits().await {
        state.metrics.pending_commits(own, others);
    }
}
