//! The decision by a last agent: once every other branch is prepared, the last agent's
//! branch (never prepared) inserts the COMMIT row into its decision table and commits in one
//! phase, in one message; that commit is the decision (the table's rules are in
//! `participant/decision_table.rs`).
//!
//! - Before the deadline only: the host checks its clock before sending, and the database
//!   checks its own inside the INSERT.
//! - A refusal (the deadline check, a failed statement, a missing privilege) rolls the last
//!   agent back, and the coordinator rolls back the rest: nothing was committed.
//! - A lost answer (the connection lost or killed, no reply in time) is in doubt, never a
//!   reason to roll back the others: the host asks the table through its arbitration
//!   ([`DecisionTable::abort_unless_committed`]), retried while the database does not
//!   answer, and goes on to phase 2 (COMMIT) or rolls back (ABORT). If the table cannot be
//!   read within the phase-2 window, every other branch stays prepared and the transaction is
//!   reported in doubt for `wasmtx recover`, which asks the table the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::report_builder::ReportBuilder;
use super::{Coordinator, Decided, bounded};
use crate::decision_store::{DecisionError, DecisionTable, TableDecision};
use crate::gid::Gid;
use crate::participant::{ErrorClass, ParticipantError};
use crate::report::{BranchOutcome, ErrorKind, TxError};
use crate::transaction::{OpenBranch, OpenTransaction};

/// The last agent's branch, taken out of the transaction's branches, and its table.
pub(super) struct LastAgent {
    pub(super) open: OpenBranch,
    pub(super) table: Arc<dyn DecisionTable>,
}

impl LastAgent {
    /// Takes the last agent's branch out of `tx`, if it has one and no SQLite group (which
    /// would commit last itself).
    pub(super) fn take_from(tx: &mut OpenTransaction) -> Option<Self> {
        if tx.sqlite.is_some() {
            return None;
        }
        let k = tx
            .branches
            .iter()
            .position(|open| open.participant.decision_table().is_some())?;
        let open = tx.branches.remove(k);
        let table = open.participant.decision_table()?;
        Some(LastAgent { open, table })
    }
}

impl Coordinator {
    /// The decision by `agent` for transaction `gid` with `deadline`, once every other
    /// branch is prepared.
    pub(super) async fn decide_by(
        &self,
        agent: LastAgent,
        gid: &Gid,
        deadline: Instant,
        report: &mut ReportBuilder,
    ) -> Decided {
        let LastAgent { mut open, table } = agent;
        let member = open.member;
        let name = open.participant.name().to_owned();
        if Instant::now() >= deadline {
            let rollback = open.branch.rollback();
            if let Err(err) = bounded(self.settings.step_timeout, &name, "rollback", rollback).await
            {
                report.note(member, format!("{err}; the database rolls it back"));
            }
            return Decided::Abort(self.deadline_error());
        }
        crate::fault::point("before-decision");
        let limit = deadline.saturating_duration_since(Instant::now()) + self.settings.step_timeout;
        let lost = match tokio::time::timeout(limit, open.branch.commit_with_decision()).await {
            Ok(Ok(())) => {
                report.set(member, BranchOutcome::Committed);
                return Decided::Commit;
            }
            Ok(Err(err)) if err.class != ErrorClass::Connection => {
                // Refused: the branch rolled back, nothing committed.
                report.note(member, err.to_string());
                return Decided::Abort(TxError::participant(&err, "; nothing was committed"));
            }
            Ok(Err(err)) => err,
            Err(_) => ParticipantError::new(
                &name,
                "commit",
                format!(
                    "the database did not answer the COMMIT within {:.1} s; whether it committed is unknown",
                    limit.as_secs_f64()
                ),
            )
            .class(ErrorClass::Connection),
        };
        // Its connection (if the branch still holds one) is closed, never pooled.
        drop(open);
        match self.arbitrate(table.as_ref(), gid).await {
            Ok(TableDecision::Commit) => {
                report.set(member, BranchOutcome::Committed);
                report.note(
                    member,
                    format!("{lost}; its decision table says COMMIT, so it committed"),
                );
                Decided::Commit
            }
            Ok(TableDecision::Abort) => {
                report.set(member, BranchOutcome::RolledBack);
                report.note(
                    member,
                    format!("{lost}; its decision table says ABORT, so it did not commit"),
                );
                Decided::Abort(TxError::participant(
                    &lost,
                    "; the last agent's decision table says it did not commit, so nothing was committed",
                ))
            }
            Err(unreadable) => {
                report.set(member, BranchOutcome::Pending);
                report.note(member, lost.to_string());
                Decided::InDoubt(TxError::new(
                    ErrorKind::Participant,
                    format!(
                        "the last agent's COMMIT may or may not have committed ({lost}), and its decision table gave no answer ({unreadable}); every other branch stays prepared until `wasmtx recover` resolves it"
                    ),
                ))
            }
        }
    }

    /// Asks `table` for the outcome of `gid`'s lost COMMIT (recording ABORT unless it
    /// committed), retried with backoff for the phase-2 window while the database does not
    /// answer; each try ends after the step timeout.
    async fn arbitrate(
        &self,
        table: &dyn DecisionTable,
        gid: &Gid,
    ) -> Result<TableDecision, DecisionError> {
        let give_up = Instant::now() + self.settings.phase2_retry_for;
        let step = self.settings.step_timeout;
        let mut delay = Duration::from_millis(50);
        loop {
            let ask = tokio::time::timeout(step, table.abort_unless_committed(gid));
            let answer = ask.await.unwrap_or_else(|_| {
                Err(DecisionError::Unavailable(Arc::new(std::io::Error::other(
                    format!(
                        "decision table of `{}`: no answer within {:.1} s",
                        table.participant(),
                        step.as_secs_f64()
                    ),
                ))))
            });
            match answer {
                Ok(decision) => return Ok(decision),
                Err(err @ DecisionError::Unavailable(_)) if Instant::now() + delay < give_up => {
                    tracing::debug!(%gid, "decision table not answering yet: {err}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(err) => return Err(err),
            }
        }
    }
}
