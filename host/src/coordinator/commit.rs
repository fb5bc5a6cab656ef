//! Steps 3–6 of the protocol, once the prepare logic voted commit: one-phase commit for a
//! single resource; otherwise phase 1, the decision, and phase 2.
//!
//! With a last agent among the branches (and no SQLite group), the last agent is taken out
//! of the transaction's branches before phase 1: the others are prepared, then the last
//! agent's commit with its decision row is the decision (`last_agent.rs`), and phase 2
//! commits the others.

use std::time::Instant;

use futures::future::join_all;

use super::last_agent::LastAgent;
use super::report_builder::ReportBuilder;
use super::{Coordinator, Decided, Finish, bounded};
use crate::decision_store::{DecisionError, DecisionTable};
use crate::participant::ParticipantError;
use crate::report::{BranchOutcome, ErrorKind, Outcome, Phase, TxError, TxReport};
use crate::transaction::{OpenBranch, OpenTransaction};

impl Coordinator {
    /// Commits a transaction whose prepare logic voted commit with `output`.
    pub(super) async fn commit(
        &self,
        mut tx: OpenTransaction,
        output: String,
        mut report: ReportBuilder,
    ) -> TxReport {
        let resources = tx.branches.len() + usize::from(tx.sqlite.is_some());
        if resources == 1 {
            report.enter(Phase::Commit);
            return self.commit_one_phase(tx, output, report).await;
        }
        let last_agent = LastAgent::take_from(&mut tx);
        report.enter(Phase::Prepare);
        if let Err(error) = self.phase_one(&mut tx).await {
            if let Some(agent) = last_agent {
                tx.branches.push(agent.open);
            }
            report.enter(Phase::Rollback);
            self.rollback_all(tx, &mut report).await;
            return report.finish(Outcome::Aborted, None, Some(error));
        }
        report.enter(Phase::Decide);
        let (decided, table) = match last_agent {
            Some(agent) => {
                let table = agent.table.clone();
                let (gid, deadline) = (tx.gid.clone(), tx.deadline);
                let decided = self.decide_by(agent, &gid, deadline, &mut report).await;
                (decided, Some(table))
            }
            None => (self.decide(&mut tx, &mut report).await, None),
        };
        match decided {
            Decided::Commit => {}
            Decided::Abort(error) => {
                report.enter(Phase::Rollback);
                self.rollback_all(tx, &mut report).await;
                return report.finish(Outcome::Aborted, None, Some(error));
            }
            Decided::InDoubt(error) => {
                for open in &tx.branches {
                    report.set(open.member, BranchOutcome::Pending);
                }
                return report.finish(Outcome::InDoubt, None, Some(error));
            }
        }
        crate::fault::point("after-decision");
        report.enter(Phase::Commit);
        self.phase_two(tx, output, report, table).await
    }

    /// One resource: a plain commit, no decision to record. A COMMIT whose answer does not
    /// come is not an abort: the database may have committed, so the transaction is in doubt
    /// (there is nothing prepared for recovery to resolve; the database has the answer).
    async fn commit_one_phase(
        &self,
        mut tx: OpenTransaction,
        output: String,
        mut report: ReportBuilder,
    ) -> TxReport {
        let (members, result) = match (tx.branches.pop(), tx.sqlite.take()) {
            (Some(mut open), None) => {
                let limit = tx.deadline.saturating_duration_since(Instant::now())
                    + self.settings.step_timeout;
                let name = open.participant.name();
                let commit = open.branch.commit_one_phase();
                let result = match tokio::time::timeout(limit, commit).await {
                    Ok(result) => result,
                    Err(_) => {
                        let error = TxError::participant(
                            &ParticipantError::new(
                                name,
                                "commit",
                                format!(
                                    "the database did not answer the COMMIT within {:.1} s",
                                    limit.as_secs_f64()
                                ),
                            ),
                            "; whether it committed is unknown",
                        )
                        .with_hint("look the transaction's rows up in that database");
                        report.set(open.member, BranchOutcome::Pending);
                        return report.finish(Outcome::InDoubt, None, Some(error));
                    }
                };
                (vec![open.member], result)
            }
            (None, Some(group)) => (tx.sqlite_members(), group.commit(None).await),
            _ => unreachable!("exactly one resource"),
        };
        match result {
            Ok(()) => {
                report.set_all(&members, BranchOutcome::Committed);
                report.finish(Outcome::Committed, Some(output), None)
            }
            Err(err) => {
                for &member in &members {
                    report.note(member, err.to_string());
                }
                let error = TxError::participant(&err, "");
                report.finish(Outcome::Aborted, None, Some(error))
            }
        }
    }

    /// Phase 1: prepares every server branch concurrently, before the deadline.
    async fn phase_one(&self, tx: &mut OpenTransaction) -> Result<(), TxError> {
        if Instant::now() >= tx.deadline {
            return Err(self.deadline_error());
        }
        // Nothing can be decided past the deadline, so a PREPARE need not wait beyond it.
        let deadline = tx.deadline;
        let prepared = join_all(
            tx.branches
                .iter_mut()
                .enumerate()
                .map(|(k, open)| async move {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let name = open.participant.name();
                    let result = bounded(remaining, name, "prepare", open.branch.prepare()).await;
                    if result.is_ok() {
                        crate::fault::point(&format!("after-prepare-{k}"));
                    }
                    result
                }),
        )
        .await;
        match prepared.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(err) => Err(TxError::participant(&err, "; nothing was committed")),
        }
    }

    /// The decision: the SQLite group's commit with the decision row inside it, or a
    /// durable COMMIT in the decision store — either only before the deadline.
    async fn decide(&self, tx: &mut OpenTransaction, report: &mut ReportBuilder) -> Decided {
        if tx.sqlite.is_some() && Instant::now() >= tx.deadline {
            return Decided::Abort(self.deadline_error());
        }
        if let Some(group) = tx.sqlite.take() {
            return match group.commit(Some(&tx.gid)).await {
                Ok(()) => {
                    report.set_all(&tx.sqlite_members(), BranchOutcome::Committed);
                    Decided::Commit
                }
                Err(err) => Decided::Abort(TxError::participant(&err, "; nothing was committed")),
            };
        }
        let Some(store) = &self.decisions else {
            return Decided::Abort(TxError::new(
                ErrorKind::Participant,
                "no decision store is open; nothing was committed",
            ));
        };
        match store.record_commit(&tx.gid, tx.gid.deadline()).await {
            Ok(()) => Decided::Commit,
            Err(DecisionError::NotRecorded(cause)) => Decided::Abort(TxError::new(
                ErrorKind::Participant,
                format!("cannot record the COMMIT decision: {cause}; nothing was committed"),
            )),
            // Anything else may have left the COMMIT durable: rolling back could tear the
            // transaction.
            Err(err) => Decided::InDoubt(TxError::new(
                ErrorKind::Participant,
                format!(
                    "the COMMIT decision may or may not be recorded ({err}); every branch stays prepared until `wasmtx recover` resolves it"
                ),
            )),
        }
    }

    /// Phase 2: commits every prepared branch concurrently, each retried with backoff. Once
    /// all are committed, the decision is forgotten where it was kept: DONE in the decision
    /// store, or the last agent's row (`table`).
    async fn phase_two(
        &self,
        mut tx: OpenTransaction,
        output: String,
        mut report: ReportBuilder,
        table: Option<std::sync::Arc<dyn DecisionTable>>,
    ) -> TxReport {
        let results = join_all(
            tx.branches
                .iter_mut()
                .enumerate()
                .map(|(k, open)| async move {
                    let result = commit_with_retry(self, open).await;
                    if result.is_ok() {
                        crate::fault::point(&format!("after-commit-{k}"));
                    }
                    (open.member, result)
                }),
        )
        .await;
        let mut pending = false;
        for (member, result) in results {
            match result {
                Ok(note) => {
                    report.set(member, BranchOutcome::Committed);
                    if let Some(note) = note {
                        report.note(member, note);
                    }
                }
                Err(err) => {
                    pending = true;
                    report.set(member, BranchOutcome::Pending);
                    report.note(member, format!("{err}; `wasmtx recover` will commit it"));
                }
            }
        }
        if pending {
            let error = TxError::new(
                ErrorKind::Participant,
                "the transaction is decided COMMIT but some branches are not yet committed; run `wasmtx recover`",
            );
            return report.finish(Outcome::InDoubt, Some(output), Some(error));
        }
        if self.settings.keep_decisions {
            // The caller releases it once it has recorded the outcome.
        } else if let Some(table) = table {
            table.forget(&tx.gid);
        } else if let Some(store) = &self.decisions
            && let Err(err) = store.record_done(&tx.gid).await
        {
            let gid = &tx.gid;
            tracing::warn!(%gid, "cannot record DONE (recovery will find nothing to do): {err}");
        }
        report.finish(Outcome::Committed, Some(output), None)
    }
}

/// Phase 2 for one branch: its own connection first, then any connection (see
/// [`Coordinator::finish_elsewhere`]). `Ok(Some(note))` says how a branch that needed more
/// than one try was resolved.
async fn commit_with_retry(
    coordinator: &Coordinator,
    open: &mut OpenBranch,
) -> Result<Option<String>, ParticipantError> {
    let name = open.participant.name();
    let step_timeout = coordinator.settings.step_timeout;
    match bounded(step_timeout, name, "commit", open.branch.commit_prepared()).await {
        Ok(_) => Ok(None),
        Err(first) => coordinator
            .finish_elsewhere(open.participant.as_ref(), &open.id, Finish::Commit, first)
            .await
            .map(Some),
    }
}
