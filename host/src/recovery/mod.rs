//! Recovery: resolves branches that a crash left prepared.
//!
//! For every configured PostgreSQL/MySQL participant, list the prepared branches whose gid
//! carries this node's prefix, and for each:
//! - a COMMIT decision is recorded (decision log, the SQLite coordinator file for
//!   transactions whose SQLite group was the last resource, or a last agent's decision
//!   table) → commit it;
//! - no decision and the transaction's deadline (plus a margin) has passed → roll it back
//!   (presumed abort: no coordinator can still decide it, since COMMIT is only recorded
//!   before the deadline). First ABORT is recorded in every last agent's decision table
//!   unless a row is there: a COMMIT row still in flight makes that wait, and if it commits
//!   the branch is committed instead (the primary key arbitrates, not the clock);
//! - no decision, deadline not passed → leave it: another process may be mid-flight.
//!
//! This also finds orphans no log knows about (a host that crashed between PREPARE and its
//! decision), which is why it scans the databases rather than the log. Once every
//! participant was scanned, the last agents' rows of this node whose transactions are done
//! and expired are pruned. A decision source that cannot answer leaves the branch prepared
//! (reported `failed`): an unknown decision is never taken for an abort.
//!
//! An operator's questions and actions on one gid — what state it is in ([`TxState`]),
//! retry it now, force-resolve it — and the list of what is in doubt across participants
//! and nodes are in `operator.rs` and `in_doubt.rs`; they act on exactly the branches this
//! module's scan finds, whichever node's gid it is.

mod in_doubt;
mod operator;
mod state;

pub use in_doubt::{InDoubtEntry, InDoubtFilter, InDoubtList, in_doubt};
pub use operator::{Examined, ForcePreview, ForceResolved, OperatorError, Requested};
pub use state::TxState;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::decision_store::{
    DecisionError, DecisionSource, DecisionStore, DecisionTable, Snapshot, TableDecision,
};
use crate::gid::{BranchId, Gid, NodeId};
use crate::participant::{ParticipantError, Resolution, ServerParticipant};

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

impl Action {
    /// The action's word (`committed`, `would-roll-back`, `failed`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Committed => "committed",
            Action::RolledBack => "rolled-back",
            Action::AlreadyResolved => "already-resolved",
            Action::LeftInDoubt => "left-in-doubt",
            Action::WouldCommit => "would-commit",
            Action::WouldRollBack => "would-roll-back",
            Action::Failed(_) => "failed",
        }
    }
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// A prepared branch a scan found, and the participant that holds it.
#[derive(Clone)]
struct Found {
    participant: Arc<dyn ServerParticipant>,
    branch: BranchId,
}

/// Read before a scan (see [`Recovery::before_scan`]).
struct BeforeScan {
    at: SystemTime,
    pending: Option<Snapshot>,
}

/// What recovery scans, what it consults, and where it records what it finished.
#[derive(Clone)]
pub struct Recovery {
    gid_prefix: String,
    participants: Vec<Arc<dyn ServerParticipant>>,
    /// A COMMIT in any of them means commit.
    sources: Vec<Arc<dyn DecisionSource>>,
    /// Where DONE goes once every branch of a committed transaction is committed.
    store: Option<Arc<dyn DecisionStore>>,
    /// Which gids to look at (all when `None`): one gid retried now, or those not backing off.
    keep: Option<GidFilter>,
    /// The last agents' decision tables: sources too, arbiters before a rollback, and
    /// pruned at the end.
    tables: Vec<Arc<dyn DecisionTable>>,
}

/// Chooses the gids a recovery run looks at.
pub type GidFilter = Arc<dyn Fn(&Gid) -> bool + Send + Sync>;

impl Recovery {
    /// Recovery of `node`'s branches on `participants`. `store` (the decision store, if
    /// there is one) is consulted and receives DONEs; `other_sources` are consulted too
    /// (e.g. the SQLite coordinator file's last-resource decisions).
    pub fn new(
        node: &NodeId,
        participants: Vec<Arc<dyn ServerParticipant>>,
        store: Option<Arc<dyn DecisionStore>>,
        other_sources: Vec<Arc<dyn DecisionSource>>,
    ) -> Self {
        let mut sources: Vec<Arc<dyn DecisionSource>> = Vec::new();
        if let Some(store) = &store {
            sources.push(store.clone());
        }
        sources.extend(other_sources);
        Recovery {
            gid_prefix: node.gid_prefix(),
            participants,
            sources,
            store,
            keep: None,
            tables: Vec::new(),
        }
    }

    /// The same recovery, looking only at the branches of gids `keep` accepts; the others
    /// are neither reported nor touched.
    pub fn only(mut self, keep: GidFilter) -> Self {
        self.keep = Some(keep);
        self
    }

    /// Also consults, arbitrates in and prunes these last agents' decision tables.
    pub fn with_decision_tables(mut self, tables: Vec<Arc<dyn DecisionTable>>) -> Self {
        for table in &tables {
            self.sources.push(table.clone() as Arc<dyn DecisionSource>);
        }
        self.tables = tables;
        self
    }

    /// Scans every participant and resolves (or with `dry_run`, only reports) this node's
    /// prepared branches.
    pub async fn run(&self, dry_run: bool) -> RecoveryReport {
        let before = self.before_scan(dry_run).await;
        let (found, failures) = self.scan().await;
        self.resolve(found, failures, dry_run, before).await
    }

    /// What is read before a scan: the clock, and the COMMITs without DONE (see
    /// `finished_commits` in [`Recovery::resolve`]).
    async fn before_scan(&self, dry_run: bool) -> BeforeScan {
        let at = SystemTime::now();
        let pending = match (&self.store, dry_run, &self.keep) {
            (Some(store), false, None) => store.snapshot().await.ok(),
            _ => None,
        };
        BeforeScan { at, pending }
    }

    /// The prepared branches of the gids this recovery looks at, on every participant, and
    /// the participants that could not be listed.
    async fn scan(&self) -> (Vec<Found>, Vec<ScanFailure>) {
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for participant in &self.participants {
            match participant.prepared_branches(&self.gid_prefix).await {
                Ok(branches) => found.extend(
                    branches
                        .into_iter()
                        .filter(|branch| self.keep.as_ref().is_none_or(|keep| keep(&branch.gid)))
                        .map(|branch| Found {
                            participant: participant.clone(),
                            branch,
                        }),
                ),
                Err(err) => failures.push(ScanFailure {
                    participant: participant.name().into(),
                    message: err.to_string(),
                }),
            }
        }
        (found, failures)
    }

    /// Resolves (or with `dry_run`, only reports) the branches a scan `found`; `failures`
    /// are the participants it could not list.
    async fn resolve(
        &self,
        found: Vec<Found>,
        failures: Vec<ScanFailure>,
        dry_run: bool,
        before: BeforeScan,
    ) -> RecoveryReport {
        let mut report = RecoveryReport {
            branches: Vec::new(),
            failures,
        };
        let mut committed_gids = BTreeSet::new();
        // What the arbitration in the last agents' tables found, per gid.
        let mut arbitrated: BTreeMap<Gid, Result<bool, String>> = BTreeMap::new();
        let BeforeScan {
            at: scan_started,
            pending: pending_before,
        } = before;
        for Found {
            participant,
            branch,
        } in found
        {
            // The clock is read before the decision: a COMMIT is only recorded before the
            // deadline, so if it is absent now and the deadline had passed already, it can
            // never appear.
            let now = SystemTime::now();
            let expired = branch.gid.expired(PRESUMED_ABORT_MARGIN, now);
            let decision = match self.decided_commit(&branch.gid).await {
                Ok(true) => Decision::Commit,
                Ok(false) if expired && !dry_run && !self.tables.is_empty() => {
                    let verdict = match arbitrated.get(&branch.gid) {
                        Some(verdict) => verdict.clone(),
                        None => {
                            let verdict = self.arbitrate(&branch.gid).await;
                            arbitrated.insert(branch.gid.clone(), verdict.clone());
                            verdict
                        }
                    };
                    match verdict {
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
                    }
                }
                Ok(false) => Decision::None,
                Err(err) => {
                    report.branches.push(line(
                        &branch,
                        participant.name(),
                        Decision::None,
                        Action::Failed(err.to_string()),
                    ));
                    continue;
                }
            };
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
        // DONE only once every participant was scanned: a branch on a participant that could
        // not be scanned may still be prepared, and without its COMMIT record it would later
        // look undecided and be rolled back.
        if let Some(store) = self.store.as_ref().filter(|_| report.failures.is_empty()) {
            for gid in committed_gids {
                let failed = report
                    .branches
                    .iter()
                    .any(|b| b.gid == gid.as_str() && matches!(b.action, Action::Failed(_)));
                if !failed && let Err(err) = store.record_done(&gid).await {
                    tracing::warn!(%gid, "cannot record DONE: {err}");
                }
            }
        }
        // A COMMIT recorded before the scan whose transaction has no branch prepared on any
        // participant is finished (its branches were all prepared before the COMMIT, and a
        // COMMIT is never rolled back): a host that stopped after phase 2 but before its DONE
        // left it. Recording DONE keeps the pending list to what is really unfinished.
        if report.failures.is_empty()
            && let (Some(store), Some(snapshot)) = (&self.store, &pending_before)
        {
            let now = SystemTime::now();
            for gid in &snapshot.pending {
                let finished = gid.as_str().starts_with(&self.gid_prefix)
                    && gid.expired(PRESUMED_ABORT_MARGIN, now)
                    && !report.branches.iter().any(|b| b.gid == gid.as_str());
                if finished && let Err(err) = store.record_done(gid).await {
                    tracing::warn!(%gid, "cannot record DONE: {err}");
                }
            }
        }
        // Pruning judges every row by this run's report: a run that looked at some gids
        // only (`only`) cannot tell which of the others still have branches prepared.
        if !dry_run && report.failures.is_empty() && self.keep.is_none() {
            self.prune(&report, scan_started).await;
        }
        report
    }

    /// Records ABORT for `gid` in every last agent's table unless a row is there; `Ok(true)`
    /// if one says COMMIT (a COMMIT that was in flight won).
    async fn arbitrate(&self, gid: &Gid) -> Result<bool, String> {
        for table in &self.tables {
            match table.abort_unless_committed(gid).await {
                Ok(TableDecision::Commit) => return Ok(true),
                Ok(TableDecision::Abort) => {}
                Err(err) => {
                    return Err(format!(
                        "cannot record ABORT before rolling back: {err}; left prepared"
                    ));
                }
            }
        }
        Ok(false)
    }

    /// Drops the last agents' rows of this node whose transactions are expired and have no
    /// branch left unresolved.
    async fn prune(&self, report: &RecoveryReport, scan_started: SystemTime) {
        let keep: BTreeSet<Gid> = report
            .branches
            .iter()
            .filter(|b| {
                !matches!(
                    b.action,
                    Action::Committed | Action::RolledBack | Action::AlreadyResolved
                )
            })
            .filter_map(|b| Gid::parse(&b.gid).ok())
            .collect();
        for table in &self.tables {
            let pruned = table
                .prune(
                    &self.gid_prefix,
                    scan_started - PRESUMED_ABORT_MARGIN,
                    PRESUMED_ABORT_MARGIN,
                    &keep,
                )
                .await;
            if let Err(err) = pruned {
                tracing::warn!(
                    "cannot prune decision table of `{}`: {err}",
                    table.participant()
                );
            }
        }
    }

    /// Whether any source has COMMIT recorded for `gid`.
    pub(super) async fn decided_commit(&self, gid: &Gid) -> Result<bool, SourceFailed> {
        for source in &self.sources {
            let committed = source
                .is_committed(gid)
                .await
                .map_err(|error| SourceFailed {
                    source_name: source.describe(),
                    error,
                })?;
            if committed {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A decision source that could not answer; the branch is left alone.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {error}")]
pub(super) struct SourceFailed {
    source_name: String,
    #[source]
    pub(super) error: DecisionError,
}

fn resolved(result: Result<Resolution, ParticipantError>, done: Action) -> Action {
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
