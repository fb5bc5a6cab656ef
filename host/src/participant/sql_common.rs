//! The sqlx helpers every driver shares (PostgreSQL, MySQL, SQLite): running text-protocol
//! statements, streaming a result under its [`ResultLimits`], checking parameter counts,
//! mapping and classifying driver errors, connection-failure messages that never show a
//! password, and converting time bounds.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, TryStreamExt};
use sqlx::{AssertSqlSafe, Either, Executor, Row, Statement};

use super::spec::redact;
use super::{DbError, ErrorClass, ParticipantError, StatementError};
use crate::dialect::Dialect;
use crate::value::{Column, ResultLimits, Value};

/// A database whose connections run SQL text (the text protocol: several statements per
/// round trip, and the only way MySQL takes XA statements).
pub trait TextSql: sqlx::Database {
    /// Runs `sql`, every statement in it, on `conn`.
    fn run(conn: &mut Self::Connection, sql: String) -> BoxFuture<'_, Result<(), sqlx::Error>>;

    /// Runs the one query `sql` on `conn` and returns its first column, as text.
    fn texts(
        conn: &mut Self::Connection,
        sql: String,
    ) -> BoxFuture<'_, Result<Vec<String>, sqlx::Error>>;
}

impl<DB: sqlx::Database> TextSql for DB
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    fn run(conn: &mut Self::Connection, sql: String) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { conn.execute(AssertSqlSafe(sql)).await.map(drop) })
    }

    fn texts(
        conn: &mut Self::Connection,
        sql: String,
    ) -> BoxFuture<'_, Result<Vec<String>, sqlx::Error>> {
        Box::pin(async move {
            let rows = conn.fetch_all(AssertSqlSafe(sql)).await?;
            rows.iter().map(|row| row.try_get_unchecked(0)).collect()
        })
    }
}

/// A driver error of a script statement, as the script sees it.
pub(crate) fn statement_error(err: &sqlx::Error) -> StatementError {
    StatementError::Database(DbError::from_sqlx(err))
}

/// Whether `err` means the connection itself is unusable (as opposed to the server refusing
/// one statement), so it must not be used again: I/O and protocol failures, and server errors
/// of SQLSTATE class 08 (connection exception) or 57P01..57P03 (PostgreSQL: the session was
/// terminated by an administrator or a server shutdown).
pub(crate) fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// The class of a protocol step that failed with driver error `err`.
pub(crate) fn class_of(err: &sqlx::Error) -> ErrorClass {
    if is_connection_error(err) {
        ErrorClass::Connection
    } else if matches!(err, sqlx::Error::Configuration(_)) {
        ErrorClass::Configuration
    } else {
        ErrorClass::Statement
    }
}

/// Attaching a driver error to a [`ParticipantError`].
pub(crate) trait DriverCause {
    /// Classes the error by `err` ([`class_of`]) and keeps `err` as its source.
    fn driver(self, err: sqlx::Error) -> Self;
}

impl DriverCause for ParticipantError {
    fn driver(self, err: sqlx::Error) -> Self {
        self.class(class_of(&err)).caused_by(err)
    }
}

/// A driver error for a protocol step's message: `[code] message` for server errors.
pub(crate) fn describe(err: &sqlx::Error) -> String {
    DbError::from_sqlx(err).to_string()
}

/// `message` with the URL's password (if any) blanked out, for errors that might echo it.
pub(crate) fn scrub(message: impl std::fmt::Display, url: &str) -> String {
    let message = message.to_string();
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => message.replace(&password, "***"),
        _ => message,
    }
}

/// `error` caused by `err`, unless `err`'s text shows the URL's password: then only the
/// scrubbed text (already in the message) is kept.
pub(crate) fn caused_unless_secret(
    error: ParticipantError,
    err: sqlx::Error,
    url: &str,
) -> ParticipantError {
    if scrub(&err, url) == err.to_string() {
        error.caused_by(err)
    } else {
        error
    }
}

/// The error for a participant whose server cannot be reached or refuses the login.
pub(crate) fn connect_error(
    participant: &str,
    dialect: Dialect,
    url: &str,
    err: sqlx::Error,
) -> ParticipantError {
    let (class, hint) = match &err {
        sqlx::Error::Database(_) => (
            ErrorClass::Configuration,
            "check the user, password and database name in the URL and the server's access rules",
        ),
        sqlx::Error::Configuration(_) => (ErrorClass::Configuration, "fix the URL"),
        sqlx::Error::PoolTimedOut => (
            ErrorClass::Connection,
            "the server did not answer in time: check that it is running and reachable, or raise the pool size",
        ),
        _ => (
            ErrorClass::Connection,
            "check that the server is running and that the URL's host and port are right",
        ),
    };
    let error = ParticipantError::new(
        participant,
        "connect",
        format!(
            "cannot connect to {} at {}: {}",
            dialect.server_name(),
            redact(url),
            scrub(&err, url)
        ),
    )
    .class(class)
    .hint(hint);
    caused_unless_secret(error, err, url)
}

/// A duration in whole milliseconds, at least 1 (0 switches server timeouts off).
pub(crate) fn millis_at_least_one(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The columns of a result, as driver-independent [`Column`]s, each type named by
/// `type_name`.
pub(crate) fn columns_of<C: sqlx::Column>(
    columns: &[C],
    type_name: impl Fn(&<C::Database as sqlx::Database>::TypeInfo) -> &str,
) -> Vec<Column> {
    columns
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            type_name: type_name(c.type_info()).to_owned(),
        })
        .collect()
}

/// Why a script statement did not succeed: the driver failed (the caller decides what that
/// means for its connection and transaction), or the statement was refused without harm to
/// the transaction (a bad parameter, an undecodable value, a limit).
pub enum StatementFailure {
    Driver(sqlx::Error),
    Refused(StatementError),
}

impl From<StatementError> for StatementFailure {
    fn from(err: StatementError) -> Self {
        StatementFailure::Refused(err)
    }
}

/// Checks that a prepared statement takes exactly `given` parameters (SQLite would bind
/// missing ones as NULL and ignore extra ones; MySQL would fail with a protocol error).
/// Statements whose driver does not know the count pass.
pub(crate) fn check_parameter_count<S: Statement>(
    statement: &S,
    given: usize,
) -> Result<(), StatementError> {
    let expected = match statement.parameters() {
        Some(Either::Right(count)) => count,
        Some(Either::Left(types)) => types.len(),
        None => return Ok(()),
    };
    if expected == given {
        Ok(())
    } else {
        Err(StatementError::BadParameter(format!(
            "the statement takes {expected} parameters but {given} were given"
        )))
    }
}

/// Drains a row stream into values, stopping with [`StatementError::LimitExceeded`] as soon
/// as `limits` is passed (the rest of the result is never buffered). Returns the columns of
/// the first row (empty when there is none) and the decoded rows.
pub(crate) async fn collect_rows<R, S>(
    rows: S,
    limits: ResultLimits,
    decode: impl Fn(&R) -> Result<Vec<Value>, StatementError>,
    type_name: impl Fn(&<R::Database as sqlx::Database>::TypeInfo) -> &str,
) -> Result<(Vec<Column>, Vec<Vec<Value>>), StatementFailure>
where
    R: Row,
    S: Stream<Item = Result<R, sqlx::Error>>,
{
    let mut rows = std::pin::pin!(rows);
    let mut tracker = limits.tracker();
    let mut columns = Vec::new();
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await.map_err(StatementFailure::Driver)? {
        if out.is_empty() {
            columns = columns_of(row.columns(), &type_name);
        }
        let values = decode(&row)?;
        tracker
            .add_row(&values)
            .map_err(StatementError::LimitExceeded)?;
        out.push(values);
    }
    Ok((columns, out))
}

/// The error for a result column whose type has no [`Value`] case.
pub(crate) fn unsupported_column(name: &str, type_name: &str, cast_hint: &str) -> StatementError {
    StatementError::Database(DbError {
        code: None,
        message: format!(
            "column `{name}` has type {type_name}, which wasmtx cannot return; cast it in the query (e.g. {cast_hint})"
        ),
    })
}

/// The error for a result value the driver could not decode.
pub(crate) fn decode_error(
    name: &str,
    type_name: &str,
    err: impl std::fmt::Display,
) -> StatementError {
    StatementError::Database(DbError {
        code: None,
        message: format!("cannot read column `{name}` of type {type_name}: {err}"),
    })
}
