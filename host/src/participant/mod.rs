//! Participants: the databases a global transaction spans.
//!
//! A participant is named in configuration (`NAME=URL`). PostgreSQL and MySQL/MariaDB
//! participants take part in two-phase commit through the [`ServerParticipant`] / [`ServerBranch`]
//! traits (one file per server: `postgres.rs`, `mysql.rs`). SQLite participants of one
//! transaction share one connection with every file attached ([`sqlite::SqliteGroup`]), so
//! one COMMIT is atomic across them; when the group commits last, its decision row
//! ([`sqlite_decisions`]) is written inside that commit. Database differences live in these files; the
//! coordinator sees only the traits.

pub mod mysql;
pub mod postgres;
mod slot;
mod spec;
pub mod sqlite;
pub mod sqlite_decisions;
mod sqlite_guard;
pub mod sqlite_qualify;
mod xa_common;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use self::slot::ParticipantSlot;
pub use self::spec::{Location, ParticipantSpec, SpecError};
use crate::dialect::Dialect;
use crate::gid::BranchId;
use crate::value::{ResultLimits, RowSet, Value};

/// A failure the database reported for a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// SQLSTATE or the server's error number, when there is one.
    pub code: Option<String>,
    pub message: String,
}

impl DbError {
    pub fn from_sqlx(err: &sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) => DbError {
                code: db.code().map(|c| c.into_owned()),
                message: db.message().to_owned(),
            },
            other => DbError {
                code: None,
                message: other.to_string(),
            },
        }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "[{code}] {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why one statement of a script did not run to success. Mirrors the WIT `error` variant.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum StatementError {
    /// Refused before reaching the database.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The database failed the statement; the global transaction is doomed.
    #[error("database error {0}")]
    Database(DbError),
    /// A statement, row, byte or time limit was reached.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// A parameter the participant cannot take.
    #[error("bad parameter: {0}")]
    BadParameter(String),
}

/// A step of the protocol on one participant failed (connect, begin, prepare, commit,
/// rollback, recovery scan).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("participant `{participant}`: {action} failed: {message}")]
pub struct ParticipantError {
    pub participant: String,
    pub action: &'static str,
    pub message: String,
}

impl ParticipantError {
    pub fn new(participant: &str, action: &'static str, message: impl std::fmt::Display) -> Self {
        ParticipantError {
            participant: participant.to_owned(),
            action,
            message: message.to_string(),
        }
    }
}

/// How a phase-2 request found the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// This request committed or rolled the branch back.
    Done,
    /// The branch no longer exists: an earlier request (or recovery) already resolved it.
    AlreadyResolved,
}

/// Per-transaction time bounds a branch applies inside the database, so a script blocked in
/// SQL is stopped by the database too.
#[derive(Debug, Clone, Copy)]
pub struct StatementTimeouts {
    /// Longest any one statement may run.
    pub statement: Duration,
    /// Longest a statement may wait for a lock.
    pub lock: Duration,
}

/// A PostgreSQL or MySQL/MariaDB participant: shared by every transaction of the host
/// (it holds the connection pool), it opens branches and resolves prepared ones.
#[async_trait]
pub trait ServerParticipant: Send + Sync {
    fn name(&self) -> &str;
    fn dialect(&self) -> Dialect;

    /// Opens this participant's branch of a global transaction.
    async fn begin(
        &self,
        branch: &BranchId,
        timeouts: StatementTimeouts,
    ) -> Result<Box<dyn ServerBranch>, ParticipantError>;

    /// Prepared branches whose id starts with `gid_prefix` (recovery's scan).
    async fn prepared_branches(&self, gid_prefix: &str) -> Result<Vec<BranchId>, ParticipantError>;

    /// Commits a prepared branch from any connection (phase-2 retry and recovery).
    async fn commit_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError>;

    /// Rolls back a prepared branch from any connection (recovery).
    async fn rollback_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError>;
}

/// One open branch of a global transaction on a PostgreSQL or MySQL participant; owns its
/// connection until the branch is resolved.
#[async_trait]
pub trait ServerBranch: Send {
    /// Runs one statement and returns the rows it affected.
    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StatementError>;

    /// Runs one statement and returns its rows, failing past `limits`.
    async fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: ResultLimits,
    ) -> Result<RowSet, StatementError>;

    /// Phase 1: makes the branch durable and ready to commit.
    async fn prepare(&mut self) -> Result<(), ParticipantError>;

    /// Commits an unprepared branch in one phase (the transaction has one participant).
    async fn commit_one_phase(&mut self) -> Result<(), ParticipantError>;

    /// Phase 2 on the branch's own connection.
    async fn commit_prepared(&mut self) -> Result<Resolution, ParticipantError>;

    /// Rolls the branch back, prepared or not.
    async fn rollback(&mut self) -> Result<Resolution, ParticipantError>;
}
