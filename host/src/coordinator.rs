//! The coordinator: one global transaction from begin to the last commit, readable top to
//! bottom.
//!
//! 1. **begin** a branch on every XA participant and one SQLite group for all SQLite
//!    participants, concurrently; any failure rolls back what began;
//! 2. **run** the prepare logic (a WASM script, or a native closure) with every
//!    participant bound; an `Err`, trap, timeout, limit or any failed statement aborts;
//! 3. one resource → **one-phase commit**, no log write;
//! 4. otherwise **phase 1**: prepare every XA branch concurrently;
//! 5. **decision**: with an SQLite group, the group commits last with the decision row
//!    inside it (its commit is the decision); without one, COMMIT goes to the decision log
//!    and is durable before anything else happens — and only before the deadline;
//! 6. **phase 2**: commit every prepared branch concurrently, retried with backoff; a
//!    branch still unconfirmed at the end is reported pending, for `wasmtx recover`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::future::join_all;

use crate::config::Config;
use crate::decision_log::{DecisionLog, DecisionLogOptions};
use crate::decision_store::{DecisionError, DecisionStore};
use crate::gid::Gid;
use crate::participant::sqlite::{SqliteGroup, SqliteMember};
use crate::participant::{
    Location, ParticipantError, Resolution, StatementTimeouts, ServerParticipant,
};
use crate::participant::{mysql::MysqlParticipant, postgres::PostgresParticipant};
use crate::report::{BranchOutcome, ErrorKind, Outcome, ParticipantReport, TxError, TxReport};
use crate::script::{Sandbox, Script};
use crate::transaction::{Member, OpenBranch, OpenTransaction, Route};

/// How long phase 2 keeps retrying a branch before reporting it pending for recovery.
pub const PHASE2_RETRY_FOR: Duration = Duration::from_secs(15);

/// The prepare phase of a global transaction: given the open transaction and the input,
/// return the transaction and a vote.
#[async_trait]
pub trait PrepareLogic: Send + Sync {
    async fn prepare(
        &self,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>);
}

/// A WASM script as prepare logic.
#[derive(Clone)]
pub struct ScriptLogic {
    pub sandbox: Arc<Sandbox>,
    pub script: Arc<Script>,
}

#[async_trait]
impl PrepareLogic for ScriptLogic {
    async fn prepare(
        &self,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        self.sandbox.run(&self.script, tx, input).await
    }
}

/// Runs global transactions over the configured participants. Shared by all transactions
/// of a host: it holds the connection pools and the decision log. Cloning is shallow.
#[derive(Clone)]
pub struct Coordinator {
    config: Config,
    /// One entry per configured participant: the pool for PostgreSQL/MySQL, `None` for SQLite.
    xa: Vec<Option<Arc<dyn ServerParticipant>>>,
    decision_log: Option<DecisionLog>,
}

impl Coordinator {
    /// Connects the server participants (pools of up to `max_connections` each). The
    /// decision log is opened when a transaction can need it (two or more resources, at
    /// least one of them an XA participant without an SQLite group).
    pub async fn connect(config: Config, max_connections: u32) -> Result<Self, ParticipantError> {
        let mut xa: Vec<Option<Arc<dyn ServerParticipant>>> =
            Vec::with_capacity(config.participants.len());
        for spec in &config.participants {
            xa.push(match &spec.location {
                Location::Sqlite { .. } => None,
                Location::Postgres { url } => Some(Arc::new(
                    PostgresParticipant::connect(&spec.name, url, max_connections).await?,
                )),
                Location::Mysql { url } => Some(Arc::new(
                    MysqlParticipant::connect(&spec.name, url, max_connections).await?,
                )),
            });
        }
        let xa_count = xa.iter().flatten().count();
        let has_sqlite = xa.iter().any(Option::is_none);
        // With an SQLite group the group's commit is the decision; otherwise two or more
        // XA participants need the log.
        let decision_log = if xa_count >= 2 && !has_sqlite {
            let path = config.decision_log_path();
            Some(
                DecisionLog::open_async(&path, DecisionLogOptions::default())
                    .await
                    .map_err(|e| ParticipantError::new("decision log", "open", e))?,
            )
        } else {
            None
        };
        Ok(Coordinator {
            config,
            xa,
            decision_log,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A coordinator for one of this one's participants alone, sharing its pools: its
    /// transactions commit in one phase.
    pub fn only(&self, name: &str) -> Option<Coordinator> {
        let index = self
            .config
            .participants
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))?;
        let mut config = self.config.clone();
        config.participants = vec![config.participants[index].clone()];
        Some(Coordinator {
            config,
            xa: vec![self.xa[index].clone()],
            decision_log: None,
        })
    }

    /// The server participants, by configuration index.
    pub fn xa_participants(&self) -> impl Iterator<Item = &Arc<dyn ServerParticipant>> {
        self.xa.iter().flatten()
    }

    pub fn decision_log(&self) -> Option<&DecisionLog> {
        self.decision_log.as_ref()
    }

    /// Runs one global transaction with `logic` as its prepare phase.
    pub async fn run(&self, logic: &dyn PrepareLogic, input: &str) -> TxReport {
        let started = Instant::now();
        let timeout = self.config.limits.timeout();
        let gid = Gid::new(&self.config.node, SystemTime::now() + timeout);
        let mut progress = Progress::new(&self.config);

        let tx = match self
            .begin(gid.clone(), started + timeout, &mut progress)
            .await
        {
            Ok(tx) => tx,
            Err(error) => {
                return progress.report(&gid, Outcome::Aborted, None, Some(error), started);
            }
        };
        crate::fault::point("after-begin");

        let (tx, vote) = logic.prepare(tx, input).await;
        crate::fault::point("after-script");
        let failure = match (vote, tx.doomed().cloned()) {
            (Ok(output), None) => return self.commit(tx, output, progress, started).await,
            (Ok(_), Some(doom)) => doom,
            (Err(error), None) => error,
            (Err(error), Some(doom)) if error.kind == ErrorKind::Script => TxError::new(
                doom.kind,
                format!("{} (the script said: {})", doom.message, error.message),
            ),
            (Err(error), Some(_)) => error,
        };
        self.rollback_all(tx, &mut progress).await;
        progress.report(&gid, Outcome::Aborted, None, Some(failure), started)
    }

    /// Opens every branch concurrently; on any failure rolls back those that opened.
    async fn begin(
        &self,
        gid: Gid,
        deadline: Instant,
        progress: &mut Progress,
    ) -> Result<OpenTransaction, TxError> {
        let timeouts = StatementTimeouts {
            statement: self.config.limits.timeout(),
            lock: self.config.limits.timeout(),
        };
        let mut members = Vec::with_capacity(self.config.participants.len());
        let mut sqlite_members = Vec::new();
        let mut xa_begins = Vec::new();
        for (index, spec) in self.config.participants.iter().enumerate() {
            let route = match (&spec.location, &self.xa[index]) {
                (
                    Location::Sqlite {
                        path,
                        create,
                        convert_journal,
                    },
                    _,
                ) => {
                    sqlite_members.push(SqliteMember {
                        name: spec.name.clone(),
                        path: path.clone(),
                        create: *create,
                        convert_journal: *convert_journal,
                    });
                    Route::Sqlite(sqlite_members.len() - 1)
                }
                (_, Some(participant)) => {
                    let branch = gid.branch(index as u32);
                    let participant = participant.clone();
                    xa_begins.push(async move {
                        let result = participant.begin(&branch, timeouts).await;
                        (index, branch, participant, result)
                    });
                    Route::Xa(xa_begins.len() - 1)
                }
                (_, None) => {
                    unreachable!("server participants are connected in Coordinator::connect")
                }
            };
            members.push(Member {
                name: spec.name.clone(),
                dialect: spec.dialect(),
                route,
            });
        }
        let mut tx =
            OpenTransaction::new(gid, deadline, members, self.config.limits.result_limits());

        let main = self.config.sqlite_coordinator_path();
        let sqlite_begin = async {
            if sqlite_members.is_empty() {
                None
            } else {
                Some(SqliteGroup::begin(&main, &sqlite_members, timeouts.lock, deadline).await)
            }
        };
        let (xa_results, sqlite_result) = futures::join!(join_all(xa_begins), sqlite_begin);

        let mut first_error: Option<ParticipantError> = None;
        for (index, id, participant, result) in xa_results {
            match result {
                Ok(branch) => tx.branches.push(OpenBranch {
                    member: index,
                    id,
                    participant,
                    branch,
                }),
                Err(err) => {
                    progress.note(index, err.to_string());
                    first_error.get_or_insert(err);
                }
            }
        }
        match sqlite_result {
            Some(Ok(group)) => tx.sqlite = Some(group),
            Some(Err(err)) => {
                if let Some(index) = self
                    .config
                    .participants
                    .iter()
                    .position(|p| p.name == err.participant)
                {
                    progress.note(index, err.to_string());
                }
                first_error.get_or_insert(err);
            }
            None => {}
        }
        progress.began(&tx);
        match first_error {
            None => Ok(tx),
            Some(err) => {
                self.rollback_all(tx, progress).await;
                Err(TxError::new(
                    ErrorKind::Participant,
                    format!("{err}; nothing was committed"),
                ))
            }
        }
    }

    /// Steps 3–6 once the prepare logic voted commit.
    async fn commit(
        &self,
        mut tx: OpenTransaction,
        output: String,
        mut progress: Progress,
        started: Instant,
    ) -> TxReport {
        let gid = tx.gid.clone();
        let resources = tx.branches.len() + usize::from(tx.sqlite.is_some());

        if resources == 1 {
            let (members, result) = match (tx.branches.pop(), tx.sqlite.take()) {
                (Some(mut open), None) => (vec![open.member], open.branch.commit_one_phase().await),
                (None, Some(group)) => (sqlite_members(&tx.members), group.commit(None).await),
                _ => unreachable!("exactly one resource"),
            };
            return match result {
                Ok(()) => {
                    progress.set_all(&members, BranchOutcome::Committed);
                    progress.report(&gid, Outcome::Committed, Some(output), None, started)
                }
                Err(err) => {
                    for &member in &members {
                        progress.note(member, err.to_string());
                    }
                    let error = TxError::new(ErrorKind::Participant, err.to_string());
                    progress.report(&gid, Outcome::Aborted, None, Some(error), started)
                }
            };
        }

        // Phase 1.
        if Instant::now() >= tx.deadline {
            let error = self.deadline_error();
            self.rollback_all(tx, &mut progress).await;
            return progress.report(&gid, Outcome::Aborted, None, Some(error), started);
        }
        let prepared = join_all(
            tx.branches
                .iter_mut()
                .enumerate()
                .map(|(k, open)| async move {
                    let result = open.branch.prepare().await;
                    if result.is_ok() {
                        crate::fault::point(&format!("after-prepare-{k}"));
                    }
                    result
                }),
        )
        .await;
        if let Some(err) = prepared.into_iter().find_map(Result::err) {
            self.rollback_all(tx, &mut progress).await;
            let error = TxError::new(
                ErrorKind::Participant,
                format!("{err}; nothing was committed"),
            );
            return progress.report(&gid, Outcome::Aborted, None, Some(error), started);
        }

        // The decision.
        let decided = match tx.sqlite.take() {
            Some(group) if Instant::now() < tx.deadline => {
                let members = sqlite_members(&tx.members);
                let result = group.commit(Some(&gid)).await;
                if result.is_ok() {
                    progress.set_all(&members, BranchOutcome::Committed);
                }
                result.map_err(|e| {
                    TxError::new(
                        ErrorKind::Participant,
                        format!("{e}; nothing was committed"),
                    )
                })
            }
            Some(group) => {
                tx.sqlite = Some(group);
                Err(self.deadline_error())
            }
            None => match &self.decision_log {
                Some(log) => match log.record_commit(&gid, gid.deadline()).await {
                    Ok(()) => Ok(()),
                    Err(e @ DecisionError::MaybeRecorded(_)) => {
                        // The COMMIT may be durable: rolling back could tear the
                        // transaction. Leave every branch prepared for recovery.
                        for open in &tx.branches {
                            progress.set(open.member, BranchOutcome::Pending);
                        }
                        let error = TxError::new(
                            ErrorKind::Participant,
                            format!(
                                "the COMMIT decision may or may not be recorded ({e}); every branch stays prepared until `wasmtx recover` resolves it"
                            ),
                        );
                        return progress.report(&gid, Outcome::InDoubt, None, Some(error), started);
                    }
                    Err(e) => Err(TxError::new(
                        ErrorKind::Participant,
                        format!("cannot record the COMMIT decision: {e}; nothing was committed"),
                    )),
                },
                None => Err(TxError::new(
                    ErrorKind::Participant,
                    "no decision log is open; nothing was committed",
                )),
            },
        };
        if let Err(error) = decided {
            self.rollback_all(tx, &mut progress).await;
            return progress.report(&gid, Outcome::Aborted, None, Some(error), started);
        }
        crate::fault::point("after-decision");

        // Phase 2.
        let results = join_all(
            tx.branches
                .iter_mut()
                .enumerate()
                .map(|(k, open)| async move {
                    let result = commit_with_retry(open).await;
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
                    progress.set(member, BranchOutcome::Committed);
                    if let Some(note) = note {
                        progress.note(member, note);
                    }
                }
                Err(err) => {
                    pending = true;
                    progress.set(member, BranchOutcome::Pending);
                    progress.note(member, format!("{err}; `wasmtx recover` will commit it"));
                }
            }
        }
        if pending {
            let error = TxError::new(
                ErrorKind::Participant,
                "the transaction is decided COMMIT but some branches are not yet committed; run `wasmtx recover`",
            );
            return progress.report(&gid, Outcome::InDoubt, Some(output), Some(error), started);
        }
        if let Some(log) = &self.decision_log
            && let Err(err) = log.record_done(&gid).await
        {
            tracing::warn!(%gid, "cannot record DONE (recovery will find nothing to do): {err}");
        }
        progress.report(&gid, Outcome::Committed, Some(output), None, started)
    }

    /// Rolls back every open branch and the SQLite group. A branch whose rollback fails is
    /// left to the database (an unprepared branch dies with its connection) or to recovery
    /// (a prepared one with no COMMIT record is rolled back after its deadline).
    async fn rollback_all(&self, mut tx: OpenTransaction, progress: &mut Progress) {
        let branches = join_all(tx.branches.iter_mut().map(|open| async move {
            let result = open.branch.rollback().await;
            (open.member, result)
        }));
        let members = sqlite_members(&tx.members);
        let group = async {
            match tx.sqlite.take() {
                Some(group) => Some(group.rollback().await),
                None => None,
            }
        };
        let (branch_results, group_result) = futures::join!(branches, group);
        for (member, result) in branch_results {
            progress.set(member, BranchOutcome::RolledBack);
            if let Err(err) = result {
                progress.note(
                    member,
                    format!("{err}; the database or `wasmtx recover` will roll it back"),
                );
            }
        }
        if let Some(result) = group_result {
            progress.set_all(&members, BranchOutcome::RolledBack);
            if let Err(err) = result {
                tracing::warn!(gid = %tx.gid, "SQLite rollback failed (the open transaction dies with its connection): {err}");
            }
        }
    }

    fn deadline_error(&self) -> TxError {
        TxError::new(
            ErrorKind::Timeout,
            format!(
                "the transaction's deadline of {} s passed before it could be decided (limits.timeout_secs)",
                self.config.limits.timeout_secs
            ),
        )
    }
}

/// Phase 2 for one branch: its own connection first, then any connection, with backoff.
/// `Ok(Some(note))` says how a branch that needed more than one try was resolved.
async fn commit_with_retry(open: &mut OpenBranch) -> Result<Option<String>, ParticipantError> {
    let first = match open.branch.commit_prepared().await {
        Ok(_) => return Ok(None),
        Err(err) => err,
    };
    let give_up = Instant::now() + PHASE2_RETRY_FOR;
    let mut delay = Duration::from_millis(50);
    let mut last = first.clone();
    let mut tries = 1;
    while Instant::now() < give_up {
        tokio::time::sleep(delay).await;
        tries += 1;
        match open.participant.commit_prepared(&open.id).await {
            Ok(resolution) => {
                let how = match resolution {
                    Resolution::Done => "committed",
                    Resolution::AlreadyResolved => "found already committed",
                };
                return Ok(Some(format!(
                    "branch was pending ({first}); {how} on a new connection after {tries} tries"
                )));
            }
            Err(err) => last = err,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    Err(last)
}

fn sqlite_members(members: &[Member]) -> Vec<usize> {
    members
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m.route, Route::Sqlite(_)))
        .map(|(i, _)| i)
        .collect()
}

/// The per-participant part of the report, filled in as the protocol advances.
struct Progress {
    participants: Vec<ParticipantReport>,
}

impl Progress {
    fn new(config: &Config) -> Self {
        Progress {
            participants: config
                .participants
                .iter()
                .map(|p| ParticipantReport {
                    name: p.name.clone(),
                    dialect: p.dialect(),
                    outcome: BranchOutcome::NotStarted,
                    note: None,
                })
                .collect(),
        }
    }

    /// Marks what began as rolled back unless later steps say otherwise.
    fn began(&mut self, tx: &OpenTransaction) {
        for open in &tx.branches {
            self.set(open.member, BranchOutcome::RolledBack);
        }
        if tx.sqlite.is_some() {
            self.set_all(&sqlite_members(&tx.members), BranchOutcome::RolledBack);
        }
    }

    fn set(&mut self, member: usize, outcome: BranchOutcome) {
        self.participants[member].outcome = outcome;
    }

    fn set_all(&mut self, members: &[usize], outcome: BranchOutcome) {
        for &member in members {
            self.set(member, outcome);
        }
    }

    fn note(&mut self, member: usize, note: String) {
        self.participants[member].note = Some(note);
    }

    fn report(
        self,
        gid: &Gid,
        outcome: Outcome,
        output: Option<String>,
        error: Option<TxError>,
        started: Instant,
    ) -> TxReport {
        TxReport {
            gid: gid.to_string(),
            outcome,
            output,
            error,
            participants: self.participants,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }
}
