//! SQLite participants. SQLite has no PREPARE, so every SQLite participant of a transaction
//! is attached to one connection under its participant name, and one COMMIT is atomic
//! across all the files (SQLite's super-journal, which needs a rollback journal: WAL
//! files are refused unless converted on request).
//!
//! The connection's main database is a file the host owns (never `:memory:`, which has no
//! super-journal). Mixed with XA participants, the group commits last, with the COMMIT
//! decision written into the main file inside the same commit: that commit is the decision.
//! Statements are qualified with their participant's schema (`sqlite_qualify`) so a script
//! reaches only its participant's file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow,
    SqliteSynchronous, SqliteTypeInfo,
};
use sqlx::{
    AssertSqlSafe, ConnectOptions, Connection, Decode, Executor, Row, SqlSafeStr, Sqlite, TypeInfo,
    ValueRef,
};

use super::sql_common::{
    DriverCause, StatementFailure, check_parameter_count, collect_rows, decode_error, describe,
    statement_error,
};
use super::sqlite_guard::SqliteGuard;
use super::{ErrorClass, ParticipantError, StatementError, sqlite_decisions, sqlite_qualify};
use crate::dialect::Dialect;
use crate::gid::Gid;
use crate::value::{ResultLimits, RowSet, Value};

/// SQLite's limit on attached databases.
pub const MAX_SQLITE_MEMBERS: usize = 10;

/// One SQLite participant to attach.
#[derive(Debug, Clone)]
pub struct SqliteMember {
    pub name: String,
    pub path: PathBuf,
    /// Create the file if it is missing.
    pub create: bool,
    /// Convert a WAL/MEMORY/OFF journal to DELETE instead of refusing the file.
    pub convert_journal: bool,
}

/// The open SQLite part of one global transaction.
pub struct SqliteGroup {
    conn: SqliteConnection,
    /// Participant names, which are also their schema names.
    names: Vec<String>,
    /// The authorizer and deadline callbacks; dropped after the connection closes.
    guard: SqliteGuard,
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

impl SqliteGroup {
    /// Opens the host's main file, attaches every member and begins one transaction
    /// across them.
    pub async fn begin(
        main: &Path,
        members: &[SqliteMember],
        lock_timeout: Duration,
        deadline: Instant,
    ) -> Result<Self, ParticipantError> {
        let first = members.first().map(|m| m.name.as_str()).unwrap_or("sqlite");
        if members.len() > MAX_SQLITE_MEMBERS {
            return Err(ParticipantError::new(
                first,
                "attach",
                format!(
                    "a transaction may span at most {MAX_SQLITE_MEMBERS} SQLite participants (SQLite's attach limit)"
                ),
            )
            .class(ErrorClass::Configuration));
        }
        let files = resolve_files(main, members)?;
        if let Some(dir) = main.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                ParticipantError::new(
                    first,
                    "open",
                    format!("cannot create {}: {e}", dir.display()),
                )
                .class(ErrorClass::Configuration)
                .caused_by(e)
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(main)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Delete)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(lock_timeout);
        let mut conn = options.connect().await.map_err(|e| {
            ParticipantError::new(
                first,
                "open",
                format!("cannot open the coordinator file {}: {e}", main.display()),
            )
            .driver(e)
        })?;
        sqlite_decisions::create_table(&mut conn)
            .await
            .map_err(|e| ParticipantError::new(first, "open", describe(&e)).driver(e))?;

        let guard = SqliteGuard::install(&mut conn, deadline)
            .await
            .map_err(|e| ParticipantError::new(first, "open", describe(&e)).driver(e))?;
        let mut group = SqliteGroup {
            conn,
            names: Vec::new(),
            guard,
        };
        for (member, file) in members.iter().zip(&files) {
            if let Err(err) = group.attach(member, file).await {
                group.close().await;
                return Err(err);
            }
        }
        if let Err(e) = run(&mut group.conn, "BEGIN IMMEDIATE").await {
            group.close().await;
            return Err(ParticipantError::new(first, "begin", describe(&e)).driver(e));
        }
        Ok(group)
    }

    async fn attach(&mut self, member: &SqliteMember, file: &Path) -> Result<(), ParticipantError> {
        let fail = |message: String| ParticipantError::new(&member.name, "attach", message);
        let failed = |e: sqlx::Error| fail(describe(&e)).driver(e);
        let uri = file_uri(file, member.create);
        sqlx::query("ATTACH DATABASE ? AS ?")
            .bind(uri)
            .bind(member.name.clone())
            .execute(&mut self.conn)
            .await
            .map_err(|e| {
                fail(format!("cannot open {}: {}", file.display(), describe(&e)))
                    .driver(e)
                    .class(ErrorClass::Configuration)
            })?;
        self.names.push(member.name.clone());
        let schema = Dialect::Sqlite.quote_ident(&member.name);
        let mode = self.journal_mode(&schema).await.map_err(failed)?;
        if !matches!(mode.as_str(), "delete" | "truncate" | "persist") && !member.convert_journal {
            return Err(fail(format!(
                "{} uses journal_mode={mode}; an atomic commit across files needs a rollback journal",
                file.display()
            ))
            .class(ErrorClass::Configuration)
            .hint(
                "add ?journal_mode=delete to the participant URL to convert it (this is persistent), \
                 or convert it yourself with `PRAGMA journal_mode=DELETE`",
            ));
        }
        run(
            &mut self.conn,
            &format!("PRAGMA {schema}.journal_mode=DELETE"),
        )
        .await
        .map_err(failed)?;
        let mode = self.journal_mode(&schema).await.map_err(failed)?;
        if mode != "delete" {
            return Err(fail(format!(
                "cannot switch {} to journal_mode=delete (it stays {mode})",
                file.display()
            ))
            .class(ErrorClass::Configuration));
        }
        run(&mut self.conn, &format!("PRAGMA {schema}.synchronous=FULL"))
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn journal_mode(&mut self, schema: &str) -> Result<String, sqlx::Error> {
        let row = sqlx::query(AssertSqlSafe(format!("PRAGMA {schema}.journal_mode")))
            .fetch_one(&mut self.conn)
            .await?;
        row.try_get::<String, _>(0).map(|m| m.to_ascii_lowercase())
    }

    /// Runs a statement for member `member` and returns the rows it changed.
    pub async fn execute(
        &mut self,
        member: usize,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StatementError> {
        let qualified = self.qualify(member, sql).await?;
        self.guard.enter_script(&self.names[member]);
        let result = async {
            prepare_checked(&mut self.conn, &qualified, params.len()).await?;
            bind_all(sqlx::query(AssertSqlSafe(qualified)), params)
                .execute(&mut self.conn)
                .await
                .map(|done| done.rows_affected())
                .map_err(|e| statement_error(&e))
        }
        .await;
        self.guard.leave_script();
        result
    }

    /// Runs a statement for member `member` and returns its rows, failing past `limits`.
    pub async fn query(
        &mut self,
        member: usize,
        sql: &str,
        params: &[Value],
        limits: ResultLimits,
    ) -> Result<RowSet, StatementError> {
        let qualified = self.qualify(member, sql).await?;
        self.guard.enter_script(&self.names[member]);
        let result = fetch_limited(&mut self.conn, &qualified, params, limits).await;
        self.guard.leave_script();
        result
    }

    async fn qualify(&self, member: usize, sql: &str) -> Result<String, StatementError> {
        sqlite_qualify::qualify_memoized(sql, &self.names[member])
            .await
            .map_err(|e| StatementError::Forbidden(e.to_string()))
    }

    /// Commits every member at once. With `decision`, the COMMIT decision of a global
    /// transaction is recorded inside the same commit (last-resource commit).
    pub async fn commit(mut self, decision: Option<&Gid>) -> Result<(), ParticipantError> {
        let who = self.names.join(", ");
        let result = async {
            if let Some(gid) = decision {
                sqlite_decisions::record_commit(&mut self.conn, gid).await?;
            }
            run(&mut self.conn, "COMMIT").await
        }
        .await
        .map_err(|e| ParticipantError::new(&who, "commit", describe(&e)).driver(e));
        if result.is_err() {
            // An unfinished transaction rolls back when its connection closes.
            let _ = run(&mut self.conn, "ROLLBACK").await;
        }
        self.close().await;
        result
    }

    /// Rolls every member back.
    pub async fn rollback(mut self) -> Result<(), ParticipantError> {
        let who = self.names.join(", ");
        let result = run(&mut self.conn, "ROLLBACK").await;
        self.close().await;
        result.map_err(|e| ParticipantError::new(&who, "rollback", describe(&e)).driver(e))
    }

    /// Detaches every member and closes the connection.
    async fn close(mut self) {
        for name in std::mem::take(&mut self.names) {
            let _ = sqlx::query("DETACH DATABASE ?")
                .bind(name)
                .execute(&mut self.conn)
                .await;
        }
        let _ = self.conn.close().await;
    }
}

/// Each member's file as an absolute path, checked: present (unless it may be created),
/// and no file named twice or equal to the host's main file (one file under two names
/// silently loses writes).
fn resolve_files(main: &Path, members: &[SqliteMember]) -> Result<Vec<PathBuf>, ParticipantError> {
    let main_abs = absolute(main).ok();
    let mut files: Vec<PathBuf> = Vec::with_capacity(members.len());
    for member in members {
        let fail = |message: String| {
            ParticipantError::new(&member.name, "open", message).class(ErrorClass::Configuration)
        };
        let unresolved = |e: std::io::Error| {
            fail(format!("cannot resolve {}: {e}", member.path.display())).caused_by(e)
        };
        let file = if member.path.exists() {
            std::fs::canonicalize(&member.path).map_err(unresolved)?
        } else if member.create {
            absolute(&member.path).map_err(unresolved)?
        } else {
            return Err(fail(format!(
                "SQLite file {} does not exist",
                member.path.display()
            ))
            .hint("check the path, or add ?mode=rwc to the URL to create it"));
        };
        if file.is_dir() {
            return Err(fail(format!(
                "{} is a directory, not an SQLite file",
                file.display()
            )));
        }
        if let Some(i) = files.iter().position(|f| f == &file) {
            return Err(fail(format!(
                "{} is already participant `{}`; one file cannot be two participants",
                file.display(),
                members[i].name
            )));
        }
        if main_abs.as_ref() == Some(&file) {
            return Err(fail(format!(
                "{} is the host's coordinator file, not a participant",
                file.display()
            )));
        }
        files.push(file);
    }
    Ok(files)
}

/// An absolute path with its parent resolved through symlinks.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) if parent.exists() => {
            Ok(std::fs::canonicalize(parent)?.join(name))
        }
        _ => Ok(abs),
    }
}

/// `file:<path>?mode=rw[c]`, with the characters URI filenames reserve percent-encoded.
fn file_uri(path: &Path, create: bool) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str(if create { "?mode=rwc" } else { "?mode=rw" });
    uri
}

/// Runs `sql` as it is (never prepared or cached: PRAGMAs, BEGIN, COMMIT).
async fn run(conn: &mut SqliteConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .map(drop)
}

fn bind_all<'q>(mut query: Query<'q>, params: &[Value]) -> Query<'q> {
    for value in params {
        query = match value.clone() {
            Value::Null => query.bind(None::<i64>),
            Value::Boolean(b) => query.bind(b),
            Value::Int64(i) => query.bind(i),
            Value::Float64(f) => query.bind(f),
            Value::Text(s) | Value::Decimal(s) | Value::Json(s) => query.bind(s),
            Value::Bytes(b) => query.bind(b),
            Value::Date(d) => query.bind(d),
            Value::Time(t) => query.bind(t),
            Value::DateTime(dt) => query.bind(dt),
            Value::Timestamp(micros) => query.bind(chrono::DateTime::from_timestamp_micros(micros)),
            Value::Uuid(u) => query.bind(u.hyphenated().to_string()),
        };
    }
    query
}

/// Prepares `sql` (cached per connection, so running it next costs nothing more) and checks
/// that it takes exactly the `given` parameters: SQLite binds missing ones as NULL and
/// ignores extra ones, but a script's statement must get exactly the parameters it names.
async fn prepare_checked(
    conn: &mut SqliteConnection,
    sql: &str,
    given: usize,
) -> Result<(), StatementError> {
    let statement = conn
        .prepare(AssertSqlSafe(sql.to_owned()).into_sql_str())
        .await
        .map_err(|e| statement_error(&e))?;
    check_parameter_count(&statement, given)
}

/// Streams a query's rows, stopping at the first bound `limits` passes.
async fn fetch_limited(
    conn: &mut SqliteConnection,
    sql: &str,
    params: &[Value],
    limits: ResultLimits,
) -> Result<RowSet, StatementError> {
    prepare_checked(conn, sql, params.len()).await?;
    let rows = bind_all(sqlx::query(AssertSqlSafe(sql.to_owned())), params).fetch(conn);
    match collect_rows(rows, limits, decode_row, SqliteTypeInfo::name).await {
        Ok((columns, rows)) => Ok(RowSet { columns, rows }),
        Err(StatementFailure::Driver(e)) => Err(statement_error(&e)),
        Err(StatementFailure::Refused(e)) => Err(e),
    }
}

/// SQLite values by storage class: INTEGER, REAL, TEXT, BLOB or NULL.
fn decode_row(row: &SqliteRow) -> Result<Vec<Value>, StatementError> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i).map_err(|e| statement_error(&e))?;
            if raw.is_null() {
                return Ok(Value::Null);
            }
            let class = raw.type_info().name().to_owned();
            let fail = |e| decode_error(sqlx::Column::name(&row.columns()[i]), &class, e);
            Ok(match class.as_str() {
                "INTEGER" => Value::Int64(<i64 as Decode<Sqlite>>::decode(raw).map_err(fail)?),
                "REAL" => Value::Float64(<f64 as Decode<Sqlite>>::decode(raw).map_err(fail)?),
                "BLOB" => Value::Bytes(<Vec<u8> as Decode<Sqlite>>::decode(raw).map_err(fail)?),
                _ => Value::Text(<String as Decode<Sqlite>>::decode(raw).map_err(fail)?),
            })
        })
        .collect()
}
