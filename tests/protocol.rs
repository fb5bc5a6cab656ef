//! The commit protocol in-process, with fake participants and a fake decision store: every
//! edge of the coordinator and of recovery, each test naming the step it breaks. (The
//! end-to-end tests in `xa.rs` run the same protocol on real servers.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use wasmtx::coordinator::CoordinatorSettings;
use wasmtx::decision_store::{
    DecisionCause, DecisionStats, DecisionTable, Snapshot, TableDecision,
};
use wasmtx::dialect::Dialect;
use wasmtx::gid::{BranchId, Gid, NodeId};
use wasmtx::limits::Limits;
use wasmtx::participant::{
    ErrorClass, ParticipantError, Resolution, ServerBranch, ServerParticipant, StatementError,
    StatementTimeouts,
};
use wasmtx::recovery::{
    Action, Decision, InDoubtFilter, OperatorError, Requested, TxState, in_doubt,
};
use wasmtx::report::{BranchOutcome, Phase};
use wasmtx::value::{ResultLimits, RowSet, Value};
use wasmtx::{
    Coordinator, DecisionError, DecisionSource, DecisionStore, ErrorKind, OpenTransaction, Outcome,
    ParticipantSlot, PrepareLogic, Recovery, RecoveryReport, TxError, TxReport,
};

// ── fakes ───────────────────────────────────────────────────────────────────────────────

/// Where a fake participant's branch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    Active,
    Prepared,
    Committed,
    RolledBack,
}

/// What a fake participant is told to do wrong.
#[derive(Debug, Default)]
struct Faults {
    begin: bool,
    prepare: bool,
    /// Phase-2 commits (own connection or any) that fail before one succeeds.
    commit_failures: u32,
    /// The class of those failures (a connection error by default).
    commit_failure_class: Option<ErrorClass>,
    /// The step at which the database stops answering (a crash, a dropped network).
    hang_at: Option<Step>,
    /// Rollbacks of a prepared branch on its own connection fail (the connection broke).
    own_rollback_fails: bool,
    /// Listing the prepared branches fails (recovery cannot scan this participant).
    list: bool,
}

/// A protocol step of a fake branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Begin,
    Prepare,
    CommitOnePhase,
    CommitPrepared,
}

/// A database that keeps its branches in memory. Cloning is shallow: the participant, its
/// branches and the test share one state.
#[derive(Clone)]
struct FakeDb(Arc<DbState>);

struct DbState {
    name: &'static str,
    faults: Mutex<Faults>,
    branches: Mutex<BTreeMap<String, BranchState>>,
    statements: Mutex<u32>,
}

impl std::ops::Deref for FakeDb {
    type Target = DbState;
    fn deref(&self) -> &DbState {
        &self.0
    }
}

impl FakeDb {
    fn new(name: &'static str) -> Self {
        FakeDb(Arc::new(DbState {
            name,
            faults: Mutex::new(Faults::default()),
            branches: Mutex::new(BTreeMap::new()),
            statements: Mutex::new(0),
        }))
    }

    /// The participant the coordinator and recovery are given.
    fn participant(&self) -> Arc<dyn ServerParticipant> {
        Arc::new(self.clone())
    }

    fn failing(name: &'static str, faults: Faults) -> Self {
        let db = Self::new(name);
        *db.faults.lock().unwrap() = faults;
        db
    }

    /// Never returns if the database is told to stop answering at `step`.
    async fn maybe_hang(&self, step: Step) {
        let hang = self.faults.lock().unwrap().hang_at == Some(step);
        if hang {
            std::future::pending::<()>().await;
        }
    }

    fn error(&self, action: &'static str) -> ParticipantError {
        ParticipantError::new(self.name, action, "the fake was told to fail")
    }

    fn set(&self, id: &BranchId, state: BranchState) {
        self.branches.lock().unwrap().insert(id.joined(), state);
    }

    /// Every branch's state, in gid order.
    fn states(&self) -> Vec<BranchState> {
        self.branches.lock().unwrap().values().copied().collect()
    }

    fn state_of(&self, id: &BranchId) -> Option<BranchState> {
        self.branches.lock().unwrap().get(&id.joined()).copied()
    }

    /// The error of a phase-2 commit told to fail, if this one is.
    fn commit_failure(&self) -> Option<ParticipantError> {
        let mut faults = self.faults.lock().unwrap();
        if faults.commit_failures == 0 {
            return None;
        }
        faults.commit_failures -= 1;
        let class = faults
            .commit_failure_class
            .unwrap_or(ErrorClass::Connection);
        Some(self.error("commit").class(class))
    }

    /// Phase 2 or recovery on a prepared branch, from any connection.
    fn finish(&self, id: &BranchId, to: BranchState) -> Result<Resolution, ParticipantError> {
        let mut branches = self.branches.lock().unwrap();
        match branches.get(&id.joined()) {
            Some(BranchState::Prepared) => {
                branches.insert(id.joined(), to);
                Ok(Resolution::Done)
            }
            Some(state) if *state == to => Ok(Resolution::AlreadyResolved),
            None => Ok(Resolution::AlreadyResolved),
            Some(state) => panic!("{}: {id:?} is {state:?}, asked to become {to:?}", self.name),
        }
    }
}

struct FakeBranch {
    db: FakeDb,
    id: BranchId,
}

#[async_trait]
impl ServerBranch for FakeBranch {
    async fn execute(&mut self, _sql: &str, _params: &[Value]) -> Result<u64, StatementError> {
        *self.db.statements.lock().unwrap() += 1;
        Ok(1)
    }

    async fn query(
        &mut self,
        _sql: &str,
        _params: &[Value],
        _limits: ResultLimits,
    ) -> Result<RowSet, StatementError> {
        Ok(RowSet {
            columns: Vec::new(),
            rows: Vec::new(),
        })
    }

    async fn prepare(&mut self) -> Result<(), ParticipantError> {
        self.db.maybe_hang(Step::Prepare).await;
        if self.db.faults.lock().unwrap().prepare {
            self.db.set(&self.id, BranchState::RolledBack);
            return Err(self.db.error("prepare"));
        }
        assert_eq!(self.db.state_of(&self.id), Some(BranchState::Active));
        self.db.set(&self.id, BranchState::Prepared);
        Ok(())
    }

    async fn commit_one_phase(&mut self) -> Result<(), ParticipantError> {
        self.db.maybe_hang(Step::CommitOnePhase).await;
        assert_eq!(self.db.state_of(&self.id), Some(BranchState::Active));
        self.db.set(&self.id, BranchState::Committed);
        Ok(())
    }

    async fn commit_prepared(&mut self) -> Result<Resolution, ParticipantError> {
        self.db.maybe_hang(Step::CommitPrepared).await;
        if let Some(err) = self.db.commit_failure() {
            return Err(err);
        }
        self.db.finish(&self.id, BranchState::Committed)
    }

    async fn rollback(&mut self) -> Result<Resolution, ParticipantError> {
        let prepared = self.db.state_of(&self.id) == Some(BranchState::Prepared);
        if prepared && self.db.faults.lock().unwrap().own_rollback_fails {
            return Err(self.db.error("rollback").class(ErrorClass::Connection));
        }
        let mut branches = self.db.branches.lock().unwrap();
        let state = branches.get_mut(&self.id.joined()).expect("a begun branch");
        assert_ne!(
            *state,
            BranchState::Committed,
            "rolled back a committed branch"
        );
        *state = BranchState::RolledBack;
        Ok(Resolution::Done)
    }
}

#[async_trait]
impl ServerParticipant for FakeDb {
    fn name(&self) -> &str {
        self.name
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn begin(
        &self,
        branch: &BranchId,
        _timeouts: StatementTimeouts,
    ) -> Result<Box<dyn ServerBranch>, ParticipantError> {
        self.maybe_hang(Step::Begin).await;
        if self.faults.lock().unwrap().begin {
            return Err(self.error("begin"));
        }
        self.set(branch, BranchState::Active);
        Ok(Box::new(FakeBranch {
            db: self.clone(),
            id: branch.clone(),
        }))
    }

    async fn prepared_branches(&self, gid_prefix: &str) -> Result<Vec<BranchId>, ParticipantError> {
        if self.faults.lock().unwrap().list {
            return Err(self.error("list prepared branches"));
        }
        Ok(self
            .branches
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, state)| id.starts_with(gid_prefix) && **state == BranchState::Prepared)
            .map(|(id, _)| BranchId::parse_joined(id).unwrap())
            .collect())
    }

    async fn commit_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError> {
        self.maybe_hang(Step::CommitPrepared).await;
        if let Some(err) = self.commit_failure() {
            return Err(err);
        }
        self.finish(branch, BranchState::Committed)
    }

    async fn rollback_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError> {
        self.finish(branch, BranchState::RolledBack)
    }
}

/// How the fake store answers `record_commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreAnswer {
    Durable,
    /// Refused: nothing written.
    NotRecorded,
    /// An error after the write may have reached the disk (it did, here).
    MaybeRecorded,
}

struct FakeStore {
    answer: StoreAnswer,
    commits: Mutex<BTreeSet<Gid>>,
    done: Mutex<BTreeSet<Gid>>,
    /// Reads fail: the store cannot say whether a COMMIT is recorded.
    unreadable: Mutex<bool>,
}

impl FakeStore {
    fn new(answer: StoreAnswer) -> Arc<Self> {
        Arc::new(FakeStore {
            answer,
            commits: Mutex::new(BTreeSet::new()),
            done: Mutex::new(BTreeSet::new()),
            unreadable: Mutex::new(false),
        })
    }

    fn with_commit(gid: &Gid) -> Arc<Self> {
        let store = Self::new(StoreAnswer::Durable);
        store.commits.lock().unwrap().insert(gid.clone());
        store
    }

    fn commits(&self) -> usize {
        self.commits.lock().unwrap().len()
    }

    fn dones(&self) -> usize {
        self.done.lock().unwrap().len()
    }
}

fn cause(text: &str) -> DecisionCause {
    Arc::new(std::io::Error::other(text.to_owned()))
}

#[async_trait]
impl DecisionSource for FakeStore {
    fn describe(&self) -> String {
        "fake store".into()
    }

    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError> {
        if *self.unreadable.lock().unwrap() {
            return Err(DecisionError::Unavailable(cause("the disk is gone")));
        }
        Ok(self.commits.lock().unwrap().contains(gid) && !self.done.lock().unwrap().contains(gid))
    }
}

#[async_trait]
impl DecisionStore for FakeStore {
    async fn record_commit(&self, gid: &Gid, deadline: SystemTime) -> Result<(), DecisionError> {
        if SystemTime::now() >= deadline {
            return Err(DecisionError::NotRecorded(cause("deadline passed")));
        }
        match self.answer {
            StoreAnswer::Durable => {
                self.commits.lock().unwrap().insert(gid.clone());
                Ok(())
            }
            StoreAnswer::NotRecorded => Err(DecisionError::NotRecorded(cause("disk full"))),
            StoreAnswer::MaybeRecorded => {
                self.commits.lock().unwrap().insert(gid.clone());
                Err(DecisionError::MaybeRecorded(cause("fsync failed")))
            }
        }
    }

    async fn record_done(&self, gid: &Gid) -> Result<(), DecisionError> {
        self.done.lock().unwrap().insert(gid.clone());
        Ok(())
    }

    async fn snapshot(&self) -> Result<Snapshot, DecisionError> {
        let done = self.done.lock().unwrap().clone();
        Ok(Snapshot {
            pending: self
                .commits
                .lock()
                .unwrap()
                .difference(&done)
                .cloned()
                .collect(),
            as_of: SystemTime::now(),
        })
    }

    async fn flush(&self) -> Result<(), DecisionError> {
        Ok(())
    }

    fn stats(&self) -> DecisionStats {
        DecisionStats::default()
    }
}

/// Prepare logic that sends one statement to every participant, waits, then votes.
struct Logic {
    wait: Duration,
    vote: Result<String, TxError>,
}

impl Logic {
    fn commit() -> Self {
        Logic {
            wait: Duration::ZERO,
            vote: Ok("done".into()),
        }
    }
}

#[async_trait]
impl PrepareLogic for Logic {
    async fn prepare(
        &self,
        mut tx: OpenTransaction,
        _input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        for member in tx.members().collect::<Vec<_>>() {
            if let Err(err) = tx.execute(member, "UPDATE t SET x = 1", &[]).await {
                return (tx, Err(TxError::new(ErrorKind::Database, err.to_string())));
            }
        }
        tokio::time::sleep(self.wait).await;
        (tx, self.vote.clone())
    }
}

// ── helpers ─────────────────────────────────────────────────────────────────────────────

/// How long a fake's step may hang before the coordinator gives up on it, in these tests.
const STEP_TIMEOUT: Duration = Duration::from_millis(200);

fn node() -> NodeId {
    NodeId::new("fake").unwrap()
}

fn coordinator(dbs: &[&FakeDb], store: Option<&Arc<FakeStore>>, timeout_secs: f64) -> Coordinator {
    let limits = Limits {
        timeout_secs,
        ..Limits::default()
    };
    let settings = CoordinatorSettings {
        node: node(),
        limits,
        sqlite_coordinator: std::env::temp_dir().join("wasmtx-protocol-never-used.db"),
        phase2_retry_for: Duration::from_millis(300),
        step_timeout: STEP_TIMEOUT,
        keep_decisions: false,
    };
    let slots = dbs
        .iter()
        .map(|db| ParticipantSlot::Server(db.participant()))
        .collect();
    Coordinator::new(
        settings,
        slots,
        store.map(|s| s.clone() as Arc<dyn DecisionStore>),
    )
}

/// A transaction over participants `a` and `b` (`b` with `faults`) whose logic votes commit,
/// with a decision store answering `answer`.
fn two_phase(faults: Faults, answer: StoreAnswer) -> (FakeDb, FakeDb, Arc<FakeStore>, TxReport) {
    let (a, b) = (FakeDb::new("a"), FakeDb::failing("b", faults));
    let store = FakeStore::new(answer);
    let report = run(
        &coordinator(&[&a, &b], Some(&store), 30.0),
        &Logic::commit(),
    );
    (a, b, store, report)
}

/// Recovery of `dbs` with `store` and `other_sources`.
fn recover(
    dbs: &[&FakeDb],
    store: Option<&Arc<FakeStore>>,
    other_sources: Vec<Arc<dyn DecisionSource>>,
    dry_run: bool,
) -> RecoveryReport {
    let recovery = Recovery::new(
        &node(),
        dbs.iter().map(|db| db.participant()).collect(),
        store.map(|s| s.clone() as Arc<dyn DecisionStore>),
        other_sources,
    );
    block_on(recovery.run(dry_run))
}

fn run(coordinator: &Coordinator, logic: &Logic) -> TxReport {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(coordinator.run(logic, "{}"))
}

fn outcomes(report: &TxReport) -> Vec<BranchOutcome> {
    report.participants.iter().map(|p| p.outcome).collect()
}

use BranchOutcome::{Committed as C, NotStarted, Pending, RolledBack as R};

// ── the coordinator ─────────────────────────────────────────────────────────────────────

#[test]
fn a_kept_decision_stays_until_released() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let store = FakeStore::new(StoreAnswer::Durable);
    let coordinator = coordinator(&[&a, &b], Some(&store), 30.0).keeping_decisions();
    let report = run(&coordinator, &Logic::commit());
    assert_eq!(report.outcome, Outcome::Committed, "{report:?}");
    assert_eq!(outcomes(&report), [C, C]);
    // Committed everywhere, and the COMMIT still recorded without DONE: the caller has not
    // recorded the outcome of its own yet.
    assert_eq!((store.commits(), store.dones()), (1, 0));
    let gid = Gid::parse(&report.gid).unwrap();
    block_on(coordinator.release_decision(&gid));
    assert_eq!((store.commits(), store.dones()), (1, 1));
}

#[test]
fn two_participants_commit_with_a_durable_decision_then_done() {
    let (a, b, store, report) = two_phase(Faults::default(), StoreAnswer::Durable);
    assert_eq!(report.outcome, Outcome::Committed, "{report:?}");
    assert_eq!(outcomes(&report), [C, C]);
    assert_eq!(a.states(), [BranchState::Committed]);
    assert_eq!(b.states(), [BranchState::Committed]);
    assert_eq!((store.commits(), store.dones()), (1, 1));
    let phases: Vec<Phase> = report.phases_ms.keys().copied().collect();
    assert_eq!(
        phases,
        [
            Phase::Begin,
            Phase::Script,
            Phase::Prepare,
            Phase::Decide,
            Phase::Commit
        ]
    );
    let total: f64 = report.phases_ms.values().sum();
    assert!(total <= report.elapsed_ms, "{report:?}");
}

#[test]
fn one_participant_commits_in_one_phase_without_a_decision() {
    let a = FakeDb::new("a");
    let store = FakeStore::new(StoreAnswer::Durable);
    let report = run(&coordinator(&[&a], Some(&store), 30.0), &Logic::commit());
    assert_eq!(report.outcome, Outcome::Committed, "{report:?}");
    // FakeBranch::commit_one_phase asserts the branch was never prepared.
    assert_eq!(a.states(), [BranchState::Committed]);
    assert_eq!(store.commits(), 0, "a one-phase commit writes no decision");
}

#[test]
fn a_failed_begin_rolls_back_what_began_and_runs_nothing() {
    let (a, b, store, report) = two_phase(
        Faults {
            begin: true,
            ..Faults::default()
        },
        StoreAnswer::Durable,
    );
    assert_eq!(report.outcome, Outcome::Aborted);
    assert_eq!(report.error.as_ref().unwrap().kind, ErrorKind::Participant);
    assert_eq!(outcomes(&report), [R, NotStarted]);
    assert!(report.participants[1].note.is_some(), "b says why");
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(*a.statements.lock().unwrap(), 0, "the logic never ran");
    assert!(b.states().is_empty(), "b has no branch");
    assert_eq!(store.commits(), 0);
}

#[test]
fn a_failed_prepare_rolls_back_every_branch_and_records_nothing() {
    let (a, b, store, report) = two_phase(
        Faults {
            prepare: true,
            ..Faults::default()
        },
        StoreAnswer::Durable,
    );
    assert_eq!(report.outcome, Outcome::Aborted);
    assert!(
        report
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("nothing was committed"),
        "{report:?}"
    );
    assert_eq!(outcomes(&report), [R, R]);
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(b.states(), [BranchState::RolledBack]);
    assert_eq!(store.commits(), 0);
}

#[test]
fn a_script_abort_rolls_back_without_preparing() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let store = FakeStore::new(StoreAnswer::Durable);
    let logic = Logic {
        wait: Duration::ZERO,
        vote: Err(TxError::new(ErrorKind::Script, "insufficient funds")),
    };
    let report = run(&coordinator(&[&a, &b], Some(&store), 30.0), &logic);
    assert_eq!(report.outcome, Outcome::Aborted);
    assert_eq!(report.error.as_ref().unwrap().message, "insufficient funds");
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(b.states(), [BranchState::RolledBack]);
    assert_eq!(store.commits(), 0);
    let phases: Vec<Phase> = report.phases_ms.keys().copied().collect();
    assert_eq!(phases, [Phase::Begin, Phase::Script, Phase::Rollback]);
}

#[test]
fn a_prepared_branch_whose_rollback_fails_is_rolled_back_from_another_connection() {
    let (a, b, store, report) = two_phase(
        Faults {
            own_rollback_fails: true,
            ..Faults::default()
        },
        StoreAnswer::NotRecorded,
    );
    assert_eq!(report.outcome, Outcome::Aborted, "{report:?}");
    let note = report.participants[1].note.as_deref().unwrap();
    assert!(note.contains("rolled back on a new connection"), "{note}");
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(
        b.states(),
        [BranchState::RolledBack],
        "no lock left to recovery"
    );
    assert_eq!(store.commits(), 0);
}

#[test]
fn a_refused_decision_rolls_back() {
    let (a, b, store, report) = two_phase(Faults::default(), StoreAnswer::NotRecorded);
    assert_eq!(store.commits(), 0);
    assert_eq!(report.outcome, Outcome::Aborted, "{report:?}");
    assert_eq!(outcomes(&report), [R, R]);
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(b.states(), [BranchState::RolledBack]);
}

#[test]
fn a_decision_that_may_be_recorded_is_in_doubt_and_never_rolled_back() {
    let (a, b, store, report) = two_phase(Faults::default(), StoreAnswer::MaybeRecorded);
    assert_eq!(report.outcome, Outcome::InDoubt, "{report:?}");
    assert_eq!(outcomes(&report), [Pending, Pending]);
    assert_eq!(a.states(), [BranchState::Prepared], "left for recovery");
    assert_eq!(b.states(), [BranchState::Prepared], "left for recovery");

    // Recovery reads the COMMIT that did reach the store and finishes the transaction.
    let recovered = recover(&[&a, &b], Some(&store), Vec::new(), false);
    assert!(recovered.all_resolved(), "{recovered:?}");
    assert_eq!(a.states(), [BranchState::Committed]);
    assert_eq!(b.states(), [BranchState::Committed]);
    assert_eq!(store.dones(), 1);
}

#[test]
fn no_decision_store_means_no_commit() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let report = run(&coordinator(&[&a, &b], None, 30.0), &Logic::commit());
    assert_eq!(report.outcome, Outcome::Aborted);
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(b.states(), [BranchState::RolledBack]);
}

#[test]
fn a_deadline_passed_before_the_decision_aborts() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let store = FakeStore::new(StoreAnswer::Durable);
    let slow = Logic {
        wait: Duration::from_millis(300),
        vote: Ok("late".into()),
    };
    let report = run(&coordinator(&[&a, &b], Some(&store), 0.2), &slow);
    assert_eq!(report.outcome, Outcome::Aborted, "{report:?}");
    assert_eq!(report.error.as_ref().unwrap().kind, ErrorKind::Timeout);
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(store.commits(), 0, "no COMMIT after the deadline");
}

#[test]
fn phase_two_retries_a_failed_commit_until_it_succeeds() {
    let (a, b, store, report) = two_phase(
        Faults {
            commit_failures: 2,
            ..Faults::default()
        },
        StoreAnswer::Durable,
    );
    assert_eq!(report.outcome, Outcome::Committed, "{report:?}");
    assert_eq!(outcomes(&report), [C, C]);
    let note = report.participants[1].note.as_deref().unwrap();
    assert!(note.contains("after 3 tries"), "{note}");
    assert_eq!(a.states(), [BranchState::Committed]);
    assert_eq!(b.states(), [BranchState::Committed]);
    assert_eq!(store.dones(), 1);
}

#[test]
fn phase_two_gives_up_into_pending_and_recovery_commits_it() {
    let (a, b, store, report) = two_phase(
        Faults {
            commit_failures: 1_000,
            ..Faults::default()
        },
        StoreAnswer::Durable,
    );
    assert_eq!(report.outcome, Outcome::InDoubt, "{report:?}");
    assert_eq!(outcomes(&report), [C, Pending]);
    assert_eq!(store.dones(), 0, "no DONE while a branch is pending");
    assert_eq!(b.states(), [BranchState::Prepared]);

    b.faults.lock().unwrap().commit_failures = 0;
    let recovered = recover(&[&a, &b], Some(&store), Vec::new(), false);
    assert_eq!(recovered.branches.len(), 1, "{recovered:?}");
    assert_eq!(recovered.branches[0].action, Action::Committed);
    assert_eq!(b.states(), [BranchState::Committed]);
    assert_eq!(store.dones(), 1);
}

#[test]
fn a_configuration_error_in_phase_two_is_left_to_recovery_without_retrying() {
    let (a, b, store, report) = two_phase(
        Faults {
            commit_failures: 100,
            commit_failure_class: Some(ErrorClass::Configuration),
            ..Faults::default()
        },
        StoreAnswer::Durable,
    );
    assert_eq!(report.outcome, Outcome::InDoubt, "{report:?}");
    assert_eq!(outcomes(&report), [C, Pending]);
    assert_eq!(
        b.faults.lock().unwrap().commit_failures,
        99,
        "tried once only"
    );
    assert_eq!(a.states(), [BranchState::Committed]);
    assert_eq!(b.states(), [BranchState::Prepared]);
    assert_eq!(store.dones(), 0, "no DONE while a branch is pending");
}

// ── a database that stops answering ─────────────────────────────────────────────────────

/// Runs a transaction over `a` and `b` (`b` hanging at `step`) with the given deadline and
/// returns the report and how long it took.
fn with_b_hanging_at(
    step: Step,
    timeout_secs: f64,
) -> (FakeDb, FakeDb, Arc<FakeStore>, TxReport, Duration) {
    let a = FakeDb::new("a");
    let b = FakeDb::failing(
        "b",
        Faults {
            hang_at: Some(step),
            ..Faults::default()
        },
    );
    let store = FakeStore::new(StoreAnswer::Durable);
    let started = std::time::Instant::now();
    let report = run(
        &coordinator(&[&a, &b], Some(&store), timeout_secs),
        &Logic::commit(),
    );
    (a, b, store, report, started.elapsed())
}

#[test]
fn a_begin_that_never_answers_aborts_by_the_deadline() {
    let (a, _b, store, report, took) = with_b_hanging_at(Step::Begin, 0.3);
    assert_eq!(report.outcome, Outcome::Aborted, "{report:?}");
    assert!(
        took < Duration::from_millis(300) + 2 * STEP_TIMEOUT,
        "took {took:?}"
    );
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(store.commits(), 0);
}

#[test]
fn a_prepare_that_never_answers_aborts_by_the_deadline() {
    let (a, _b, store, report, took) = with_b_hanging_at(Step::Prepare, 0.3);
    assert_eq!(report.outcome, Outcome::Aborted, "{report:?}");
    assert!(
        took < Duration::from_millis(300) + 2 * STEP_TIMEOUT,
        "took {took:?}"
    );
    assert_eq!(a.states(), [BranchState::RolledBack]);
    assert_eq!(store.commits(), 0, "nothing decided");
}

#[test]
fn a_phase_two_that_never_answers_is_pending_within_the_retry_window() {
    let (a, b, store, report, took) = with_b_hanging_at(Step::CommitPrepared, 30.0);
    assert_eq!(report.outcome, Outcome::InDoubt, "{report:?}");
    assert_eq!(outcomes(&report), [C, Pending]);
    // One try on the branch's own connection, then tries until the window closes.
    let bound =
        STEP_TIMEOUT + Duration::from_millis(300) + STEP_TIMEOUT + Duration::from_millis(500);
    assert!(took < bound, "took {took:?}");
    assert_eq!(a.states(), [BranchState::Committed]);
    assert_eq!(b.states(), [BranchState::Prepared], "left for recovery");
    assert_eq!((store.commits(), store.dones()), (1, 0));
}

#[test]
fn a_one_phase_commit_that_never_answers_is_in_doubt_not_aborted() {
    let a = FakeDb::failing(
        "a",
        Faults {
            hang_at: Some(Step::CommitOnePhase),
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    let report = run(&coordinator(&[&a], None, 0.3), &Logic::commit());
    let took = started.elapsed();
    assert_eq!(report.outcome, Outcome::InDoubt, "{report:?}");
    let error = report.error.as_ref().unwrap();
    assert!(error.message.contains("unknown"), "{error:?}");
    assert!(error.hint.is_some(), "says what to do");
    assert!(
        took < Duration::from_millis(300) + 2 * STEP_TIMEOUT,
        "took {took:?}"
    );
}

// ── recovery ────────────────────────────────────────────────────────────────────────────

/// A branch of `db` prepared by a transaction whose deadline is `deadline_from_now` away
/// (negative: passed).
fn prepared_branch(db: &FakeDb, deadline_from_now: i64) -> BranchId {
    let id = Gid::new(&node(), deadline_in(deadline_from_now)).branch(0);
    db.set(&id, BranchState::Prepared);
    id
}

/// `secs` seconds from now (negative: ago).
fn deadline_in(secs: i64) -> SystemTime {
    let now = SystemTime::now();
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        now + offset
    } else {
        now - offset
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn recovery_commits_what_a_source_says_commit_and_records_done() {
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, -60);
    let store = FakeStore::with_commit(&branch.gid);
    let report = recover(&[&a], Some(&store), Vec::new(), false);
    assert_eq!(report.branches.len(), 1);
    assert_eq!(report.branches[0].decision, Decision::Commit);
    assert_eq!(report.branches[0].action, Action::Committed);
    assert_eq!(a.state_of(&branch), Some(BranchState::Committed));
    assert_eq!(store.dones(), 1);
}

#[test]
fn recovery_consults_every_source_not_only_the_store() {
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, -60);
    let store = FakeStore::new(StoreAnswer::Durable);
    let last_resource = FakeStore::with_commit(&branch.gid);
    let report = recover(
        &[&a],
        Some(&store),
        vec![last_resource as Arc<dyn DecisionSource>],
        false,
    );
    assert_eq!(report.branches[0].action, Action::Committed, "{report:?}");
    assert_eq!(a.state_of(&branch), Some(BranchState::Committed));
}

#[test]
fn recovery_rolls_back_an_expired_branch_with_no_decision() {
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, -60);
    let store = FakeStore::new(StoreAnswer::Durable);
    let dry = recover(&[&a], Some(&store), Vec::new(), true);
    assert_eq!(dry.branches[0].action, Action::WouldRollBack);
    assert_eq!(
        a.state_of(&branch),
        Some(BranchState::Prepared),
        "a dry run touches nothing"
    );

    let report = recover(&[&a], Some(&store), Vec::new(), false);
    assert_eq!(report.branches[0].decision, Decision::None);
    assert_eq!(report.branches[0].action, Action::RolledBack);
    assert_eq!(a.state_of(&branch), Some(BranchState::RolledBack));
    assert_eq!(store.dones(), 0);
}

#[test]
fn recovery_leaves_an_undecided_branch_whose_deadline_has_not_passed() {
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, 60);
    let store = FakeStore::new(StoreAnswer::Durable);
    let report = recover(&[&a], Some(&store), Vec::new(), false);
    assert_eq!(report.branches[0].action, Action::LeftInDoubt);
    assert!(!report.all_resolved());
    assert_eq!(a.state_of(&branch), Some(BranchState::Prepared));
}

// ── recovery's decision sources that cannot answer ─────────────────────────────────────

/// A last agent's decision table (or a cluster's store, as recovery sees it) whose reads or
/// arbitration fail, or that holds a row.
struct FakeTable {
    read_fails: bool,
    arbitration_fails: bool,
    rows: Mutex<BTreeMap<Gid, TableDecision>>,
}

impl FakeTable {
    fn new(read_fails: bool, arbitration_fails: bool) -> Arc<Self> {
        Arc::new(FakeTable {
            read_fails,
            arbitration_fails,
            rows: Mutex::new(BTreeMap::new()),
        })
    }
}

#[async_trait]
impl DecisionSource for FakeTable {
    fn describe(&self) -> String {
        "fake decision table".into()
    }

    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError> {
        Ok(self.decision(gid).await? == Some(TableDecision::Commit))
    }
}

#[async_trait]
impl DecisionTable for FakeTable {
    fn participant(&self) -> &str {
        "a"
    }

    async fn decision(&self, gid: &Gid) -> Result<Option<TableDecision>, DecisionError> {
        if self.read_fails {
            return Err(DecisionError::Unavailable(cause("connection refused")));
        }
        Ok(self.rows.lock().unwrap().get(gid).copied())
    }

    async fn abort_unless_committed(&self, gid: &Gid) -> Result<TableDecision, DecisionError> {
        if self.arbitration_fails {
            return Err(DecisionError::Unavailable(cause("connection refused")));
        }
        let mut rows = self.rows.lock().unwrap();
        Ok(*rows.entry(gid.clone()).or_insert(TableDecision::Abort))
    }

    fn forget(&self, _gid: &Gid) {}

    async fn prune(
        &self,
        _gid_prefix: &str,
        _expired_before: SystemTime,
        _margin: Duration,
        _keep: &BTreeSet<Gid>,
    ) -> Result<u64, DecisionError> {
        Ok(0)
    }
}

/// Recovery of `dbs` whose only decision source is `table`.
fn recovery_with_table(dbs: &[&FakeDb], table: &Arc<FakeTable>) -> Recovery {
    Recovery::new(
        &node(),
        dbs.iter().map(|db| db.participant()).collect(),
        None,
        Vec::new(),
    )
    .with_decision_tables(vec![table.clone() as Arc<dyn DecisionTable>])
}

/// Recovery run over an expired branch whose decision cannot be read: the branch stays
/// prepared and the line says why.
fn assert_left_prepared(report: &RecoveryReport, db: &FakeDb, branch: &BranchId, why: &str) {
    assert_eq!(report.branches.len(), 1, "{report:?}");
    match &report.branches[0].action {
        Action::Failed(message) => assert!(message.contains(why), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(!report.all_resolved());
    assert_eq!(
        db.state_of(branch),
        Some(BranchState::Prepared),
        "never rolled back"
    );
}

#[test]
fn recovery_leaves_a_branch_prepared_when_the_decision_store_cannot_be_read() {
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, -60);
    let store = FakeStore::with_commit(&branch.gid);
    *store.unreadable.lock().unwrap() = true;
    let report = recover(&[&a], Some(&store), Vec::new(), false);
    assert_left_prepared(&report, &a, &branch, "the disk is gone");
    assert_eq!(store.dones(), 0);
}

#[test]
fn recovery_leaves_a_branch_prepared_when_another_decision_source_cannot_be_read() {
    // The SQLite coordinator file's place: a source besides the store.
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, -60);
    let store = FakeStore::new(StoreAnswer::Durable);
    let other = FakeStore::with_commit(&branch.gid);
    *other.unreadable.lock().unwrap() = true;
    let report = recover(
        &[&a],
        Some(&store),
        vec![other as Arc<dyn DecisionSource>],
        false,
    );
    assert_left_prepared(&report, &a, &branch, "the disk is gone");
}

#[test]
fn recovery_leaves_a_branch_prepared_when_a_decision_table_cannot_be_read() {
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, -60);
    let table = FakeTable::new(true, false);
    let report = block_on(recovery_with_table(&[&a], &table).run(false));
    assert_left_prepared(&report, &a, &branch, "connection refused");
}

#[test]
fn recovery_leaves_a_branch_prepared_when_it_cannot_record_abort_first() {
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, -60);
    let table = FakeTable::new(false, true);
    let report = block_on(recovery_with_table(&[&a], &table).run(false));
    assert_left_prepared(&report, &a, &branch, "cannot record ABORT");
    // Once the table answers, the ABORT goes in first, then the rollback.
    let table = FakeTable::new(false, false);
    let report = block_on(recovery_with_table(&[&a], &table).run(false));
    assert_eq!(report.branches[0].action, Action::RolledBack, "{report:?}");
    assert_eq!(
        table.rows.lock().unwrap().get(&branch.gid),
        Some(&TableDecision::Abort)
    );
}

#[test]
fn a_commit_row_in_a_decision_table_wins_over_an_expired_deadline() {
    let a = FakeDb::new("a");
    let branch = prepared_branch(&a, -60);
    let table = FakeTable::new(false, false);
    table
        .rows
        .lock()
        .unwrap()
        .insert(branch.gid.clone(), TableDecision::Commit);
    let report = block_on(recovery_with_table(&[&a], &table).run(false));
    assert_eq!(report.branches[0].action, Action::Committed, "{report:?}");
    assert_eq!(a.state_of(&branch), Some(BranchState::Committed));
}

// ── an operator's questions and actions ────────────────────────────────────────────────

/// Recovery of `node`'s branches on `dbs`, with `store`.
fn recovery_of(node: &NodeId, dbs: &[&FakeDb], store: &Arc<FakeStore>) -> Recovery {
    Recovery::new(
        node,
        dbs.iter().map(|db| db.participant()).collect(),
        Some(store.clone() as Arc<dyn DecisionStore>),
        Vec::new(),
    )
}

/// A transaction of `node` prepared on `a` (branch 0) and `b` (branch 1), its deadline
/// `deadline_from_now` seconds away (negative: passed), COMMIT recorded if `committed`.
fn prepared_on_both(
    node: &NodeId,
    a: &FakeDb,
    b: &FakeDb,
    deadline_from_now: i64,
    committed: bool,
) -> (Gid, Arc<FakeStore>) {
    let gid = Gid::new(node, deadline_in(deadline_from_now));
    a.set(&gid.branch(0), BranchState::Prepared);
    b.set(&gid.branch(1), BranchState::Prepared);
    let store = if committed {
        FakeStore::with_commit(&gid)
    } else {
        FakeStore::new(StoreAnswer::Durable)
    };
    (gid, store)
}

/// Each cell of the force-resolve matrix: (COMMIT recorded, deadline passed, asked,
/// allow_heuristic) → the state it ends in, or the refusal, and what the branches become.
#[test]
fn force_resolve_keeps_recoverys_rules_unless_told_the_decision_is_heuristic() {
    use BranchState::{Committed as Com, Prepared as Prep, RolledBack as Rb};
    use Requested::{Commit, Rollback};
    type Cell = (
        bool,
        bool,
        Requested,
        bool,
        Result<TxState, &'static str>,
        BranchState,
    );
    let cells: [Cell; 12] = [
        (true, false, Commit, false, Ok(TxState::Committed), Com),
        (true, true, Commit, false, Ok(TxState::Committed), Com),
        (true, true, Commit, true, Ok(TxState::Committed), Com),
        (true, true, Rollback, false, Err("decision-exists"), Prep),
        (
            true,
            false,
            Rollback,
            true,
            Ok(TxState::HeuristicRollback),
            Rb,
        ),
        (false, true, Rollback, false, Ok(TxState::Aborted), Rb),
        (false, true, Rollback, true, Ok(TxState::Aborted), Rb),
        (
            false,
            true,
            Commit,
            false,
            Err("would-commit-an-abort"),
            Prep,
        ),
        (false, true, Commit, true, Ok(TxState::HeuristicCommit), Com),
        (false, false, Commit, false, Err("undecided"), Prep),
        (false, false, Commit, true, Err("undecided"), Prep),
        (false, false, Rollback, true, Err("undecided"), Prep),
    ];
    for (committed, expired, asked, heuristic, expected, branches_end) in cells {
        let cell =
            format!("COMMIT {committed}, expired {expired}, {asked:?}, heuristic {heuristic}");
        let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
        let (gid, store) =
            prepared_on_both(&node(), &a, &b, if expired { -60 } else { 60 }, committed);
        let recovery = recovery_of(&node(), &[&a, &b], &store);
        let result = block_on(recovery.force_resolve(&gid, asked, heuristic));
        match (&result, expected) {
            (Ok(resolved), Ok(state)) => {
                assert_eq!(resolved.state, state, "{cell}");
                assert_eq!(
                    resolved.heuristic,
                    matches!(state, TxState::HeuristicCommit | TxState::HeuristicRollback),
                    "{cell}"
                );
                assert_eq!(resolved.branches.len(), 2, "{cell}: {resolved:?}");
            }
            (Err(err), Err(code)) => {
                let refused = match err {
                    OperatorError::DecisionExists => "decision-exists",
                    OperatorError::WouldCommitAnAbort => "would-commit-an-abort",
                    OperatorError::Undecided { .. } => "undecided",
                    other => panic!("{cell}: {other}"),
                };
                assert_eq!(refused, code, "{cell}");
            }
            (got, _) => panic!("{cell}: expected {expected:?}, got {got:?}"),
        }
        assert_eq!(a.state_of(&gid.branch(0)), Some(branches_end), "{cell}");
        assert_eq!(b.state_of(&gid.branch(1)), Some(branches_end), "{cell}");
        // A COMMIT whose branches are all finished is DONE, whichever way they went.
        let finished = branches_end != Prep;
        assert_eq!(store.dones(), usize::from(committed && finished), "{cell}");
    }
}

#[test]
fn force_resolve_refuses_a_gid_with_nothing_prepared_and_a_participant_it_cannot_list() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let store = FakeStore::new(StoreAnswer::Durable);
    let gid = Gid::new(&node(), SystemTime::now() - Duration::from_secs(60));
    let recovery = recovery_of(&node(), &[&a, &b], &store);
    let err = block_on(recovery.force_resolve(&gid, Requested::Rollback, true)).unwrap_err();
    assert!(matches!(err, OperatorError::NothingPrepared(_)), "{err}");

    let (gid, store) = prepared_on_both(&node(), &a, &b, -60, false);
    b.faults.lock().unwrap().list = true;
    let recovery = recovery_of(&node(), &[&a, &b], &store);
    let err = block_on(recovery.force_resolve(&gid, Requested::Commit, true)).unwrap_err();
    assert!(matches!(err, OperatorError::Scan { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("cannot list b's prepared branches"),
        "{err}"
    );
    assert_eq!(
        a.state_of(&gid.branch(0)),
        Some(BranchState::Prepared),
        "nothing done"
    );
}

#[test]
fn a_heuristic_resolve_of_another_nodes_gid_acts_on_that_nodes_branches() {
    // A survivor resolves a dead node's transaction: recovery for that node, as its adopter.
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let dead = NodeId::new("dead").unwrap();
    let (theirs, store) = prepared_on_both(&dead, &a, &b, -60, false);
    let (own, _) = prepared_on_both(&node(), &a, &b, -60, false);
    let adopter = recovery_of(&dead, &[&a, &b], &store);
    let resolved =
        block_on(adopter.force_resolve(&theirs, Requested::Commit, true)).expect("resolved");
    assert_eq!(resolved.state, TxState::HeuristicCommit);
    assert_eq!(
        resolved.branches,
        BTreeMap::from([
            ("a".to_owned(), "committed".to_owned()),
            ("b".to_owned(), "committed".to_owned())
        ])
    );
    assert_eq!(a.state_of(&theirs.branch(0)), Some(BranchState::Committed));
    assert_eq!(b.state_of(&theirs.branch(1)), Some(BranchState::Committed));
    // This node's own transaction is not touched.
    assert_eq!(a.state_of(&own.branch(0)), Some(BranchState::Prepared));
    assert_eq!(b.state_of(&own.branch(1)), Some(BranchState::Prepared));
}

#[test]
fn a_resolve_that_cannot_read_the_decision_leaves_the_branches_prepared() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let (gid, store) = prepared_on_both(&node(), &a, &b, -60, true);
    *store.unreadable.lock().unwrap() = true;
    let recovery = recovery_of(&node(), &[&a, &b], &store);
    let err = block_on(recovery.force_resolve(&gid, Requested::Rollback, false)).unwrap_err();
    let OperatorError::BranchesFailed { branches, .. } = &err else {
        panic!("{err}");
    };
    assert!(branches.values().all(|v| v == "failed"), "{branches:?}");
    assert_eq!(a.state_of(&gid.branch(0)), Some(BranchState::Prepared));
    assert_eq!(b.state_of(&gid.branch(1)), Some(BranchState::Prepared));
}

#[test]
fn the_state_of_a_gid_is_read_from_its_branches_and_the_store() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let examine = |gid: &Gid, store: &Arc<FakeStore>, recorded: bool| {
        let recovery = recovery_of(&node(), &[&a, &b], store);
        let examined = block_on(recovery.examine(gid)).expect("examined");
        examined.state(SystemTime::now(), recorded)
    };
    let (gid, store) = prepared_on_both(&node(), &a, &b, 60, true);
    assert_eq!(examine(&gid, &store, false), TxState::Committing);
    let (gid, store) = prepared_on_both(&node(), &a, &b, 60, false);
    assert_eq!(examine(&gid, &store, false), TxState::InDoubt);
    let (gid, store) = prepared_on_both(&node(), &a, &b, -60, false);
    assert_eq!(examine(&gid, &store, false), TxState::Aborting);
    // Nothing prepared: the store decides, and without a record nothing is known.
    let later = Gid::new(&node(), SystemTime::now() + Duration::from_secs(60));
    let decided = FakeStore::with_commit(&later);
    assert_eq!(examine(&later, &decided, false), TxState::Committed);
    let empty = FakeStore::new(StoreAnswer::Durable);
    assert_eq!(examine(&later, &empty, false), TxState::Unknown);
    assert_eq!(examine(&later, &empty, true), TxState::InDoubt);
    let past = Gid::new(&node(), SystemTime::now() - Duration::from_secs(60));
    assert_eq!(examine(&past, &empty, false), TxState::Aborted);
    // A store that cannot be read is no answer, not an abort.
    *empty.unreadable.lock().unwrap() = true;
    let recovery = recovery_of(&node(), &[&a, &b], &empty);
    let err = block_on(recovery.examine(&past)).unwrap_err();
    assert!(matches!(err, OperatorError::Store(_)), "{err}");
}

#[test]
fn retry_resolves_one_gid_and_only_that_one() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let (gid, store) = prepared_on_both(&node(), &a, &b, 60, true);
    let (other, _) = prepared_on_both(&node(), &a, &b, -60, false);
    let recovery = recovery_of(&node(), &[&a, &b], &store);
    let report = block_on(recovery.retry(&gid)).expect("retried");
    assert!(report.all_resolved(), "{report:?}");
    assert_eq!(report.branches.len(), 2);
    assert_eq!(a.state_of(&gid.branch(0)), Some(BranchState::Committed));
    assert_eq!(b.state_of(&gid.branch(1)), Some(BranchState::Committed));
    assert_eq!(store.dones(), 1);
    assert_eq!(a.state_of(&other.branch(0)), Some(BranchState::Prepared));
}

#[test]
fn the_in_doubt_list_filters_by_participant_age_and_what_runs_and_names_pending_commits() {
    let (a, b) = (FakeDb::new("a"), FakeDb::new("b"));
    let (old, _) = prepared_on_both(&node(), &a, &b, -120, false);
    let (young, store) = prepared_on_both(&node(), &a, &b, 60, true);
    let dry = block_on(recovery_of(&node(), &[&a, &b], &store).run(true));
    let list = |filter: InDoubtFilter, dry: &RecoveryReport| {
        let store = store.clone() as Arc<dyn DecisionStore>;
        block_on(in_doubt(
            dry.clone(),
            Some(&store),
            &filter,
            SystemTime::now(),
        ))
    };
    let all = list(InDoubtFilter::default(), &dry);
    assert_eq!(all.entries.len(), 4, "{all:?}");
    let on_b = list(
        InDoubtFilter {
            participant: Some("B".into()),
            ..InDoubtFilter::default()
        },
        &dry,
    );
    assert!(
        on_b.entries
            .iter()
            .all(|e| e.participant.as_deref() == Some("b"))
    );
    assert_eq!(on_b.entries.len(), 2);
    let overdue = list(
        InDoubtFilter {
            older_than: Some(Duration::from_secs(60)),
            ..InDoubtFilter::default()
        },
        &dry,
    );
    assert!(
        overdue.entries.iter().all(|e| e.gid == old.as_str()),
        "{overdue:?}"
    );
    assert_eq!(overdue.entries[0].action, "would-roll-back");
    let running = list(
        InDoubtFilter {
            running: BTreeSet::from([young.to_string()]),
            ..InDoubtFilter::default()
        },
        &dry,
    );
    assert_eq!(running.entries.len(), 2, "what runs is not in doubt");

    // A participant that cannot be listed: the COMMIT it may still hold a branch of is pending.
    b.faults.lock().unwrap().list = true;
    let (a_only, store_of) = (FakeDb::new("a2"), store.clone());
    let dry = block_on(recovery_of(&node(), &[&a_only, &b], &store_of).run(true));
    let listed = list(InDoubtFilter::default(), &dry);
    assert_eq!(listed.failures.len(), 1, "{listed:?}");
    let pending: Vec<_> = listed
        .entries
        .iter()
        .filter(|e| e.kind == "commit-pending")
        .collect();
    assert_eq!(pending.len(), 1, "{listed:?}");
    assert_eq!(pending[0].gid, young.as_str());
}
