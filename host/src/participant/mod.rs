//! Participants: the databases a global transaction spans.
//!
//! A participant is named in configuration (`NAME=URL`). PostgreSQL and MySQL/MariaDB
//! participants take part in two-phase commit through the [`ServerParticipant`] /
//! [`ServerBranch`] traits: one state machine (`server_branch.rs`) drives both, and each
//! server supplies its statements and error rules (`postgres.rs`, `mysql.rs`). The sqlx
//! helpers all three drivers share are in `sql_common.rs`. SQLite participants of one
//! transaction share one connection with every file attached ([`sqlite::SqliteGroup`]), so
//! one COMMIT is atomic across them; when the group commits last, its decision row
//! ([`sqlite_decisions`]) is written inside that commit. A server participant configured as
//! the *last agent* plays the same part for servers: it commits last, in one phase, with the
//! decision row in its own database ([`decision_table`]). [`ParticipantSlot`] turns a spec
//! into one of these. Database differences live in these files; the coordinator sees only
//! the traits.

mod connections;
pub mod decision_table;
mod mysql;
mod postgres;
mod privilege;
mod server_branch;
mod slot;
mod spec;
mod sql_common;
pub mod sqlite;
pub mod sqlite_decisions;
mod sqlite_guard;
pub mod sqlite_qualify;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use self::mysql::MysqlParticipant;
pub use self::postgres::PostgresParticipant;
pub use self::privilege::{PrivilegeReport, superuser_warnings};
pub use self::slot::ParticipantSlot;
pub use self::spec::{Location, ParticipantSpec, SpecError};
use crate::decision_store::DecisionTable;
use crate::dialect::Dialect;

/// The server participants' protocol statements and XA ids, for the developer benchmark's
/// variants on bare connections.
#[cfg(feature = "bench-internals")]
pub mod protocol {
    pub use super::mysql::{MysqlProtocol, xid};
    pub use super::postgres::PostgresProtocol;
    pub use super::server_branch::{Finish, ServerProtocol};
}
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

/// What kind of failure a [`ParticipantError`] is, so a caller can decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The connection failed or could not be made (I/O, TLS, a terminated session, a pool
    /// that timed out, a branch still held by a session that has not ended yet): worth
    /// retrying.
    Connection,
    /// The database refused a statement (a constraint, a deadlock, a failed PREPARE).
    Statement,
    /// Wrong settings or privileges: a bad URL, a refused login, `max_prepared_transactions
    /// = 0`, a missing privilege, an unsupported server, an unusable SQLite file. Not worth
    /// retrying until someone changes the configuration.
    Configuration,
    /// A branch was not in the state the protocol expected (not open, not prepared, doomed
    /// by an earlier failed statement).
    Protocol,
}

/// A step of the protocol on one participant failed (connect, begin, prepare, commit,
/// rollback, recovery scan).
///
/// `Display` prints `participant `<name>`: <action> failed: <message>`, then `; <hint>`
/// when there is advice on what to do. The driver error that caused it, if any, is the
/// [`source`](std::error::Error::source).
#[derive(Debug, Clone)]
pub struct ParticipantError {
    pub participant: String,
    pub action: &'static str,
    pub class: ErrorClass,
    /// What happened.
    pub message: String,
    /// What to do about it, for the user (e.g. a setting to change).
    pub hint: Option<String>,
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ParticipantError {
    /// An error of class [`ErrorClass::Protocol`] with no hint and no source; refine it with
    /// the builder methods.
    pub fn new(participant: &str, action: &'static str, message: impl std::fmt::Display) -> Self {
        ParticipantError {
            participant: participant.to_owned(),
            action,
            class: ErrorClass::Protocol,
            message: message.to_string(),
            hint: None,
            source: None,
        }
    }

    pub fn class(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps `source` as the cause. (Named apart from [`std::error::Error::source`], which
    /// an inherent `source` would shadow.)
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Whether trying the same step again may succeed ([`ErrorClass::Connection`]).
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Connection
    }
}

impl ParticipantError {
    /// What happened, without the hint: for callers that show the hint apart.
    pub fn what_happened(&self) -> String {
        format!(
            "participant `{}`: {} failed: {}",
            self.participant, self.action, self.message
        )
    }
}

impl std::fmt::Display for ParticipantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what_happened())?;
        match &self.hint {
            Some(hint) => write!(f, "; {hint}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ParticipantError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
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

    /// Whether this participant connects as a superuser. A participant that cannot tell
    /// says so rather than pass as safe.
    async fn privilege_check(&self) -> Result<PrivilegeReport, ParticipantError> {
        Err(ParticipantError::new(
            self.name(),
            "check privileges",
            "this participant cannot report its privileges",
        )
        .class(ErrorClass::Configuration))
    }

    /// The decision table, when this participant is the last agent.
    fn decision_table(&self) -> Option<Arc<dyn DecisionTable>> {
        None
    }
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

    /// The last agent's commit: the COMMIT decision row in its decision table and the
    /// one-phase commit, together, refused past the deadline by the database's clock. An
    /// error of class [`ErrorClass::Connection`] means the outcome is unknown.
    async fn commit_with_decision(&mut self) -> Result<(), ParticipantError> {
        Err(ParticipantError::new(
            "?",
            "commit",
            "this participant is not a last agent",
        ))
    }

    /// Phase 2 on the branch's own connection.
    async fn commit_prepared(&mut self) -> Result<Resolution, ParticipantError>;

    /// Rolls the branch back, prepared or not.
    async fn rollback(&mut self) -> Result<Resolution, ParticipantError>;
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::{ErrorClass, ParticipantError};

    #[test]
    fn participant_error_prints_the_hint_after_the_message_and_keeps_its_source() {
        let plain = ParticipantError::new("a", "prepare", "the branch is not prepared");
        assert_eq!(
            plain.to_string(),
            "participant `a`: prepare failed: the branch is not prepared"
        );
        assert_eq!(plain.class, ErrorClass::Protocol);
        assert!(!plain.is_retryable());
        assert!(plain.source().is_none());

        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let error = ParticipantError::new("b", "begin", "reset")
            .class(ErrorClass::Connection)
            .hint("check that the server is running")
            .caused_by(io);
        assert_eq!(
            error.to_string(),
            "participant `b`: begin failed: reset; check that the server is running"
        );
        assert!(error.is_retryable());
        assert_eq!(error.source().unwrap().to_string(), "reset");
        assert_eq!(error.clone().to_string(), error.to_string());
    }
}
