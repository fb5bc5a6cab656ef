//! MySQL / MariaDB participant: `XA START` … `XA END` + `XA PREPARE` … `XA COMMIT` /
//! `XA ROLLBACK`, with xid gtrid `<gid>` and bqual `<participant index>`.
//!
//! - XA and SET statements go over the text protocol (several per round trip); script
//!   statements are prepared statements with bound parameters.
//! - After `XA PREPARE` a MariaDB session keeps the xid: other sessions get `XAER_NOTA` for it
//!   until that session ends. So a branch does phase 2 on its own connection; when that fails
//!   it closes the connection (releasing the xid) and the coordinator retries through
//!   [`ServerParticipant::commit_prepared`], which opens a fresh connection outside the pool.
//!   There, `XAER_NOTA` counts as "already resolved" only if `XA RECOVER` no longer lists the
//!   xid; a listed one is still held by a live session and the request fails, to be retried.
//! - A connection goes back to the pool only after a successful `XA COMMIT` / `XA ROLLBACK`;
//!   in any other case (including a branch dropped half way) it is closed, and the server
//!   rolls back an unprepared branch or keeps a prepared one for recovery.
//! - The server flavour is read once at connect (`SELECT VERSION()`): MariaDB ≥ 10.5 bounds
//!   statements with `max_statement_time` (seconds, all statements); MySQL ≥ 8.0 with
//!   `max_execution_time` (milliseconds, SELECT only). Older servers are refused: before
//!   MariaDB 10.5 / MySQL 5.7.7 a prepared branch dies with its connection.
//!
//! Values: `TINYINT(1)`/`BOOLEAN` columns come back as `Int64` (MySQL has no boolean type;
//! they hold -128..127). `BIGINT UNSIGNED` and `BIT` values above `i64::MAX` come back as
//! `Decimal` text. `TIME` values outside 00:00:00..23:59:59.999999 (MySQL `TIME` is an
//! interval) come back as `Text` like `-838:59:59`. `TIMESTAMP` columns come back as
//! `Timestamp` (an instant): every connection runs with `time_zone = '+00:00'` (overriding a
//! `timezone` URL option), so the server converts them to and from UTC. `DATETIME` is
//! `DateTime`. `JSON` (MySQL) is `Json`; MariaDB's JSON is `LONGTEXT` and comes back as `Text`.
//! `Uuid` and `Json` parameters are sent as text; `Decimal` as DECIMAL.
//! sqlx's `PIPES_AS_CONCAT` session mode is switched off, so `||` means what the server's
//! own SQL mode says.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{
    MySql, MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool,
    MySqlPoolOptions, MySqlRow, MySqlTypeInfo, MySqlValueRef,
};
use sqlx::pool::PoolConnection;
use sqlx::{
    Arguments, AssertSqlSafe, Connection, Decode, Either, Encode, Executor, Row, SqlSafeStr,
    Statement, Type, TypeInfo, ValueRef,
};

use super::spec::redact;
use super::xa_common::{
    RowsError, collect_rows, columns_of, connect_error, decode_error, describe,
    is_connection_error, millis_at_least_one, scrub, statement_error, unsupported_column,
};
use super::{
    DbError, ParticipantError, Resolution, StatementError, StatementTimeouts, ServerBranch,
    ServerParticipant,
};
use crate::dialect::Dialect;
use crate::gid::{BranchId, Gid};
use crate::value::{ResultLimits, RowSet, Value};

/// `XAER_NOTA`: unknown xid.
const XAER_NOTA: u16 = 1397;
/// `XAER_RMFAIL`: the command cannot run in the xid's current state.
const XAER_RMFAIL: u16 = 1399;
/// `XAER_OUTSIDE`: work was done outside the global transaction.
const XAER_OUTSIDE: u16 = 1400;

/// Which server speaks the MySQL protocol; decides the statement-timeout variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    MariaDb,
    MySql,
}

/// A MySQL or MariaDB server taking part in two-phase commit through XA.
pub struct MysqlParticipant {
    resolver: Arc<Resolver>,
    pool: MySqlPool,
    flavour: Flavour,
}

/// Finishes prepared branches on connections of their own (never pooled): phase-2 retries,
/// recovery, and branches whose connection was lost.
struct Resolver {
    name: Arc<str>,
    options: MySqlConnectOptions,
    redacted_url: String,
}

impl MysqlParticipant {
    /// Checks the server (flavour and version, `XA RECOVER` permission) over one connection,
    /// then opens a pool of at most `max_connections` to `url`.
    pub async fn connect(
        name: &str,
        url: &str,
        max_connections: u32,
    ) -> Result<Self, ParticipantError> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| connect_error(name, "MySQL", url, &e))?
            .timezone(Some(String::from("+00:00")))
            .pipes_as_concat(false);
        let fail = |message: String| ParticipantError::new(name, "connect", message);
        // One direct connection first: a pool would retry a refused connection until its
        // acquire timeout and then report only that it timed out.
        let mut probe = MySqlConnection::connect_with(&options)
            .await
            .map_err(|e| connect_error(name, "MySQL", url, &e))?;
        let checked = check_server(&mut probe).await;
        let _ = probe.close().await;
        let flavour = checked.map_err(|message| {
            fail(format!(
                "the server at {}: {}",
                redact(url),
                scrub(message, url)
            ))
        })?;
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections.max(1))
            // A connection that died while idle fails at XA START, which `begin` retries once
            // on a fresh connection; a ping on every acquire would cost a round trip per branch.
            .test_before_acquire(false)
            .connect_lazy_with(options.clone());
        let resolver = Resolver {
            name: name.into(),
            options,
            redacted_url: redact(url),
        };
        Ok(MysqlParticipant {
            resolver: Arc::new(resolver),
            pool,
            flavour,
        })
    }

    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> ParticipantError {
        ParticipantError::new(&self.resolver.name, action, message)
    }
}

impl Resolver {
    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> ParticipantError {
        ParticipantError::new(&self.name, action, message)
    }

    /// `XA COMMIT` or `XA ROLLBACK` of a prepared branch on a new connection of its own.
    async fn finish_prepared(
        &self,
        verb: &'static str,
        branch: &BranchId,
    ) -> Result<Resolution, ParticipantError> {
        let action = if verb == "COMMIT" {
            "commit prepared"
        } else {
            "rollback prepared"
        };
        let xid = xid(branch);
        let mut conn = MySqlConnection::connect_with(&self.options)
            .await
            .map_err(|e| {
                self.error(
                    action,
                    format!(
                        "xid {xid}: cannot connect to {}: {}",
                        self.redacted_url,
                        describe(&e)
                    ),
                )
            })?;
        let outcome = match conn
            .execute(AssertSqlSafe(format!("XA {verb} {xid}")))
            .await
        {
            Ok(_) => Ok(Resolution::Done),
            Err(e) if mysql_error_number(&e) == Some(XAER_NOTA) => {
                // Unknown to this session: resolved, or still held by the session that
                // prepared it (MariaDB keeps it there until that session ends).
                match list_prepared(&mut conn).await {
                    Ok(listed)
                        if listed.iter().any(|(g, b)| {
                            *g == branch.gid.as_str() && *b == branch.index.to_string()
                        }) =>
                    {
                        Err(format!(
                            "xid {xid} is prepared but still held by another session (the one that prepared it, until it disconnects); retry later"
                        ))
                    }
                    Ok(_) => Ok(Resolution::AlreadyResolved),
                    Err(e) => Err(format!(
                        "xid {xid}: XA {verb} answered XAER_NOTA, and XA RECOVER, which would tell whether it is resolved, failed: {}",
                        describe(&e)
                    )),
                }
            }
            Err(e) => Err(format!("xid {xid}: {}", describe(&e))),
        };
        let _ = conn.close().await;
        outcome.map_err(|message| self.error(action, message))
    }
}

/// Checks flavour, version and the `XA RECOVER` permission.
async fn check_server(conn: &mut MySqlConnection) -> Result<Flavour, String> {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| describe(&e))?;
    let (flavour, minimum) = if version.to_ascii_lowercase().contains("mariadb") {
        (Flavour::MariaDb, (10, 5))
    } else {
        (Flavour::MySql, (8, 0))
    };
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if found < minimum {
        let server = if flavour == Flavour::MariaDb {
            "MariaDB"
        } else {
            "MySQL"
        };
        return Err(format!(
            "runs {server} {version}; wasmtx needs {server} {}.{} or later (older servers roll a prepared XA branch back when its connection drops)",
            minimum.0, minimum.1
        ));
    }
    if let Err(e) = list_prepared(conn).await {
        return Err(format!(
            "XA RECOVER failed ({}); recovery needs it: on MySQL 8 grant the XA_RECOVER_ADMIN privilege to this user",
            describe(&e)
        ));
    }
    Ok(flavour)
}

/// The server's error number of a MySQL error.
fn mysql_error_number(err: &sqlx::Error) -> Option<u16> {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// `'<gid>','<index>'`: both parts come from validated ids ([A-Za-z0-9.-] and digits).
fn xid(branch: &BranchId) -> String {
    format!("'{}','{}'", branch.gid, branch.index)
}

/// `XA RECOVER` as (gtrid, bqual) pairs of the default format (1), in text.
async fn list_prepared(conn: &mut MySqlConnection) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = conn.fetch_all("XA RECOVER").await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let format: i64 = row.try_get_unchecked(0)?;
        let gtrid_len: i64 = row.try_get_unchecked(1)?;
        let bqual_len: i64 = row.try_get_unchecked(2)?;
        let data: Vec<u8> = row.try_get_unchecked(3)?;
        let (Ok(g), Ok(b)) = (usize::try_from(gtrid_len), usize::try_from(bqual_len)) else {
            continue;
        };
        if format != 1 || data.len() != g + b {
            continue;
        }
        let (Ok(gtrid), Ok(bqual)) = (
            std::str::from_utf8(&data[..g]),
            std::str::from_utf8(&data[g..]),
        ) else {
            continue;
        };
        out.push((gtrid.to_owned(), bqual.to_owned()));
    }
    Ok(out)
}

#[async_trait]
impl ServerParticipant for MysqlParticipant {
    fn name(&self) -> &str {
        &self.resolver.name
    }

    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }

    async fn begin(
        &self,
        branch: &BranchId,
        timeouts: StatementTimeouts,
    ) -> Result<Box<dyn ServerBranch>, ParticipantError> {
        let lock_seconds = millis_at_least_one(timeouts.lock).div_ceil(1000);
        let statement_ms = millis_at_least_one(timeouts.statement);
        let statement_limit = match self.flavour {
            Flavour::MariaDb => format!(
                "max_statement_time = {}.{:03}",
                statement_ms / 1000,
                statement_ms % 1000
            ),
            Flavour::MySql => format!("max_execution_time = {statement_ms}"),
        };
        let xid = xid(branch);
        let begin = format!(
            "SET SESSION innodb_lock_wait_timeout = {lock_seconds}, SESSION {statement_limit}; XA START {xid}"
        );
        let mut last_error = String::new();
        // One retry: an idle connection may have been closed by the server (restart,
        // wait_timeout) since it was last used.
        for _ in 0..2 {
            let mut conn = self.pool.acquire().await.map_err(|e| {
                self.error(
                    "begin",
                    format!(
                        "{}; check that the MySQL server is running and reachable",
                        describe(&e)
                    ),
                )
            })?;
            match conn.execute(AssertSqlSafe(begin.as_str())).await {
                Ok(_) => {
                    return Ok(Box::new(MysqlBranch {
                        resolver: self.resolver.clone(),
                        branch: branch.clone(),
                        xid,
                        conn: Some(conn),
                        state: State::Active,
                        failed: false,
                    }));
                }
                Err(e)
                    if is_connection_error(&e)
                        || matches!(mysql_error_number(&e), Some(XAER_RMFAIL | XAER_OUTSIDE)) =>
                {
                    // Broken, or (never expected) left inside a transaction: not reusable.
                    conn.close_on_drop();
                    last_error = describe(&e);
                }
                Err(e) => {
                    return Err(self.error("begin", format!("XA START {xid}: {}", describe(&e))));
                }
            }
        }
        Err(self.error(
            "begin",
            format!("{last_error}; check that the MySQL server is running and reachable"),
        ))
    }

    async fn prepared_branches(&self, gid_prefix: &str) -> Result<Vec<BranchId>, ParticipantError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error("recovery scan", describe(&e)))?;
        let listed = list_prepared(&mut conn)
            .await
            .map_err(|e| self.error("recovery scan", describe(&e)))?;
        Ok(listed
            .into_iter()
            .filter(|(gtrid, _)| gtrid.starts_with(gid_prefix))
            .filter_map(|(gtrid, bqual)| {
                let index: u32 = bqual
                    .parse()
                    .ok()
                    .filter(|i: &u32| i.to_string() == bqual)?;
                Some(Gid::parse(&gtrid).ok()?.branch(index))
            })
            .collect())
    }

    async fn commit_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError> {
        self.resolver.finish_prepared("COMMIT", branch).await
    }

    async fn rollback_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError> {
        self.resolver.finish_prepared("ROLLBACK", branch).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between `XA START` and `XA END`.
    Active,
    /// `XA PREPARE` succeeded; only this connection can finish it while it lives (without
    /// one, the branch finishes it through the [`Resolver`]).
    Prepared,
    /// The connection was lost during `XA END` / `XA PREPARE`: it may be prepared.
    InDoubt,
    /// Committed or rolled back, or never to commit (an unprepared branch whose connection
    /// was lost: the server rolled it back).
    Ended,
}

/// One branch: a pool connection inside `XA START` until phase 2 ends on it.
struct MysqlBranch {
    resolver: Arc<Resolver>,
    branch: BranchId,
    /// `'<gtrid>','<bqual>'`, formatted from a validated branch id.
    xid: String,
    /// Returned to the pool only when the session is out of XA; closed otherwise.
    conn: Option<PoolConnection<MySql>>,
    state: State,
    /// A statement failed; the global transaction is doomed and will not be prepared.
    failed: bool,
}

impl Drop for MysqlBranch {
    fn drop(&mut self) {
        // Still holding the connection means it is inside XA: never give it back to the pool.
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

impl MysqlBranch {
    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> ParticipantError {
        ParticipantError::new(
            &self.resolver.name,
            action,
            format!("xid {}: {message}", self.xid),
        )
    }

    fn active_conn(&mut self) -> Result<&mut PoolConnection<MySql>, StatementError> {
        match (self.state, self.conn.as_mut()) {
            (State::Active, Some(conn)) => Ok(conn),
            _ => Err(StatementError::Database(DbError {
                code: None,
                message: "the transaction on this participant is no longer open".into(),
            })),
        }
    }

    /// Back to the pool: only after the session left XA.
    fn release_clean(&mut self) {
        self.conn = None;
    }

    /// Closes the connection (the server then rolls back an unprepared branch, or keeps a
    /// prepared one and lets other sessions finish it).
    async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    fn statement_failed(&mut self, err: &sqlx::Error) -> StatementError {
        self.failed = true;
        if is_connection_error(err) {
            if let Some(mut conn) = self.conn.take() {
                conn.close_on_drop();
            }
            self.state = State::Ended;
        }
        statement_error(err)
    }

    /// Prepares (cached per connection) and checks the parameter count, so a mismatch is a
    /// bad-parameter error rather than a driver protocol error.
    async fn statement(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<sqlx::mysql::MySqlStatement, StatementError> {
        let conn = self.active_conn()?;
        let statement = match conn.prepare(AssertSqlSafe(sql).into_sql_str()).await {
            Ok(statement) => statement,
            Err(e) => return Err(self.statement_failed(&e)),
        };
        if let Some(Either::Right(expected)) = statement.parameters()
            && expected != params.len()
        {
            return Err(StatementError::BadParameter(format!(
                "the statement takes {expected} parameters but {} were given",
                params.len()
            )));
        }
        Ok(statement)
    }

    /// Ends an unprepared branch: `XA END` + `XA ROLLBACK`; if `XA END` fails (the branch
    /// is already rollback-only, e.g. after a deadlock) still `XA ROLLBACK`; if that fails too,
    /// close the connection, which rolls the branch back.
    async fn rollback_active(&mut self) -> Resolution {
        self.state = State::Ended;
        let Some(conn) = self.conn.as_mut() else {
            return Resolution::Done;
        };
        let xid = &self.xid;
        let _ = conn.execute(AssertSqlSafe(format!("XA END {xid}"))).await;
        match conn
            .execute(AssertSqlSafe(format!("XA ROLLBACK {xid}")))
            .await
        {
            Ok(_) => self.release_clean(),
            Err(e) => {
                tracing::warn!(participant = %self.resolver.name, xid = %self.xid, error = %e,
                    "XA ROLLBACK failed; closing the connection, which rolls the branch back");
                self.close().await;
            }
        }
        Resolution::Done
    }

    /// `XA COMMIT` / `XA ROLLBACK` of the prepared branch on its own connection. On failure the
    /// connection is closed, releasing the xid for [`ServerParticipant::commit_prepared`]; once it
    /// is closed, the branch too finishes through the [`Resolver`].
    async fn finish_prepared(
        &mut self,
        verb: &'static str,
        action: &'static str,
    ) -> Result<Resolution, ParticipantError> {
        let Some(conn) = self.conn.as_mut() else {
            let resolution = self.resolver.finish_prepared(verb, &self.branch).await?;
            self.state = State::Ended;
            return Ok(resolution);
        };
        match conn
            .execute(AssertSqlSafe(format!("XA {verb} {}", self.xid)))
            .await
        {
            Ok(_) => {
                self.state = State::Ended;
                self.release_clean();
                Ok(Resolution::Done)
            }
            Err(e) => {
                self.close().await;
                Err(self.error(
                    action,
                    format!(
                        "{}; the branch's connection was closed, so the xid can be finished from another one",
                        describe(&e)
                    ),
                ))
            }
        }
    }
}

#[async_trait]
impl ServerBranch for MysqlBranch {
    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StatementError> {
        let args = bind_all(params)?;
        let statement = self.statement(sql, params).await?;
        let conn = self.active_conn()?;
        match statement.query_with(args).execute(&mut **conn).await {
            Ok(done) => Ok(done.rows_affected()),
            Err(e) => Err(self.statement_failed(&e)),
        }
    }

    async fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: ResultLimits,
    ) -> Result<RowSet, StatementError> {
        let args = bind_all(params)?;
        let statement = self.statement(sql, params).await?;
        let conn = self.active_conn()?;
        let rows = statement.query_with(args).fetch(&mut **conn);
        match collect_rows(rows, limits, decode_row, type_name).await {
            Ok((columns, rows)) => {
                let columns = if rows.is_empty() {
                    columns_of(statement.columns(), type_name)
                } else {
                    columns
                };
                Ok(RowSet { columns, rows })
            }
            Err(RowsError::Driver(e)) => Err(self.statement_failed(&e)),
            // Undecodable values and limits leave the transaction intact (the coordinator
            // still dooms it); the rest of an abandoned result is drained on next use.
            Err(RowsError::Statement(e)) => Err(e),
        }
    }

    async fn prepare(&mut self) -> Result<(), ParticipantError> {
        if self.state != State::Active || self.conn.is_none() {
            return Err(self.error("prepare", "the transaction is no longer open"));
        }
        if self.failed {
            self.rollback_active().await;
            return Err(self.error(
                "prepare",
                "a statement failed in this transaction; rolled back instead",
            ));
        }
        let xid = &self.xid;
        let conn = self.conn.as_mut().expect("checked above");
        match conn
            .execute(AssertSqlSafe(format!("XA END {xid}; XA PREPARE {xid}")))
            .await
        {
            Ok(_) => {
                self.state = State::Prepared;
                Ok(())
            }
            Err(e) if is_connection_error(&e) => {
                // Prepared or not is unknown: a rollback resolves it through the Resolver.
                self.state = State::InDoubt;
                self.close().await;
                Err(self.error(
                    "prepare",
                    format!("{}; whether it prepared is unknown", describe(&e)),
                ))
            }
            Err(e) => {
                self.rollback_active().await;
                Err(self.error("prepare", describe(&e)))
            }
        }
    }

    async fn commit_one_phase(&mut self) -> Result<(), ParticipantError> {
        if self.state != State::Active || self.conn.is_none() {
            return Err(self.error("commit", "the transaction is no longer open"));
        }
        if self.failed {
            self.rollback_active().await;
            return Err(self.error(
                "commit",
                "a statement failed in this transaction; rolled back instead",
            ));
        }
        let xid = &self.xid;
        let conn = self.conn.as_mut().expect("checked above");
        match conn
            .execute(AssertSqlSafe(format!(
                "XA END {xid}; XA COMMIT {xid} ONE PHASE"
            )))
            .await
        {
            Ok(_) => {
                self.state = State::Ended;
                self.release_clean();
                Ok(())
            }
            Err(e) if is_connection_error(&e) => {
                self.state = State::Ended;
                self.close().await;
                Err(self.error(
                    "commit",
                    format!("{}; whether it committed is unknown", describe(&e)),
                ))
            }
            Err(e) => {
                // XA END or the commit failed: the branch did not commit; make sure it is gone.
                self.rollback_active().await;
                Err(self.error("commit", describe(&e)))
            }
        }
    }

    async fn commit_prepared(&mut self) -> Result<Resolution, ParticipantError> {
        if self.state != State::Prepared {
            return Err(self.error("commit prepared", "the branch is not prepared"));
        }
        self.finish_prepared("COMMIT", "commit prepared").await
    }

    async fn rollback(&mut self) -> Result<Resolution, ParticipantError> {
        match self.state {
            State::Active => Ok(self.rollback_active().await),
            State::Prepared | State::InDoubt => self.finish_prepared("ROLLBACK", "rollback").await,
            State::Ended => Ok(Resolution::AlreadyResolved),
        }
    }
}

// ---- parameters ------------------------------------------------------------------------

fn add<'q, T: Encode<'q, MySql> + Type<MySql>>(
    args: &mut MySqlArguments,
    value: T,
) -> Result<(), StatementError> {
    args.add(value)
        .map_err(|e| StatementError::BadParameter(e.to_string()))
}

fn bind_all(params: &[Value]) -> Result<MySqlArguments, StatementError> {
    let mut args = MySqlArguments::default();
    for (i, value) in params.iter().enumerate() {
        let bad =
            |what: String| StatementError::BadParameter(format!("parameter {}: {what}", i + 1));
        match value {
            Value::Null => add(&mut args, Option::<&str>::None)?,
            Value::Boolean(b) => add(&mut args, *b)?,
            Value::Int64(n) => add(&mut args, *n)?,
            Value::Float64(f) => add(&mut args, *f)?,
            Value::Text(s) => add(&mut args, s.as_str())?,
            Value::Bytes(b) => add(&mut args, b.as_slice())?,
            Value::Decimal(d) => {
                let d = BigDecimal::from_str(d)
                    .map_err(|e| bad(format!("`{d}` is not a decimal: {e}")))?;
                add(&mut args, d)?
            }
            Value::Date(d) => add(&mut args, *d)?,
            Value::Time(t) => add(&mut args, *t)?,
            Value::DateTime(t) => add(&mut args, *t)?,
            Value::Timestamp(micros) => {
                let t = DateTime::<Utc>::from_timestamp_micros(*micros)
                    .ok_or_else(|| bad(format!("timestamp {micros} µs is out of range")))?;
                add(&mut args, t)?
            }
            Value::Uuid(u) => add(&mut args, u.hyphenated().to_string())?,
            Value::Json(j) => add(&mut args, j.as_str())?,
        }
    }
    Ok(args)
}

// ---- results ---------------------------------------------------------------------------

/// The column's type name: sqlx's, except that a string column with a `_bin` collation keeps
/// its text name (sqlx goes by the binary flag and would call it VARBINARY or BLOB).
fn type_name(type_info: &MySqlTypeInfo) -> &str {
    let name = type_info.name();
    if !<str as Type<MySql>>::compatible(type_info) {
        return name;
    }
    match name {
        "BINARY" => "CHAR",
        "VARBINARY" => "VARCHAR",
        "TINYBLOB" => "TINYTEXT",
        "BLOB" => "TEXT",
        "MEDIUMBLOB" => "MEDIUMTEXT",
        "LONGBLOB" => "LONGTEXT",
        other => other,
    }
}

fn decode_row(row: &MySqlRow) -> Result<Vec<Value>, StatementError> {
    (0..row.columns().len())
        .map(|i| decode_column(row, i))
        .collect()
}

fn dec<'r, T: Decode<'r, MySql>>(raw: MySqlValueRef<'r>) -> Result<T, BoxDynError> {
    T::decode(raw)
}

/// An unsigned value as `Int64` when it fits, else as exact `Decimal` text.
fn unsigned(n: u64) -> Value {
    i64::try_from(n).map_or_else(|_| Value::Decimal(n.to_string()), Value::Int64)
}

fn decode_column(row: &MySqlRow, index: usize) -> Result<Value, StatementError> {
    let name = sqlx::Column::name(&row.columns()[index]);
    let raw = row
        .try_get_raw(index)
        .map_err(|e| decode_error(name, "?", e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_info = raw.type_info().into_owned();
    let type_name = type_name(&type_info);
    let fail = |e: BoxDynError| decode_error(name, type_name, e);
    Ok(match type_name {
        "NULL" => Value::Null,
        // TINYINT(1) is named BOOLEAN by sqlx; it holds any TINYINT.
        "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
            Value::Int64(dec(raw).map_err(fail)?)
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" | "YEAR" => unsigned(dec(raw).map_err(fail)?),
        "BIT" => {
            let bytes = dec::<&[u8]>(raw).map_err(fail)?;
            unsigned(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
        }
        "FLOAT" => Value::Float64(dec::<f32>(raw).map_err(fail)?.into()),
        "DOUBLE" => Value::Float64(dec(raw).map_err(fail)?),
        // Sent as text in both protocols: exact.
        "DECIMAL" => Value::Decimal(dec::<&str>(raw).map_err(fail)?.to_owned()),
        "DATE" => Value::Date(dec::<NaiveDate>(raw).map_err(fail)?),
        "TIME" => {
            let time: MySqlTime = dec(raw).map_err(fail)?;
            if time.is_valid_time_of_day() {
                Value::Time(time.try_into().map_err(fail)?)
            } else {
                Value::Text(time.to_string())
            }
        }
        "DATETIME" => Value::DateTime(dec::<NaiveDateTime>(raw).map_err(fail)?),
        // The session time zone is UTC, so the wire value is UTC.
        "TIMESTAMP" => {
            Value::Timestamp(dec::<DateTime<Utc>>(raw).map_err(fail)?.timestamp_micros())
        }
        "JSON" => Value::Json(dec::<&str>(raw).map_err(fail)?.to_owned()),
        "ENUM" | "SET" => Value::Text(dec::<&str>(raw).map_err(fail)?.to_owned()),
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" => {
            Value::Text(dec::<&str>(raw).map_err(fail)?.to_owned())
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            Value::Bytes(dec::<&[u8]>(raw).map_err(fail)?.to_vec())
        }
        "GEOMETRY" => Value::Bytes(dec::<&[u8]>(raw).map_err(fail)?.to_vec()),
        _ => {
            return Err(unsupported_column(
                name,
                type_name,
                &format!("CAST({name} AS CHAR)"),
            ));
        }
    })
}
