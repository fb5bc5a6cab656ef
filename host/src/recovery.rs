//! Recovery: resolves branches that a crash left prepared.
//!
//! For every configured PostgreSQL/MySQL participant, list the prepared branches whose gid
//! carries this node's prefix, and for each:
//! - a COMMIT decision is recorded (decision log, or the SQLite coordinator file for
//!   transactions whose SQLite group was the last resource) → commit it;
//! - no decision and the transaction's deadline (plus a margin) has passed → roll it back
//!   (presumed abort: no coordinator can still decide it, since COMMIT is only recorded
//!   before the deadline);
//! - no decision, deadline not passed → leave it: another process may be mid-flight.
//!
//! This also finds orphans no log knows about (a host that crashed between PREPARE and its
//! decision), which is why it scans the databases rather than the log.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::coordinator::Coordinator;
use crate::decision_log::{DecisionLog, DecisionLogOptions};
use crate::decision_store::{DecisionSource, DecisionStore};
use crate::gid::{BranchId, Gid};
use crate::participant::Resolution;
use crate::participant::sqlite::decision_recorded;

/// Extra time past a transaction's deadline (carried in its gid) before recovery presumes
/// it aborted, covering clock skew between hosts and a decision write that began just
/// before the deadline.
pub const PRESUMED_ABORT_MARGIN: Duration = Duration::from_secs(5);

/// What recovery found for one branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Commit,
    /// No decision recorded.
    None,
}

/// What recovery did (or, in a dry run, would do) with one branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "detail")]
pub enum Action {
    Committed,
    RolledBack,
    /// Another process resolved it meanwhile.
    AlreadyResolved,
    /// Not touched: undecided and its deadline has not passed.
    LeftInDoubt,
    WouldCommit,
    WouldRollBack,
    Failed(String),
}

/// One line of recovery's report.
#[derive(Debug, Clone, Serialize)]
pub struct BranchReport {
    pub gid: String,
    pub participant: String,
    pub decision: Decision,
    #[serde(flatten)]
    pub action: Action,
}

/// A participant that could not be scanned.
#[derive(Debug, Clone, Serialize)]
pub struct ScanFailure {
    pub participant: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    pub branches: Vec<BranchReport>,
    pub failures: Vec<ScanFailure>,
}

impl RecoveryReport {
    /// Whether every branch found was resolved (or, in a dry run, nothing failed).
    pub fn all_resolved(&self) -> bool {
        self.failures.is_empty()
            && self
                .branches
                .iter()
                .all(|b| !matches!(b.action, Action::Failed(_) | Action::LeftInDoubt))
    }
}

/// Scans every server participant of `coordinator` and resolves (or with `dry_run`, only
/// reports) this node's prepared branches.
pub async fn recover(coordinator: &Coordinator, dry_run: bool) -> RecoveryReport {
    let config = coordinator.config();
    let prefix = config.node.gid_prefix();
    let log_path = config.decision_log_path();
    let log = if log_path.exists() {
        match DecisionLog::open_async(&log_path, DecisionLogOptions::default()).await {
            Ok(log) => Some(log),
            Err(err) => {
                return RecoveryReport {
                    branches: Vec::new(),
                    failures: vec![ScanFailure {
                        participant: "decision log".into(),
                        message: err.to_string(),
                    }],
                };
            }
        }
    } else {
        None
    };
    let sqlite_main = config.sqlite_coordinator_path();

    let mut report = RecoveryReport::default();
    let mut committed_gids = BTreeSet::new();
    for participant in coordinator.xa_participants() {
        let branches = match participant.prepared_branches(&prefix).await {
            Ok(branches) => branches,
            Err(err) => {
                report.failures.push(ScanFailure {
                    participant: participant.name().into(),
                    message: err.to_string(),
                });
                continue;
            }
        };
        for branch in branches {
            // The clock is read before the decision: a COMMIT is only recorded before the
            // deadline, so if it is absent now and the deadline had passed already, it can
            // never appear.
            let now = SystemTime::now();
            let decision = match decided_commit(log.as_ref(), &sqlite_main, &branch.gid).await {
                Ok(true) => Decision::Commit,
                Ok(false) => Decision::None,
                Err(message) => {
                    report.branches.push(line(
                        &branch,
                        participant.name(),
                        Decision::None,
                        Action::Failed(message),
                    ));
                    continue;
                }
            };
            let expired = branch.gid.expired(PRESUMED_ABORT_MARGIN, now);
            let action = match (decision, expired, dry_run) {
                (Decision::Commit, _, true) => Action::WouldCommit,
                (Decision::None, true, true) => Action::WouldRollBack,
                (Decision::None, false, _) => Action::LeftInDoubt,
                (Decision::Commit, _, false) => {
                    committed_gids.insert(branch.gid.clone());
                    resolved(
                        participant.commit_prepared(&branch).await,
                        Action::Committed,
                    )
                }
                (Decision::None, true, false) => resolved(
                    participant.rollback_prepared(&branch).await,
                    Action::RolledBack,
                ),
            };
            report
                .branches
                .push(line(&branch, participant.name(), decision, action));
        }
    }
    // DONE only once every participant was scanned: a branch on a participant that could
    // not be scanned may still be prepared, and without its COMMIT record it would later
    // look undecided and be rolled back.
    if let Some(log) = log.as_ref().filter(|_| report.failures.is_empty()) {
        for gid in committed_gids {
            let failed = report
                .branches
                .iter()
                .any(|b| b.gid == gid.as_str() && matches!(b.action, Action::Failed(_)));
            if !failed && let Err(err) = log.record_done(&gid).await {
                tracing::warn!(%gid, "cannot record DONE: {err}");
            }
        }
    }
    report
}

/// Whether COMMIT is recorded for `gid` in the decision log or the SQLite coordinator file.
async fn decided_commit(
    log: Option<&DecisionLog>,
    sqlite_main: &std::path::Path,
    gid: &Gid,
) -> Result<bool, String> {
    if let Some(log) = log
        && log.is_committed(gid).await.map_err(|e| e.to_string())?
    {
        return Ok(true);
    }
    decision_recorded(sqlite_main, gid).await
}

fn resolved(
    result: Result<Resolution, crate::participant::ParticipantError>,
    done: Action,
) -> Action {
    match result {
        Ok(Resolution::Done) => done,
        Ok(Resolution::AlreadyResolved) => Action::AlreadyResolved,
        Err(err) => Action::Failed(err.to_string()),
    }
}

fn line(branch: &BranchId, participant: &str, decision: Decision, action: Action) -> BranchReport {
    BranchReport {
        gid: branch.gid.to_string(),
        participant: participant.to_owned(),
        decision,
        action,
    }
}
