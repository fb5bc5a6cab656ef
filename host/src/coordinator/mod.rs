//! The coordinator: one global transaction from begin to the last commit, readable top to
//! bottom.
//!
//! 1. **begin** a branch on every server participant and one SQLite group for all SQLite
//!    participants, concurrently; any failure rolls back what began;
//! 2. **run** the prepare logic (a WASM script, or native code) with every participant
//!    bound; an `Err`, trap, timeout, limit or any failed statement aborts;
//! 3. one resource → **one-phase commit**, no decision written;
//! 4. otherwise **phase 1**: prepare every server branch concurrently;
//! 5. **decide**: with an SQLite group, the group commits last with the decision row
//!    inside it (its commit is the decision); with a last agent (a server participant
//!    configured so), that participant, unprepared, commits last with the decision row in
//!    its own database (`last_agent.rs`); otherwise COMMIT goes to the decision
//!    store and is durable before anything else happens — and only before the deadline. A
//!    decision whose outcome is unknown leaves the transaction in doubt, never rolled back;
//! 6. **phase 2**: commit every prepared branch concurrently, retried with backoff; a
//!    branch still unconfirmed at the end is reported pending, for recovery.
//!
//! Steps 3–6 are in `commit.rs` (the last agent's decision in `last_agent.rs`);
//! `report_builder.rs` fills in each participant's part of
//! the report as the protocol advances.

mod commit;
mod last_agent;
mod report_builder;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::future::join_all;

use crate::config::Config;
use crate::decision_store::DecisionStore;
use crate::gid::{BranchId, Gid, NodeId};
use crate::limits::Limits;
use crate::participant::sqlite::{SqliteGroup, SqliteMember};
use crate::participant::{
    ErrorClass, ParticipantError, ParticipantSlot, Resolution, ServerParticipant, StatementTimeouts,
};
use crate::report::{BranchOutcome, ErrorKind, Outcome, Phase, TxError, TxReport};
use crate::transaction::{OpenBranch, OpenTransaction};
use report_builder::ReportBuilder;

/// How long phase 2 keeps retrying a branch by default before reporting it pending for
/// recovery.
pub const PHASE2_RETRY_FOR: Duration = Duration::from_secs(15);

/// The longest a single step on a branch may take by default when the deadline no longer
/// bounds it: a rollback, one phase-2 try, the answer to a one-phase COMMIT sent before the
/// deadline.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one protocol step of `participant`, giving up after `limit`: a database that stops
/// answering (a crash, a network that drops packets) must not hold a transaction past its
/// bounds. A step given up on is a connection failure: its outcome is unknown.
pub(crate) async fn bounded<T>(
    limit: Duration,
    participant: &str,
    action: &'static str,
    step: impl Future<Output = Result<T, ParticipantError>>,
) -> Result<T, ParticipantError> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(ParticipantError::new(
            participant,
            action,
            format!(
                "the database did not answer within {:.1} s",
                limit.as_secs_f64()
            ),
        )
        .class(ErrorClass::Connection)),
    }
}

/// The prepare phase of a global transaction: given the open transaction and the input,
/// return the transaction and a vote (`Ok(output)` to commit).
#[async_trait]
pub trait PrepareLogic: Send + Sync {
    async fn prepare(
        &self,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>);
}

/// What a coordinator needs of the configuration besides its participants.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// Names this host's transactions.
    pub node: NodeId,
    /// The transaction deadline and the statement limits.
    pub limits: Limits,
    /// The host-owned main file of SQLite groups, where their last-resource decision rows go.
    pub sqlite_coordinator: PathBuf,
    /// How long phase 2 keeps retrying a branch before reporting it pending for recovery.
    pub phase2_retry_for: Duration,
    /// The longest one step on a branch may take where the deadline does not bound it.
    pub step_timeout: Duration,
    /// Leave a committed transaction's COMMIT in the decision store (no DONE) or the last
    /// agent's row in its table, for the caller to release ([`Coordinator::release_decision`])
    /// once it has recorded the outcome itself: until then the decision still says what
    /// became of the transaction, whatever crashes.
    pub keep_decisions: bool,
}

impl CoordinatorSettings {
    pub fn from_config(config: &Config) -> Self {
        CoordinatorSettings {
            node: config.node.clone(),
            limits: config.limits.clone(),
            sqlite_coordinator: config.sqlite_coordinator_path(),
            phase2_retry_for: PHASE2_RETRY_FOR,
            step_timeout: STEP_TIMEOUT,
            keep_decisions: false,
        }
    }
}

/// What the decision step ended with.
enum Decided {
    /// COMMIT is durable: go on to phase 2.
    Commit,
    /// Nothing was decided: roll everything back.
    Abort(TxError),
    /// COMMIT may or may not be durable: every branch stays prepared for recovery.
    InDoubt(TxError),
}

/// Which way a branch is finished from a connection other than its own.
#[derive(Debug, Clone, Copy)]
enum Finish {
    Commit,
    Rollback,
}

impl Finish {
    fn action(self) -> &'static str {
        match self {
            Finish::Commit => "commit prepared",
            Finish::Rollback => "rollback prepared",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Finish::Commit => "committed",
            Finish::Rollback => "rolled back",
        }
    }

    fn found_done(self) -> &'static str {
        match self {
            Finish::Commit => "found already committed",
            Finish::Rollback => "found already rolled back",
        }
    }
}

/// Runs global transactions over a fixed list of participants. Shared by all transactions
/// of a host: it holds the participants (their connection pools) and the decision store.
/// Cloning is shallow.
#[derive(Clone)]
pub struct Coordinator {
    settings: Arc<CoordinatorSettings>,
    /// In transaction (configuration) order.
    participants: Arc<[ParticipantSlot]>,
    decisions: Option<Arc<dyn DecisionStore>>,
}

impl Coordinator {
    /// A coordinator over `participants`, recording COMMIT decisions in `decisions`. A
    /// transaction over two or more resources with no SQLite group needs a store: without
    /// one it aborts before phase 1 ends.
    pub fn new(
        settings: CoordinatorSettings,
        participants: Vec<ParticipantSlot>,
        decisions: Option<Arc<dyn DecisionStore>>,
    ) -> Self {
        Coordinator {
            settings: Arc::new(settings),
            participants: participants.into(),
            decisions,
        }
    }

    pub fn settings(&self) -> &CoordinatorSettings {
        &self.settings
    }

    /// The participants, in transaction order.
    pub fn participants(&self) -> &[ParticipantSlot] {
        &self.participants
    }

    /// The participants' names, in transaction order.
    pub fn participant_names(&self) -> Vec<String> {
        self.participants
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// The server participants, in transaction order.
    pub fn server_participants(&self) -> impl Iterator<Item = &Arc<dyn ServerParticipant>> {
        self.participants.iter().filter_map(ParticipantSlot::server)
    }

    pub fn decision_store(&self) -> Option<&Arc<dyn DecisionStore>> {
        self.decisions.as_ref()
    }

    /// A coordinator for some of this one's participants, in this one's order, sharing its
    /// pools and decision store. Names are case-insensitive; an unknown one is returned as
    /// the error.
    pub fn subset<'a>(&self, names: &[&'a str]) -> Result<Coordinator, &'a str> {
        if let Some(unknown) = names.iter().find(|name| {
            !self
                .participants
                .iter()
                .any(|p| p.name().eq_ignore_ascii_case(name))
        }) {
            return Err(unknown);
        }
        let chosen: Vec<ParticipantSlot> = self
            .participants
            .iter()
            .filter(|p| names.iter().any(|name| p.name().eq_ignore_ascii_case(name)))
            .cloned()
            .collect();
        Ok(Coordinator {
            settings: self.settings.clone(),
            participants: chosen.into(),
            decisions: self.decisions.clone(),
        })
    }

    /// The same coordinator with another transaction deadline (`limits.timeout_secs`), e.g.
    /// a request's own timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Coordinator {
        let mut settings = (*self.settings).clone();
        settings.limits.timeout_secs = timeout.as_secs_f64();
        Coordinator {
            settings: Arc::new(settings),
            participants: self.participants.clone(),
            decisions: self.decisions.clone(),
        }
    }

    /// The same coordinator keeping the decisions of the transactions it commits (see
    /// [`CoordinatorSettings::keep_decisions`]).
    pub fn keeping_decisions(&self) -> Coordinator {
        let mut settings = (*self.settings).clone();
        settings.keep_decisions = true;
        Coordinator {
            settings: Arc::new(settings),
            participants: self.participants.clone(),
            decisions: self.decisions.clone(),
        }
    }

    /// Lets go of a committed transaction's kept decision: DONE in the decision store, the
    /// row of a last agent's table marked for pruning. Harmless for a gid that has neither.
    pub async fn release_decision(&self, gid: &Gid) {
        for table in self
            .server_participants()
            .filter_map(|p| p.decision_table())
        {
            table.forget(gid);
        }
        if let Some(store) = &self.decisions
            && let Err(err) = store.record_done(gid).await
        {
            tracing::warn!(%gid, "cannot record DONE (recovery will find nothing to do): {err}");
        }
    }

    /// A gid for a transaction starting now: this node's, its deadline the timeout from now.
    /// Give it to [`Coordinator::run_as`] when something must be recorded under the gid
    /// before the transaction runs.
    pub fn new_gid(&self) -> Gid {
        Gid::new(
            &self.settings.node,
            SystemTime::now() + self.settings.limits.timeout(),
        )
    }

    /// Runs one global transaction with `logic` as its prepare phase.
    pub async fn run(&self, logic: &dyn PrepareLogic, input: &str) -> TxReport {
        self.run_as(self.new_gid(), logic, input).await
    }

    /// [`Coordinator::run`] under a gid from [`Coordinator::new_gid`]; the deadline is the
    /// gid's.
    pub async fn run_as(&self, gid: Gid, logic: &dyn PrepareLogic, input: &str) -> TxReport {
        let started = Instant::now();
        let timeout = gid
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let mut report = ReportBuilder::new(&self.participants, gid.clone(), started);

        let tx = match self.begin(gid, started + timeout, &mut report).await {
            Ok(tx) => tx,
            Err(error) => return report.finish(Outcome::Aborted, None, Some(error)),
        };
        crate::fault::point("after-begin");

        report.enter(Phase::Script);
        let (tx, vote) = logic.prepare(tx, input).await;
        crate::fault::point("after-script");
        let failure = match (vote, tx.doomed().cloned()) {
            (Ok(output), None) => return self.commit(tx, output, report).await,
            (Ok(_), Some(doom)) => doom,
            (Err(error), None) => error,
            (Err(error), Some(doom)) if error.kind == ErrorKind::Script => TxError::new(
                doom.kind,
                format!("{} (the script said: {})", doom.message, error.message),
            ),
            (Err(error), Some(_)) => error,
        };
        report.enter(Phase::Rollback);
        self.rollback_all(tx, &mut report).await;
        report.finish(Outcome::Aborted, None, Some(failure))
    }

    /// Opens every branch concurrently; on any failure rolls back those that opened.
    async fn begin(
        &self,
        gid: Gid,
        deadline: Instant,
        report: &mut ReportBuilder,
    ) -> Result<OpenTransaction, TxError> {
        let timeouts = StatementTimeouts {
            statement: self.settings.limits.timeout(),
            lock: self.settings.limits.timeout(),
        };
        let sqlite_members: Vec<SqliteMember> = self
            .participants
            .iter()
            .filter_map(|slot| match slot {
                ParticipantSlot::Sqlite(member) => Some(member.clone()),
                ParticipantSlot::Server(_) => None,
            })
            .collect();
        let server_begins = self
            .participants
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| Some((index, slot.server()?.clone())))
            .map(|(index, participant)| {
                let id = gid.branch(index as u32);
                async move {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let begin = participant.begin(&id, timeouts);
                    let result = bounded(remaining, participant.name(), "begin", begin).await;
                    (index, id, participant, result)
                }
            });
        let sqlite_begin = async {
            if sqlite_members.is_empty() {
                None
            } else {
                let main = &self.settings.sqlite_coordinator;
                Some(SqliteGroup::begin(main, &sqlite_members, timeouts.lock, deadline).await)
            }
        };
        let (server_results, sqlite_result) = futures::join!(join_all(server_begins), sqlite_begin);

        let mut opened = Vec::with_capacity(server_results.len());
        let mut first_error: Option<ParticipantError> = None;
        for (index, id, participant, result) in server_results {
            match result {
                Ok(branch) => opened.push((index, id, participant, branch)),
                Err(err) => {
                    report.note_at(index, err.to_string());
                    first_error.get_or_insert(err);
                }
            }
        }
        let group = match sqlite_result {
            Some(Ok(group)) => Some(group),
            Some(Err(err)) => {
                if let Some(index) = self
                    .participants
                    .iter()
                    .position(|p| p.name() == err.participant)
                {
                    report.note_at(index, err.to_string());
                }
                first_error.get_or_insert(err);
                None
            }
            None => None,
        };

        // Every member in configuration order, so a member's id is its position.
        let mut tx = OpenTransaction::new(gid, deadline, self.settings.limits.result_limits());
        let mut opened = opened.into_iter().peekable();
        let mut group_index = 0;
        for (index, slot) in self.participants.iter().enumerate() {
            match slot {
                ParticipantSlot::Sqlite(member) => {
                    tx.push_sqlite_member(&member.name, group_index);
                    group_index += 1;
                }
                ParticipantSlot::Server(_) => {
                    if let Some((_, id, participant, branch)) =
                        opened.next_if(|(i, ..)| *i == index)
                    {
                        tx.push_server_branch(participant, id, branch);
                    }
                }
            }
        }
        if let Some(group) = group {
            tx.set_sqlite_group(group);
        }
        report.began(&tx);
        match first_error {
            None => Ok(tx),
            Some(err) => {
                self.rollback_all(tx, report).await;
                Err(TxError::participant(&err, "; nothing was committed"))
            }
        }
    }

    /// Rolls back every open branch and the SQLite group. A branch whose rollback fails is
    /// left to the database (an unprepared branch dies with its connection) or to recovery
    /// (a prepared one with no COMMIT record is rolled back after its deadline).
    async fn rollback_all(&self, mut tx: OpenTransaction, report: &mut ReportBuilder) {
        let members = tx.sqlite_members();
        let step_timeout = self.settings.step_timeout;
        let branches = join_all(
            tx.branches
                .iter_mut()
                .map(|open: &mut OpenBranch| async move {
                    let name = open.participant.name();
                    let rollback = open.branch.rollback();
                    let result = match bounded(step_timeout, name, "rollback", rollback).await {
                        Ok(_) => Ok(None),
                        // The branch may be prepared, holding its locks: a live host
                        // releases them itself rather than leave them to recovery.
                        Err(first) => {
                            let participant = open.participant.as_ref();
                            self.finish_elsewhere(participant, &open.id, Finish::Rollback, first)
                                .await
                                .map(Some)
                        }
                    };
                    (open.member, result)
                }),
        );
        let group = async {
            match tx.sqlite.take() {
                Some(group) => Some(group.rollback().await),
                None => None,
            }
        };
        let (branch_results, group_result) = futures::join!(branches, group);
        for (member, result) in branch_results {
            report.set(member, BranchOutcome::RolledBack);
            match result {
                Ok(None) => {}
                Ok(Some(note)) => report.note(member, note),
                Err(err) => report.note(
                    member,
                    format!("{err}; the database or `wasmtx recover` will roll it back"),
                ),
            }
        }
        if let Some(result) = group_result {
            report.set_all(&members, BranchOutcome::RolledBack);
            if let Err(err) = result {
                tracing::warn!(gid = %tx.gid, "SQLite rollback failed (the open transaction dies with its connection): {err}");
            }
        }
    }

    /// Finishes `branch` of `participant` from any connection, after the attempt on its own connection failed
    /// with `first`: retried with backoff for at most the phase-2 window, each try for at
    /// most the step timeout. A configuration error (a privilege, a setting) does not go
    /// away by itself and is not retried. `Ok` says how it went, for the report.
    async fn finish_elsewhere(
        &self,
        participant: &dyn ServerParticipant,
        branch: &BranchId,
        finish: Finish,
        first: ParticipantError,
    ) -> Result<String, ParticipantError> {
        let name = participant.name();
        let give_up = Instant::now() + self.settings.phase2_retry_for;
        let mut delay = Duration::from_millis(50);
        let mut last = first.clone();
        let mut tries = 1;
        while Instant::now() < give_up && last.class != ErrorClass::Configuration {
            tokio::time::sleep(delay).await;
            tries += 1;
            let attempt = match finish {
                Finish::Commit => participant.commit_prepared(branch),
                Finish::Rollback => participant.rollback_prepared(branch),
            };
            match bounded(self.settings.step_timeout, name, finish.action(), attempt).await {
                Ok(resolution) => {
                    let how = match resolution {
                        Resolution::Done => finish.done(),
                        Resolution::AlreadyResolved => finish.found_done(),
                    };
                    return Ok(format!(
                        "branch was pending ({first}); {how} on a new connection after {tries} tries"
                    ));
                }
                Err(err) => last = err,
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(last)
    }

    fn deadline_error(&self) -> TxError {
        TxError::new(
            ErrorKind::Timeout,
            format!(
                "the transaction's deadline of {} s passed before it could be decided (limits.timeout_secs)",
                self.settings.limits.timeout_secs
            ),
        )
    }
}
