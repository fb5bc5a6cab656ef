//! The branch state machine of the server participants (PostgreSQL, MySQL/MariaDB), written
//! once. [`Server`] implements [`ServerParticipant`] and its branches [`ServerBranch`] for any
//! [`ServerProtocol`]; a protocol supplies only what differs between servers: the
//! statements that begin, prepare, commit and roll back a branch, how to run a script's
//! statement (binding parameters, decoding rows), which errors prove a branch is already
//! resolved, and phase 2 from a connection other than the branch's own. (The shape of sqlx's
//! generic `Transaction`, which owns the state while each driver's `TransactionManager`
//! supplies the statements.)
//!
//! A branch is one pool connection and a state:
//!
//! - `Active` (inside the server's transaction): script statements run; one that fails
//!   dooms the branch (`prepare` and `commit_one_phase` then roll back instead), and a lost
//!   connection ends it (the server rolls an unprepared transaction back when its session
//!   ends).
//! - `prepare` → `Prepared`; a connection lost during it → `InDoubt` (a rollback then
//!   resolves it from another connection); any other failure rolls back → `Ended`.
//! - Phase 2 runs on the branch's own connection first. When that fails the connection is
//!   closed (a MariaDB session keeps a prepared xid until it ends), and the branch, like any
//!   later retry, finishes through [`ServerProtocol::finish_prepared_elsewhere`].
//! - A last agent's branch ends with [`ServerBranch::commit_with_decision`]: the COMMIT row
//!   of its decision table and the one-phase commit in one message (`decision_table.rs`).
//!   A lost connection leaves its outcome unknown ([`ServerProtocol::outcome_unknown`]),
//!   never a failure.
//! - A connection is handed back only once the session is out of the transaction; every
//!   other path closes it: a failed `begin`, a failed rollback, a lost or failed phase 2,
//!   and a branch dropped while it holds its connection (the drop guard). Nothing cleans or
//!   tests a connection handed back, so that costs no round trip (`connections.rs`).
//! - `begin` retries once on a fresh connection: an idle one may have been closed by the
//!   server since it was last used.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::{Pool, PoolConnection};

use super::connections::Connections;
use super::sql_common::{
    DriverCause, StatementFailure, TextSql, describe, is_connection_error, statement_error,
};
use super::{
    DbError, ErrorClass, ParticipantError, PrivilegeReport, Resolution, ServerBranch,
    ServerParticipant, StatementError, StatementTimeouts,
};
use crate::decision_store::{DecisionTable, unix_millis};
use crate::dialect::Dialect;
use crate::gid::{BranchId, Gid};
use crate::value::{ResultLimits, RowSet, Value};

/// A connection of protocol `P`'s database.
pub type Connection<P> = <<P as ServerProtocol>::Database as sqlx::Database>::Connection;

/// Which way phase 2 ends a prepared branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Commit,
    Rollback,
}

impl Finish {
    /// `COMMIT` or `ROLLBACK`, as the servers' phase-2 statements spell it.
    pub fn verb(self) -> &'static str {
        match self {
            Finish::Commit => "COMMIT",
            Finish::Rollback => "ROLLBACK",
        }
    }

    /// The action of a phase-2 request from any connection.
    pub fn action(self) -> &'static str {
        match self {
            Finish::Commit => "commit prepared",
            Finish::Rollback => "rollback prepared",
        }
    }
}

/// The constraint that refuses a COMMIT decided at or after the deadline.
pub const IN_TIME_CONSTRAINT: &str = "wasmtx_decisions_commit_in_time";

/// A failed last-agent commit, said plainly when the deadline check refused the row.
fn decision_refused(error: ParticipantError, deadline_ms: i64) -> ParticipantError {
    if !error.message.contains(IN_TIME_CONSTRAINT) {
        return error;
    }
    let mut refused = error;
    refused.message = format!(
        "the COMMIT decision was refused: by the database's clock the transaction's deadline \
         ({deadline_ms} ms since the epoch) had passed; nothing was committed ({})",
        refused.message
    );
    refused
}

/// Runs phase 2 of `branch` on `conn`; an error that [proves the branch
/// resolved](ServerProtocol::proves_resolved) is [`Resolution::AlreadyResolved`].
pub(crate) async fn finish_prepared_on<P: ServerProtocol>(
    conn: &mut Connection<P>,
    branch: &BranchId,
    finish: Finish,
) -> Result<Resolution, sqlx::Error> {
    match P::Database::run(conn, P::finish_prepared_sql(branch, finish)).await {
        Ok(()) => Ok(Resolution::Done),
        Err(e) if P::proves_resolved(&e) => Ok(Resolution::AlreadyResolved),
        Err(e) => Err(e),
    }
}

/// What every server participant has: its name and the connections its branches take
/// (`connections.rs`).
pub struct ServerPool<DB: sqlx::Database> {
    pub name: Box<str>,
    pub connections: Connections<DB>,
}

impl<DB: sqlx::Database> ServerPool<DB> {
    /// An error of this participant.
    pub fn error(&self, action: &'static str, message: impl std::fmt::Display) -> ParticipantError {
        ParticipantError::new(&self.name, action, message)
    }
}

/// What one server supplies to the shared state machine: its statements, its error rules,
/// and the driver-specific halves of running a script's statement. The value holds what the
/// participant learnt of its server at connect; all its branches share it.
pub trait ServerProtocol: Send + Sync + Sized + 'static {
    type Database: TextSql;

    const DIALECT: Dialect;
    /// What a failed statement did to the server's transaction, for the message of a
    /// prepare or commit refused because of it (e.g. `, so PostgreSQL aborted it`).
    const AFTER_FAILED_STATEMENT: &'static str;

    /// How messages name a branch: `branch <gid>.<index>`, `xid '<gid>','<index>'`.
    fn branch_label(branch: &BranchId) -> String;
    /// Starts the branch (text protocol), with the statement and lock bounds.
    fn begin_sql(&self, branch: &BranchId, timeouts: StatementTimeouts) -> String;
    /// Phase 1. It must fail, not silently roll back, in a transaction a statement broke.
    fn prepare_sql(branch: &BranchId) -> String;
    /// One-phase commit of an unprepared branch; it too must fail rather than roll back.
    fn commit_one_phase_sql(branch: &BranchId) -> String;
    /// Phase 2 of a prepared branch.
    fn finish_prepared_sql(branch: &BranchId, finish: Finish) -> String;
    /// Rolls an unprepared branch back: each statement runs on its own, and only the last
    /// one's failure counts (the ones before may fail on a branch already rollback-only).
    fn rollback_open_sql(branch: &BranchId) -> Vec<String>;

    /// The last agent's COMMIT decision row for `branch`'s gid, then the one-phase commit, in
    /// one message; the row's insert fails if the database's clock is past `deadline_ms`
    /// (milliseconds since the Unix epoch), and then nothing after it runs.
    fn commit_with_decision_sql(branch: &BranchId, deadline_ms: i64) -> String;
    /// Records ABORT for `gid` in the decision table unless a row is there; waits for a
    /// COMMIT row still in flight to commit or roll back.
    fn record_abort_sql(gid: &Gid, deadline_ms: i64) -> String;
    /// Creates the decision table.
    const CREATE_DECISION_TABLE: &'static str;
    /// One row if the decision table exists.
    const DECISION_TABLE_EXISTS: &'static str;
    /// The database's clock, in milliseconds since the Unix epoch, as an SQL expression.
    const NOW_MS: &'static str;

    /// Whether this failure of the statement that ends a branch leaves unknown what the
    /// server did (the connection was lost or killed while it ran).
    fn outcome_unknown(err: &sqlx::Error) -> bool {
        is_connection_error(err)
    }
    /// Whether a failed `begin` means the connection (not the request) is unusable, so a
    /// fresh connection should be tried.
    fn is_stale_connection(err: &sqlx::Error) -> bool {
        is_connection_error(err)
    }
    /// Whether this failure of a phase-2 statement ([`finish_prepared_on`]) proves the
    /// branch no longer exists (an earlier request resolved it).
    fn proves_resolved(err: &sqlx::Error) -> bool;

    /// Phase 2 from a connection other than the branch's own: retries and recovery, and a
    /// branch whose connection is gone.
    fn finish_prepared_elsewhere(
        &self,
        server: &ServerPool<Self::Database>,
        branch: &BranchId,
        finish: Finish,
    ) -> impl Future<Output = Result<Resolution, ParticipantError>> + Send;

    /// Prepared branches whose id starts with `gid_prefix` (recovery's scan).
    fn prepared_branches(
        &self,
        server: &ServerPool<Self::Database>,
        gid_prefix: &str,
    ) -> impl Future<Output = Result<Vec<BranchId>, ParticipantError>> + Send;

    /// Whether the pool's role is a superuser ([`super::privilege`]).
    fn privilege_check(
        server: &ServerPool<Self::Database>,
    ) -> impl Future<Output = Result<PrivilegeReport, ParticipantError>> + Send;

    /// Runs a script's statement on `conn` and returns the rows it affected.
    fn execute(
        conn: &mut Connection<Self>,
        sql: &str,
        params: &[Value],
    ) -> impl Future<Output = Result<u64, StatementFailure>> + Send;

    /// Runs a script's statement on `conn` and returns its rows, failing past `limits`.
    fn query(
        conn: &mut Connection<Self>,
        sql: &str,
        params: &[Value],
        limits: ResultLimits,
    ) -> impl Future<Output = Result<RowSet, StatementFailure>> + Send;
}

/// A PostgreSQL or MySQL/MariaDB participant speaking protocol `P`; shared by every
/// transaction of the host.
pub struct Server<P: ServerProtocol> {
    pub(super) shared: Arc<Shared<P>>,
    /// Set when the participant is the last agent.
    pub(super) decision_table: Option<Arc<dyn DecisionTable>>,
}

/// What a participant's branches share with it.
pub(super) struct Shared<P: ServerProtocol> {
    pub(super) server: ServerPool<P::Database>,
    pub(super) protocol: P,
}

impl<P: ServerProtocol> Shared<P> {
    async fn finish_prepared_elsewhere(
        &self,
        branch: &BranchId,
        finish: Finish,
    ) -> Result<Resolution, ParticipantError> {
        self.protocol
            .finish_prepared_elsewhere(&self.server, branch, finish)
            .await
    }

    /// The error for a connection that could not be had or kept at `begin`.
    fn unreachable(&self, err: sqlx::Error) -> ParticipantError {
        self.server
            .error("begin", describe(&err))
            .driver(err)
            .class(ErrorClass::Connection)
            .hint(format!(
                "check that the {} server is running and reachable",
                P::DIALECT.server_name()
            ))
    }
}

impl<P: ServerProtocol> Server<P> {
    pub(crate) fn new(name: &str, pool: Pool<P::Database>, protocol: P) -> Self {
        let server = ServerPool {
            name: name.into(),
            connections: Connections::new(pool),
        };
        Server {
            shared: Arc::new(Shared { server, protocol }),
            decision_table: None,
        }
    }
}

#[async_trait]
impl<P: ServerProtocol> ServerParticipant for Server<P> {
    fn name(&self) -> &str {
        &self.shared.server.name
    }

    fn dialect(&self) -> Dialect {
        P::DIALECT
    }

    async fn begin(
        &self,
        branch: &BranchId,
        timeouts: StatementTimeouts,
    ) -> Result<Box<dyn ServerBranch>, ParticipantError> {
        let shared = &self.shared;
        let begin = shared.protocol.begin_sql(branch, timeouts);
        let mut last_error = None;
        // One retry: an idle connection may have been closed by the server (restart, idle
        // timeout) since it was last used.
        for _ in 0..2 {
            let mut conn = shared
                .server
                .connections
                .acquire()
                .await
                .map_err(|e| shared.unreachable(e))?;
            match P::Database::run(&mut conn, begin.clone()).await {
                Ok(()) => {
                    return Ok(Box::new(Branch {
                        shared: shared.clone(),
                        label: P::branch_label(branch),
                        id: branch.clone(),
                        conn: Some(conn),
                        state: State::Active,
                        failed: false,
                    }));
                }
                Err(e) if P::is_stale_connection(&e) => {
                    // Broken, or (never expected) left inside a transaction: not reusable;
                    // the other idle ones most likely died with it.
                    conn.close_on_drop();
                    shared.server.connections.discard_idle();
                    last_error = Some(e);
                }
                Err(e) => {
                    // Part of the message may have run (PostgreSQL's BEGIN before a failed
                    // SET): not handed back.
                    conn.close_on_drop();
                    let message = format!("{}: {}", P::branch_label(branch), describe(&e));
                    return Err(shared.server.error("begin", message).driver(e));
                }
            }
        }
        Err(shared.unreachable(last_error.expect("both tries failed")))
    }

    async fn prepared_branches(&self, gid_prefix: &str) -> Result<Vec<BranchId>, ParticipantError> {
        let shared = &self.shared;
        shared
            .protocol
            .prepared_branches(&shared.server, gid_prefix)
            .await
    }

    async fn commit_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError> {
        self.shared
            .finish_prepared_elsewhere(branch, Finish::Commit)
            .await
    }

    async fn rollback_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError> {
        self.shared
            .finish_prepared_elsewhere(branch, Finish::Rollback)
            .await
    }

    async fn privilege_check(&self) -> Result<PrivilegeReport, ParticipantError> {
        P::privilege_check(&self.shared.server).await
    }

    fn decision_table(&self) -> Option<Arc<dyn DecisionTable>> {
        self.decision_table.clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside the server's transaction (`BEGIN`, `XA START`).
    Active,
    /// Phase 1 succeeded; the branch's connection, while it has one, finishes it.
    Prepared,
    /// The connection was lost during phase 1: it may be prepared.
    InDoubt,
    /// Committed or rolled back, or never to commit (an unprepared branch whose connection
    /// was lost: the server rolled it back).
    Ended,
}

/// One branch of a global transaction on a server participant.
struct Branch<P: ServerProtocol> {
    shared: Arc<Shared<P>>,
    id: BranchId,
    /// [`ServerProtocol::branch_label`] of `id`, for messages.
    label: String,
    /// The branch's connection while it has one; see the module doc for when it goes back
    /// to the pool.
    conn: Option<PoolConnection<P::Database>>,
    state: State,
    /// A statement failed: the global transaction is doomed and will not be prepared.
    failed: bool,
}

/// The drop guard: a branch still holding its connection is inside the transaction (or
/// prepared, or in the middle of a statement), so the connection is closed, never pooled.
impl<P: ServerProtocol> Drop for Branch<P> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

impl<P: ServerProtocol> Branch<P> {
    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> ParticipantError {
        self.shared
            .server
            .error(action, format!("{}: {message}", self.label))
    }

    fn active_conn(&mut self) -> Result<&mut Connection<P>, StatementError> {
        match (self.state, self.conn.as_mut()) {
            (State::Active, Some(conn)) => Ok(&mut **conn),
            _ => Err(StatementError::Database(DbError {
                code: None,
                message: "the transaction on this participant is no longer open".into(),
            })),
        }
    }

    /// The error a script sees for a failed statement. A driver failure dooms the
    /// transaction, and a broken connection ends the branch (the server rolls it back).
    fn statement_failed(&mut self, failure: StatementFailure) -> StatementError {
        match failure {
            // Undecodable values and limits leave the transaction intact (the coordinator
            // still dooms it); the rest of an abandoned result is drained on next use.
            StatementFailure::Refused(err) => err,
            StatementFailure::Driver(err) => {
                self.failed = true;
                if is_connection_error(&err) {
                    if let Some(mut conn) = self.conn.take() {
                        conn.close_on_drop();
                    }
                    self.state = State::Ended;
                }
                statement_error(&err)
            }
        }
    }

    /// The connection, checked to be in a healthy open transaction, for `prepare` or
    /// `commit_one_phase`; a doomed branch is rolled back instead.
    async fn conn_to_end(
        &mut self,
        action: &'static str,
    ) -> Result<&mut Connection<P>, ParticipantError> {
        if self.state != State::Active || self.conn.is_none() {
            return Err(self.error(action, "the transaction is no longer open"));
        }
        if self.failed {
            self.rollback_open().await;
            return Err(self.error(
                action,
                format!(
                    "a statement failed in this transaction{}; rolled back instead",
                    P::AFTER_FAILED_STATEMENT
                ),
            ));
        }
        Ok(&mut **self.conn.as_mut().expect("checked above"))
    }

    /// Runs `sql`, which ends the open transaction: phase 1 (the branch is then `done`) or a
    /// one-phase commit. A lost connection leaves the branch `lost` (`whether it <what> is
    /// unknown`); any other failure means nothing was prepared or committed, and the branch
    /// is rolled back.
    async fn end_open(
        &mut self,
        action: &'static str,
        sql: String,
        done: State,
        lost: State,
        what: &str,
    ) -> Result<(), ParticipantError> {
        let conn = self.conn_to_end(action).await?;
        match P::Database::run(conn, sql).await {
            Ok(()) => {
                self.state = done;
                if done == State::Ended {
                    self.release();
                }
                Ok(())
            }
            Err(e) if P::outcome_unknown(&e) => {
                self.state = lost;
                self.close().await;
                let message = format!("{}; whether it {what} is unknown", describe(&e));
                Err(self.error(action, message).driver(e))
            }
            Err(e) => {
                self.rollback_open().await;
                Err(self.error(action, describe(&e)).driver(e))
            }
        }
    }

    /// Hands the connection back: only once the session is out of the transaction.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.server.connections.hand_back(conn);
        }
    }

    /// Closes the connection: the server then rolls back an unprepared branch, or keeps a
    /// prepared one (and lets other sessions finish it).
    async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Rolls back an unprepared branch. If that fails too, closes the connection, which rolls
    /// the branch back.
    async fn rollback_open(&mut self) -> Resolution {
        self.state = State::Ended;
        let Some(conn) = self.conn.as_mut() else {
            return Resolution::Done;
        };
        let mut statements = P::rollback_open_sql(&self.id);
        let last = statements.pop().expect("a rollback statement");
        for sql in statements {
            let _ = P::Database::run(conn, sql).await;
        }
        match P::Database::run(conn, last).await {
            Ok(()) => self.release(),
            Err(e) => {
                tracing::warn!(participant = %self.shared.server.name, branch = %self.label, error = %e,
                    "rollback failed; closing the connection, which rolls the branch back");
                self.close().await;
            }
        }
        Resolution::Done
    }

    /// Phase 2 on the branch's own connection. On failure the connection is closed, so the
    /// branch can be finished from another one; without one, the branch finishes through
    /// [`ServerProtocol::finish_prepared_elsewhere`].
    async fn finish_prepared(
        &mut self,
        finish: Finish,
        action: &'static str,
    ) -> Result<Resolution, ParticipantError> {
        let Some(conn) = self.conn.as_mut() else {
            let resolution = self
                .shared
                .finish_prepared_elsewhere(&self.id, finish)
                .await?;
            self.state = State::Ended;
            return Ok(resolution);
        };
        let resolution = match finish_prepared_on::<P>(conn, &self.id, finish).await {
            Ok(resolution) => resolution,
            Err(e) => {
                self.close().await;
                let message = format!(
                    "{}; the branch's connection was closed, so it can be finished from another one",
                    describe(&e)
                );
                return Err(self.error(action, message).driver(e));
            }
        };
        self.state = State::Ended;
        self.release();
        Ok(resolution)
    }
}

#[async_trait]
impl<P: ServerProtocol> ServerBranch for Branch<P> {
    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StatementError> {
        let conn = self.active_conn()?;
        match P::execute(conn, sql, params).await {
            Ok(affected) => Ok(affected),
            Err(failure) => Err(self.statement_failed(failure)),
        }
    }

    async fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: ResultLimits,
    ) -> Result<RowSet, StatementError> {
        let conn = self.active_conn()?;
        match P::query(conn, sql, params, limits).await {
            Ok(rows) => Ok(rows),
            Err(failure) => Err(self.statement_failed(failure)),
        }
    }

    async fn prepare(&mut self) -> Result<(), ParticipantError> {
        let sql = P::prepare_sql(&self.id);
        // Lost during it, the outcome is unknown: a rollback resolves it from another
        // connection ("does not exist" then means it never prepared).
        self.end_open("prepare", sql, State::Prepared, State::InDoubt, "prepared")
            .await
    }

    async fn commit_one_phase(&mut self) -> Result<(), ParticipantError> {
        let sql = P::commit_one_phase_sql(&self.id);
        self.end_open("commit", sql, State::Ended, State::Ended, "committed")
            .await
    }

    async fn commit_with_decision(&mut self) -> Result<(), ParticipantError> {
        let deadline_ms = unix_millis(self.id.gid.deadline());
        let sql = P::commit_with_decision_sql(&self.id, deadline_ms);
        self.end_open("commit", sql, State::Ended, State::Ended, "committed")
            .await
            .map_err(|e| decision_refused(e, deadline_ms))
    }

    async fn commit_prepared(&mut self) -> Result<Resolution, ParticipantError> {
        if self.state != State::Prepared {
            return Err(self
                .error("commit prepared", "the branch is not prepared")
                .class(ErrorClass::Protocol));
        }
        self.finish_prepared(Finish::Commit, "commit prepared")
            .await
    }

    async fn rollback(&mut self) -> Result<Resolution, ParticipantError> {
        match self.state {
            State::Active => Ok(self.rollback_open().await),
            State::Prepared | State::InDoubt => {
                self.finish_prepared(Finish::Rollback, "rollback").await
            }
            State::Ended => Ok(Resolution::AlreadyResolved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_decision_says_the_deadline_passed() {
        let refused = ParticipantError::new(
            "a",
            "commit",
            "[23514] new row violates check constraint \"wasmtx_decisions_commit_in_time\"",
        );
        let message = decision_refused(refused, 5).to_string();
        assert!(message.contains("deadline"), "{message}");
        assert!(message.contains("nothing was committed"), "{message}");
        let other = ParticipantError::new("a", "commit", "[42501] permission denied");
        assert_eq!(
            decision_refused(other.clone(), 5).to_string(),
            other.to_string()
        );
    }
}
