//! MySQL / MariaDB participant: `XA START` … `XA END` + `XA PREPARE` … `XA COMMIT` /
//! `XA ROLLBACK`, with xid gtrid `<gid>` and bqual `<participant index>`. The branch state
//! machine is the shared one of `server_branch.rs`; this file supplies the XA statements,
//! the server checks, the error numbers, the `XAER_NOTA` rule and value conversions.
//!
//! - XA and SET statements go over the text protocol (several per round trip); script
//!   statements are prepared statements with bound parameters.
//! - After `XA PREPARE` a MariaDB session keeps the xid: other sessions get `XAER_NOTA` for it
//!   until that session ends. So a branch does phase 2 on its own connection; when that fails
//!   it closes the connection (releasing the xid) and the coordinator retries through
//!   [`ServerParticipant::commit_prepared`](super::ServerParticipant::commit_prepared), which
//!   opens a fresh connection outside the pool.
//!   There, `XAER_NOTA` counts as "already resolved" only if `XA RECOVER` no longer lists the
//!   xid; a listed one is still held by a live session and the request fails, to be retried.
//! - A last agent's commit is `INSERT INTO wasmtx_decisions …; XA END …; XA COMMIT … ONE PHASE`
//!   in one message; a killed connection (`ER_CONNECTION_KILLED`) leaves its outcome unknown.
//! - A connection is handed back for reuse only after a successful `XA COMMIT` / `XA ROLLBACK`;
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

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{
    MySql, MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError,
    MySqlPoolOptions, MySqlRow, MySqlStatement, MySqlTypeInfo, MySqlValueRef,
};
use sqlx::{
    Arguments, AssertSqlSafe, Connection, Decode, Encode, Executor, Row, SqlSafeStr, Statement,
    Type, TypeInfo, ValueRef,
};

use super::server_branch::{Finish, Server, ServerPool, ServerProtocol, finish_prepared_on};
use super::spec::redact;
use super::sql_common::{
    DriverCause, StatementFailure, caused_unless_secret, check_parameter_count, class_of,
    collect_rows, columns_of, connect_error, decode_error, describe, is_connection_error,
    millis_at_least_one, scrub, unsupported_column,
};
use super::{
    ErrorClass, ParticipantError, PrivilegeReport, Resolution, StatementError, StatementTimeouts,
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
/// `ER_CONNECTION_KILLED`: another session killed this one.
const ER_CONNECTION_KILLED: u16 = 1927;

/// Which server speaks the MySQL protocol; decides the statement-timeout variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    MariaDb,
    MySql,
}

/// A MySQL or MariaDB server taking part in two-phase commit through XA.
pub type MysqlParticipant = Server<MysqlProtocol>;

/// MySQL's part of the server branch protocol, and what the participant learnt of its
/// server.
pub struct MysqlProtocol {
    flavour: Flavour,
    /// For connections of their own (never pooled), which finish prepared branches:
    /// phase-2 retries, recovery, and branches whose connection was lost.
    options: MySqlConnectOptions,
    redacted_url: String,
}

impl Server<MysqlProtocol> {
    /// Checks the server (flavour and version, `XA RECOVER` permission) over one connection,
    /// then opens a pool of at most `max_connections` to `url`.
    pub async fn connect(
        name: &str,
        url: &str,
        max_connections: u32,
    ) -> Result<Self, ParticipantError> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| connect_error(name, Dialect::Mysql, url, e))?
            .timezone(Some(String::from("+00:00")))
            .pipes_as_concat(false);
        // One direct connection first: a pool would retry a refused connection until its
        // acquire timeout and then report only that it timed out.
        let mut probe = MySqlConnection::connect_with(&options)
            .await
            .map_err(|e| connect_error(name, Dialect::Mysql, url, e))?;
        let checked = check_server(&mut probe, name, url).await;
        let _ = probe.close().await;
        let flavour = checked?;
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections.max(1))
            // A connection that died while idle fails at XA START, which `begin` retries once
            // on a fresh connection; a ping on every acquire would cost a round trip per branch.
            .test_before_acquire(false)
            .connect_lazy_with(options.clone());
        let protocol = MysqlProtocol {
            flavour,
            options,
            redacted_url: redact(url),
        };
        Ok(Server::new(name, pool, protocol))
    }
}

/// Checks flavour, version and the `XA RECOVER` permission.
async fn check_server(
    conn: &mut MySqlConnection,
    name: &str,
    url: &str,
) -> Result<Flavour, ParticipantError> {
    let fail = |message: String| {
        ParticipantError::new(
            name,
            "connect",
            format!("the server at {}: {}", redact(url), scrub(message, url)),
        )
        .class(ErrorClass::Configuration)
    };
    let version: String = match sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await
    {
        Ok(version) => version,
        Err(e) => {
            let error = fail(describe(&e)).class(class_of(&e));
            return Err(caused_unless_secret(error, e, url));
        }
    };
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
        return Err(fail(format!("runs {server} {version}")).hint(format!(
            "wasmtx needs {server} {}.{} or later (older servers roll a prepared XA branch back when its connection drops)",
            minimum.0, minimum.1
        )));
    }
    if let Err(e) = list_prepared(conn).await {
        let error = fail(format!("XA RECOVER failed ({})", describe(&e))).hint(
            "recovery needs it: on MySQL 8 grant the XA_RECOVER_ADMIN privilege to this user",
        );
        return Err(caused_unless_secret(error, e, url));
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
pub fn xid(branch: &BranchId) -> String {
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

/// Prepares `sql` (cached per connection) and checks the parameter count, so a mismatch is
/// a bad-parameter error rather than a driver protocol error.
async fn prepare_checked(
    conn: &mut MySqlConnection,
    sql: &str,
    given: usize,
) -> Result<MySqlStatement, StatementFailure> {
    let statement = conn
        .prepare(AssertSqlSafe(sql).into_sql_str())
        .await
        .map_err(StatementFailure::Driver)?;
    check_parameter_count(&statement, given)?;
    Ok(statement)
}

impl ServerProtocol for MysqlProtocol {
    type Database = MySql;

    const DIALECT: Dialect = Dialect::Mysql;
    const CREATE_DECISION_TABLE: &'static str = "CREATE TABLE IF NOT EXISTS wasmtx_decisions (\
         gid VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, \
         decision CHAR(1) CHARACTER SET ascii NOT NULL, \
         deadline_ms BIGINT NOT NULL, \
         decided_at_ms BIGINT NOT NULL, \
         CONSTRAINT wasmtx_decisions_decision CHECK (decision IN ('C', 'A')), \
         CONSTRAINT wasmtx_decisions_commit_in_time CHECK (decision = 'A' OR decided_at_ms < deadline_ms)\
         ) ENGINE=InnoDB";
    const DECISION_TABLE_EXISTS: &'static str = "SELECT 'yes' FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name = 'wasmtx_decisions'";
    const NOW_MS: &'static str = "CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000 AS SIGNED)";
    const AFTER_FAILED_STATEMENT: &'static str = "";

    fn begin_sql(&self, branch: &BranchId, timeouts: StatementTimeouts) -> String {
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
        format!(
            "SET SESSION innodb_lock_wait_timeout = {lock_seconds}, SESSION {statement_limit}; XA START {}",
            xid(branch)
        )
    }

    fn prepare_sql(branch: &BranchId) -> String {
        let xid = xid(branch);
        format!("XA END {xid}; XA PREPARE {xid}")
    }

    fn commit_one_phase_sql(branch: &BranchId) -> String {
        let xid = xid(branch);
        format!("XA END {xid}; XA COMMIT {xid} ONE PHASE")
    }

    /// The INSERT fails past the deadline (and in a rollback-only branch); then neither XA
    /// statement runs.
    fn commit_with_decision_sql(branch: &BranchId, deadline_ms: i64) -> String {
        format!(
            "INSERT INTO wasmtx_decisions (gid, decision, deadline_ms, decided_at_ms) \
             VALUES ('{}', 'C', {deadline_ms}, {}); {}",
            branch.gid,
            Self::NOW_MS,
            Self::commit_one_phase_sql(branch)
        )
    }

    /// `ON DUPLICATE KEY UPDATE` locks an existing row, so it waits for a COMMIT row in
    /// flight, and (unlike `INSERT IGNORE`) turns no other error into a warning.
    fn record_abort_sql(gid: &Gid, deadline_ms: i64) -> String {
        format!(
            "INSERT INTO wasmtx_decisions (gid, decision, deadline_ms, decided_at_ms) \
             VALUES ('{gid}', 'A', {deadline_ms}, {}) ON DUPLICATE KEY UPDATE gid = gid",
            Self::NOW_MS
        )
    }

    /// A killed connection (`ER_CONNECTION_KILLED`) may have finished the statement or not.
    fn outcome_unknown(err: &sqlx::Error) -> bool {
        is_connection_error(err) || mysql_error_number(err) == Some(ER_CONNECTION_KILLED)
    }

    fn finish_prepared_sql(branch: &BranchId, finish: Finish) -> String {
        format!("XA {} {}", finish.verb(), xid(branch))
    }

    /// If `XA END` fails (the branch is already rollback-only, e.g. after a deadlock) still
    /// `XA ROLLBACK`.
    fn rollback_open_sql(branch: &BranchId) -> Vec<String> {
        let xid = xid(branch);
        vec![format!("XA END {xid}"), format!("XA ROLLBACK {xid}")]
    }

    fn branch_label(branch: &BranchId) -> String {
        format!("xid {}", xid(branch))
    }

    /// Also a session left inside a transaction (never expected) is not reusable.
    fn is_stale_connection(err: &sqlx::Error) -> bool {
        is_connection_error(err)
            || matches!(mysql_error_number(err), Some(XAER_RMFAIL | XAER_OUTSIDE))
    }

    /// Nothing does: `XAER_NOTA` counts as resolved only once `XA RECOVER` no longer lists the
    /// xid ([`ServerProtocol::finish_prepared_elsewhere`]).
    fn proves_resolved(_err: &sqlx::Error) -> bool {
        false
    }

    /// `XA COMMIT` or `XA ROLLBACK` on a new connection of its own.
    async fn finish_prepared_elsewhere(
        &self,
        server: &ServerPool<MySql>,
        branch: &BranchId,
        finish: Finish,
    ) -> Result<Resolution, ParticipantError> {
        let action = finish.action();
        let xid = xid(branch);
        let mut conn = MySqlConnection::connect_with(&self.options)
            .await
            .map_err(|e| {
                let message = format!(
                    "xid {xid}: cannot connect to {}: {}",
                    self.redacted_url,
                    describe(&e)
                );
                server.error(action, message).driver(e)
            })?;
        let outcome = match finish_prepared_on::<Self>(&mut conn, branch, finish).await {
            Ok(resolution) => Ok(resolution),
            Err(e) if mysql_error_number(&e) == Some(XAER_NOTA) => {
                // Unknown to this session: resolved, or still held by the session that
                // prepared it (MariaDB keeps it there until that session ends).
                match list_prepared(&mut conn).await {
                    Ok(listed)
                        if listed.iter().any(|(g, b)| {
                            *g == branch.gid.as_str() && *b == branch.index.to_string()
                        }) =>
                    {
                        // Held until that session's connection ends: worth retrying.
                        Err(server
                            .error(
                                action,
                                format!(
                                    "xid {xid} is prepared but still held by another session (the one that prepared it, until it disconnects)"
                                ),
                            )
                            .class(ErrorClass::Connection)
                            .hint("retry later"))
                    }
                    Ok(_) => Ok(Resolution::AlreadyResolved),
                    Err(recover) => {
                        let message = format!(
                            "xid {xid}: XA {} answered XAER_NOTA, and XA RECOVER, which would tell whether it is resolved, failed: {}",
                            finish.verb(),
                            describe(&recover)
                        );
                        Err(server.error(action, message).driver(recover))
                    }
                }
            }
            Err(e) => Err(server
                .error(action, format!("xid {xid}: {}", describe(&e)))
                .driver(e)),
        };
        let _ = conn.close().await;
        outcome
    }

    async fn prepared_branches(
        &self,
        server: &ServerPool<MySql>,
        gid_prefix: &str,
    ) -> Result<Vec<BranchId>, ParticipantError> {
        let fail = |e: sqlx::Error| server.error("recovery scan", describe(&e)).driver(e);
        let mut conn = server.connections.acquire().await.map_err(fail)?;
        let listed = list_prepared(&mut conn).await.map_err(fail)?;
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

    async fn privilege_check(
        server: &ServerPool<MySql>,
    ) -> Result<PrivilegeReport, ParticipantError> {
        super::privilege::mysql(server).await
    }

    async fn execute(
        conn: &mut MySqlConnection,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StatementFailure> {
        let args = bind_all(params)?;
        let statement = prepare_checked(conn, sql, params.len()).await?;
        statement
            .query_with(args)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
            .map_err(StatementFailure::Driver)
    }

    async fn query(
        conn: &mut MySqlConnection,
        sql: &str,
        params: &[Value],
        limits: ResultLimits,
    ) -> Result<RowSet, StatementFailure> {
        let args = bind_all(params)?;
        let statement = prepare_checked(conn, sql, params.len()).await?;
        let rows = statement.query_with(args).fetch(conn);
        let (columns, rows) = collect_rows(rows, limits, decode_row, type_name).await?;
        let columns = if rows.is_empty() {
            columns_of(statement.columns(), type_name)
        } else {
            columns
        };
        Ok(RowSet { columns, rows })
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
