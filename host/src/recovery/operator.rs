//! An operator's questions and actions on one gid, for any node whose decisions this host
//! can read (its own, or in a cluster any node's): what state it is in, retry it now, and
//! force-resolve it. Each looks at the branches one scan finds and acts on exactly those.
//!
//! Force-resolve keeps recovery's rules unless told the decision is heuristic:
//!
//! | recorded decision | asked | result |
//! |---|---|---|
//! | COMMIT | commit | phase 2 now (as retry) |
//! | COMMIT | rollback | refused ([`OperatorError::DecisionExists`]); with `allow_heuristic`: roll back what is still prepared, `heuristic-rollback` |
//! | none, deadline passed | rollback | roll back (what recovery would do) |
//! | none, deadline passed | commit | refused ([`OperatorError::WouldCommitAnAbort`], presumed abort); with `allow_heuristic`: commit what is prepared, `heuristic-commit` |
//! | none, deadline not passed | either | refused ([`OperatorError::Undecided`]): the coordinator may still decide |
//!
//! "Deadline passed" is the gid's deadline plus recovery's margin. A transaction none of
//! whose branches is prepared is refused ([`OperatorError::NothingPrepared`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use utoipa::ToSchema;

use super::{
    Action, BranchReport, Decision, Found, PRESUMED_ABORT_MARGIN, Recovery, RecoveryReport,
    ScanFailure, TxState,
};
use crate::decision_store::DecisionError;
use crate::gid::Gid;
use crate::participant::Resolution;

// The outcome an operator asks for (no doc comment: the OpenAPI document shows none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Requested {
    Commit,
    Rollback,
}

/// What one scan found of a gid: its prepared branches (with what recovery would do) and
/// whether a COMMIT is recorded.
#[derive(Debug, Clone)]
pub struct Examined {
    pub gid: Gid,
    /// One line per prepared branch, as a dry run reports it.
    pub branches: Vec<BranchReport>,
    /// Whether a decision source has COMMIT for it.
    pub committed: bool,
}

impl Examined {
    /// The transaction's state at `now`; `recorded`: whether the caller has a record of it.
    pub fn state(&self, now: SystemTime, recorded: bool) -> TxState {
        let expired = self.gid.expired(PRESUMED_ABORT_MARGIN, now);
        TxState::derive(!self.branches.is_empty(), self.committed, expired, recorded)
    }
}

/// The module's table: whether force-resolving `gid` as `asked` at `now` would be a
/// heuristic decision (against a recorded COMMIT, or committing past the presumed abort),
/// or why it is refused whatever the operator allows (undecided, deadline not passed).
fn force_rule(
    gid: &Gid,
    committed: bool,
    asked: Requested,
    now: SystemTime,
) -> Result<bool, OperatorError> {
    let expired = gid.expired(PRESUMED_ABORT_MARGIN, now);
    match (committed, asked, expired) {
        (true, Requested::Commit, _) | (false, Requested::Rollback, true) => Ok(false),
        (false, _, false) => Err(OperatorError::Undecided { gid: gid.clone() }),
        _ => Ok(true),
    }
}

/// What force-resolving an examined gid as one outcome would do now, by the rule
/// [`Recovery::force_resolve`] applies: the branches it would act on and whether it would be
/// a heuristic decision, or why it would be refused.
#[derive(Debug)]
pub struct ForcePreview {
    pub asked: Requested,
    /// `Ok(heuristic)`, or the refusal (nothing prepared, or undecided).
    pub rule: Result<bool, OperatorError>,
    /// The participants whose prepared branch it would commit or roll back.
    pub participants: Vec<String>,
}

impl Examined {
    /// What force-resolving it as `asked` would do at `now` (see [`ForcePreview`]).
    pub fn preview(&self, asked: Requested, now: SystemTime) -> ForcePreview {
        let rule = if self.branches.is_empty() {
            Err(OperatorError::NothingPrepared(self.gid.clone()))
        } else {
            force_rule(&self.gid, self.committed, asked, now)
        };
        ForcePreview {
            asked,
            rule,
            participants: self
                .branches
                .iter()
                .map(|b| b.participant.clone())
                .collect(),
        }
    }
}

/// What a force-resolve did.
#[derive(Debug, Clone)]
pub struct ForceResolved {
    /// `committed`, `aborted`, `heuristic-commit` or `heuristic-rollback`.
    pub state: TxState,
    pub heuristic: bool,
    /// What was done on each prepared branch, by participant.
    pub branches: BTreeMap<String, String>,
    /// Recovery's report, when recovery's own rules resolved it (not heuristic).
    pub report: Option<RecoveryReport>,
}

/// Why an operator's question or action on a gid got no answer, or was refused. Nothing
/// was changed, except where said.
#[derive(Debug, Error)]
pub enum OperatorError {
    /// The gid's decisions cannot be read from this host (another node's without a shared
    /// decision log, or a decision log that cannot be opened).
    #[error("{}", .0.message)]
    NoDecisions(ScanFailure),
    /// A participant could not be listed: its branches of the gid are unknown.
    #[error("cannot list {}'s prepared branches: {}", .failure.participant, .failure.message)]
    Scan {
        failure: ScanFailure,
        /// The dry run as far as it went.
        report: RecoveryReport,
    },
    /// The decision store could not say whether a COMMIT is recorded.
    #[error("{0}")]
    Store(DecisionError),
    #[error("no branch of {0} is prepared on any participant: there is nothing to resolve")]
    NothingPrepared(Gid),
    #[error(
        "{gid} has no decision and its deadline ({deadline}) has not passed by recovery's margin: its coordinator may still decide it; try again later",
        deadline = .gid.deadline_rfc3339()
    )]
    Undecided { gid: Gid },
    #[error(
        "a COMMIT decision is recorded: rolling back would leave the transaction partly committed. Give allow_heuristic: true to do it anyway, recorded as a heuristic decision"
    )]
    DecisionExists,
    #[error(
        "no COMMIT was recorded before the deadline, so the transaction is aborted (its other branches may be rolled back already). Give allow_heuristic: true to commit what is still prepared, recorded as a heuristic decision"
    )]
    WouldCommitAnAbort,
    /// Recovery's rules applied, but some branch could not be resolved: it stays prepared.
    #[error("some branch could not be resolved now; it stays prepared (retry later)")]
    BranchesFailed {
        branches: BTreeMap<String, String>,
        report: RecoveryReport,
    },
}

impl Recovery {
    /// The same recovery, looking at `gid` only.
    fn only_gid(&self, gid: &Gid) -> Recovery {
        let wanted = gid.clone();
        self.clone().only(Arc::new(move |g: &Gid| *g == wanted))
    }

    /// One scan of `gid`'s branches and what recovery would do with them (a dry run).
    async fn scan_gid(&self) -> Result<(Vec<Found>, RecoveryReport), OperatorError> {
        let before = self.before_scan(true).await;
        let (found, failures) = self.scan().await;
        let dry = self.resolve(found.clone(), failures, true, before).await;
        match dry.failures.first().cloned() {
            Some(failure) => Err(OperatorError::Scan {
                failure,
                report: dry,
            }),
            None => Ok((found, dry)),
        }
    }

    /// What `gid`'s branches and decision sources say now; nothing is changed.
    pub async fn examine(&self, gid: &Gid) -> Result<Examined, OperatorError> {
        let (_, dry) = self.only_gid(gid).scan_gid().await?;
        // With no branch prepared, every source is asked: the decision may be in the SQLite
        // coordinator file (a last resource) or a last agent's table as well as the store.
        let committed = match dry.branches.first() {
            Some(_) => dry.branches.iter().any(|b| b.decision == Decision::Commit),
            None => self
                .decided_commit(gid)
                .await
                .map_err(|failed| OperatorError::Store(failed.error))?,
        };
        Ok(Examined {
            gid: gid.clone(),
            branches: dry.branches,
            committed,
        })
    }

    /// Recovery of `gid`'s branches now.
    pub async fn retry(&self, gid: &Gid) -> Result<RecoveryReport, OperatorError> {
        let report = self.only_gid(gid).run(false).await;
        match report.failures.first().cloned() {
            Some(failure) => Err(OperatorError::Scan { failure, report }),
            None => Ok(report),
        }
    }

    /// Force-resolves `gid` as `asked` (see the module's table), acting on the branches one
    /// scan found prepared.
    pub async fn force_resolve(
        &self,
        gid: &Gid,
        asked: Requested,
        allow_heuristic: bool,
    ) -> Result<ForceResolved, OperatorError> {
        let recovery = self.only_gid(gid);
        let (found, dry) = recovery.scan_gid().await?;
        if found.is_empty() {
            return Err(OperatorError::NothingPrepared(gid.clone()));
        }
        let committed = dry.branches.iter().any(|b| b.decision == Decision::Commit);
        let heuristic = force_rule(gid, committed, asked, SystemTime::now())?;
        match (heuristic, committed) {
            (true, true) if !allow_heuristic => return Err(OperatorError::DecisionExists),
            (true, false) if !allow_heuristic => return Err(OperatorError::WouldCommitAnAbort),
            _ => {}
        }
        if heuristic {
            let branches = recovery.act_heuristically(gid, &found, asked).await;
            let state = match asked {
                Requested::Commit => TxState::HeuristicCommit,
                Requested::Rollback => TxState::HeuristicRollback,
            };
            return Ok(ForceResolved {
                state,
                heuristic,
                branches,
                report: None,
            });
        }
        let before = recovery.before_scan(false).await;
        let report = recovery.resolve(found, Vec::new(), false, before).await;
        let branches: BTreeMap<String, String> = report
            .branches
            .iter()
            .map(|b| (b.participant.clone(), b.action.name().to_owned()))
            .collect();
        if report
            .branches
            .iter()
            .any(|b| matches!(b.action, Action::Failed(_)))
        {
            return Err(OperatorError::BranchesFailed { branches, report });
        }
        Ok(ForceResolved {
            state: if committed {
                TxState::Committed
            } else {
                TxState::Aborted
            },
            heuristic,
            branches,
            report: Some(report),
        })
    }

    /// A heuristic decision: commits or rolls back each of `found`. A heuristic rollback
    /// that left nothing prepared records DONE, so the COMMIT is not acted on again.
    async fn act_heuristically(
        &self,
        gid: &Gid,
        found: &[Found],
        asked: Requested,
    ) -> BTreeMap<String, String> {
        let mut done = BTreeMap::new();
        for Found {
            participant,
            branch,
        } in found
        {
            let result = match asked {
                Requested::Commit => participant.commit_prepared(branch).await,
                Requested::Rollback => participant.rollback_prepared(branch).await,
            };
            let what = match (result, asked) {
                (Ok(Resolution::Done), Requested::Commit) => "committed".to_owned(),
                (Ok(Resolution::Done), Requested::Rollback) => "rolled-back".to_owned(),
                (Ok(Resolution::AlreadyResolved), _) => "already-resolved".to_owned(),
                (Err(err), _) => format!("failed: {err}"),
            };
            done.insert(participant.name().to_owned(), what);
        }
        if let Some(store) = &self.store
            && asked == Requested::Rollback
            && done.values().all(|v| !v.starts_with("failed"))
            && let Err(err) = store.record_done(gid).await
        {
            tracing::warn!(%gid, "cannot record DONE: {err}");
        }
        done
    }
}
