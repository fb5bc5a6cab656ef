//! Where COMMIT decisions are kept: the interfaces the coordinator and recovery use.
//!
//! - A [`DecisionSource`] answers one question for recovery: is a COMMIT recorded for this
//!   gid? The decision log is one; the SQLite coordinator file (where an SQLite group that
//!   commits last writes its decision row inside its own commit) is another.
//! - A [`DecisionStore`] is a source the coordinator also writes to: it records a COMMIT
//!   durably and only before the transaction's deadline, and a DONE once phase 2 finished:
//!   the file log (`decision_log/`) and a cluster's PostgreSQL store (`cluster/store.rs`).
//! - A [`DecisionTable`] is a source that also arbitrates: before anyone gives up on an
//!   undecided transaction it records ABORT unless a COMMIT is there, and the first row for
//!   a gid wins. A last agent's table (`participant/decision_table.rs`) and the cluster's
//!   store are arbiters.
//!
//! The rule every store keeps: a COMMIT is durable before `record_commit` returns `Ok`, and
//! it is never recorded once the deadline has passed — so recovery may presume abort for an
//! undecided transaction past its deadline. An error says whether the COMMIT may have been
//! recorded all the same ([`DecisionError::MaybeRecorded`]): then the transaction is in
//! doubt and its branches stay prepared for recovery; it is never rolled back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use thiserror::Error;

use crate::gid::Gid;

/// The cause kept inside a [`DecisionError`].
pub type DecisionCause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a decision store could not do what was asked. The variant is what the caller acts on;
/// the cause says what happened and what to do.
#[derive(Debug, Clone, Error)]
pub enum DecisionError {
    /// Nothing was recorded (refused past the deadline, or a write that was undone): the
    /// transaction must abort.
    #[error("{0}")]
    NotRecorded(DecisionCause),
    /// The COMMIT may or may not be durable: the transaction is in doubt; leave its branches
    /// prepared for recovery, which reads the store.
    #[error("{0}")]
    MaybeRecorded(DecisionCause),
    /// The store could not be opened or read.
    #[error("{0}")]
    Unavailable(DecisionCause),
}

/// The pending COMMITs of a store, and when they were read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Gids with a COMMIT and no DONE: the transactions recovery must commit.
    pub pending: BTreeSet<Gid>,
    /// The wall clock, read while no COMMIT could be appended. A transaction not in
    /// `pending` whose deadline is `<= as_of` can never get a COMMIT: recovery may roll it
    /// back (keep a margin for clock steps).
    pub as_of: SystemTime,
}

/// Counters since a store was opened, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionStats {
    pub commits_written: u64,
    pub dones_written: u64,
    /// Batches (group-commit writes) appended.
    pub batches_written: u64,
    /// Durable syncs (`fdatasync`/`fsync`, or synchronous commits) by this instance.
    pub syncs: u64,
    pub compactions: u64,
}

/// Answers whether a COMMIT decision is recorded for a gid (recovery's question).
#[async_trait]
pub trait DecisionSource: Send + Sync {
    /// What this source is, for messages ("decision log /var/lib/wasmtx/decisions-a.log").
    fn describe(&self) -> String;

    /// Whether a COMMIT is recorded for `gid` and its transaction is not known to be
    /// finished. Read the clock for a deadline check *before* calling this.
    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError>;
}

/// A decision source the coordinator records its decisions in.
#[async_trait]
pub trait DecisionStore: DecisionSource {
    /// Records COMMIT for `gid` and returns once it is durable. Refused
    /// ([`DecisionError::NotRecorded`]) if `deadline` has passed, checked right before the
    /// write. Concurrent callers may share one durable write (group commit). Dropping the
    /// future once polled does not withdraw the COMMIT: treat that as in doubt.
    async fn record_commit(&self, gid: &Gid, deadline: SystemTime) -> Result<(), DecisionError>;

    /// Records that phase 2 finished on every participant of `gid`. It may return before the
    /// record is durable (losing it only makes recovery check the transaction again).
    async fn record_done(&self, gid: &Gid) -> Result<(), DecisionError>;

    /// Every COMMIT not yet cancelled by a DONE, and when that was read.
    async fn snapshot(&self) -> Result<Snapshot, DecisionError>;

    /// Makes every DONE recorded before this call durable.
    async fn flush(&self) -> Result<(), DecisionError>;

    /// Counters since open.
    fn stats(&self) -> DecisionStats;
}

/// What a decision table holds for a gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableDecision {
    Commit,
    Abort,
}

/// A decision source that arbitrates: recovery's source for the transactions it decided, and
/// the arbiter for those whose outcome is unknown. Errors: [`DecisionError::Unavailable`]
/// when the database did not answer (worth asking again), [`DecisionError::NotRecorded`]
/// when it refused (a privilege, a statement).
#[async_trait]
pub trait DecisionTable: DecisionSource {
    /// Where the table lives (a participant's name, or the shared decision log), for messages.
    fn participant(&self) -> &str;

    /// The row for `gid`, if any.
    async fn decision(&self, gid: &Gid) -> Result<Option<TableDecision>, DecisionError>;

    /// Records ABORT for `gid` unless a row is there (waiting for a COMMIT still in flight),
    /// and returns what the row says then. Only call it for a transaction that may no
    /// longer commit: its COMMIT was sent and its answer lost, or its deadline has passed.
    async fn abort_unless_committed(&self, gid: &Gid) -> Result<TableDecision, DecisionError>;

    /// Notes that every branch of `gid` is done, so its row can go (in batches).
    fn forget(&self, gid: &Gid);

    /// Deletes the rows of gids starting with `gid_prefix` whose deadline was before
    /// `expired_before` (and, by the database's clock, before now minus `margin`), except
    /// those in `keep`. Returns how many went.
    async fn prune(
        &self,
        gid_prefix: &str,
        expired_before: SystemTime,
        margin: Duration,
        keep: &BTreeSet<Gid>,
    ) -> Result<u64, DecisionError>;
}

/// Milliseconds since the Unix epoch, as decision rows keep deadlines.
pub fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
