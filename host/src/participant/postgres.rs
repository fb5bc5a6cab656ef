//! PostgreSQL participant: `BEGIN` … `PREPARE TRANSACTION '<gid>.<index>'` …
//! `COMMIT PREPARED` / `ROLLBACK PREPARED`.
//!
//! - The pool's `after_release` hook sends `BEGIN; ROLLBACK`, so a connection can never go
//!   back into the pool inside a transaction: idle it is a clean no-op; inside a transaction
//!   it rolls back (with a server warning); in a failed transaction `BEGIN` errors and sqlx
//!   closes the connection.
//! - `PREPARE TRANSACTION` runs as `SAVEPOINT wtx_prepare; PREPARE TRANSACTION '…'`: sqlx does
//!   not expose the command tag, and after an earlier error PostgreSQL answers `ROLLBACK`
//!   without an error. The SAVEPOINT fails in a failed transaction and outside an explicit
//!   one, so PREPARE only runs where it either prepares or errors (measured: +3 µs, against
//!   +13 µs for reading the gid back from `pg_prepared_xact()` in the same message, which
//!   also misses the no-BEGIN case).
//! - `COMMIT` (one phase) runs as `SELECT 1; COMMIT`: in a failed transaction the `SELECT`
//!   errors and nothing commits, instead of `COMMIT` silently rolling back.
//! - Script statements are prepared statements whose parameter types come from the bound
//!   [`Value`]s. sqlx caches prepared statements by SQL text alone, so the text is prefixed with
//!   a comment naming those types (`/*wtx:it*/`): the same SQL bound with other kinds of values
//!   is prepared anew instead of reusing a statement whose parameter types no longer match
//!   (an `int8` value read as `float8` would be silently wrong). `Null` is bound with an
//!   unspecified type, so the server infers it.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow,
    PgTypeInfo, PgTypeKind, PgValueRef, Postgres,
};
use sqlx::{
    Arguments, AssertSqlSafe, Connection, Decode, Encode, Executor, Row, SqlSafeStr, Statement,
    Type, TypeInfo, ValueRef,
};

use super::xa_common::{
    RowsError, collect_rows, columns_of, connect_error, decode_error, describe,
    is_connection_error, millis_at_least_one, scrub, statement_error, unsupported_column,
};
use super::{
    ParticipantError, Resolution, StatementError, StatementTimeouts, ServerBranch, ServerParticipant,
};
use crate::dialect::Dialect;
use crate::gid::BranchId;
use crate::value::{ResultLimits, RowSet, Value};

/// SQLSTATE `undefined_object`: `COMMIT/ROLLBACK PREPARED` of a gid that does not exist.
const UNDEFINED_OBJECT: &str = "42704";

/// A PostgreSQL server taking part in two-phase commit.
pub struct PostgresParticipant {
    name: Arc<str>,
    pool: PgPool,
}

impl PostgresParticipant {
    /// Opens a pool of at most `max_connections` to `url` and checks that the server can
    /// prepare transactions (`max_prepared_transactions > 0`).
    pub async fn connect(
        name: &str,
        url: &str,
        max_connections: u32,
    ) -> Result<Self, ParticipantError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| connect_error(name, "PostgreSQL", url, &e))?;
        // One direct connection first: a pool would retry a refused connection until its
        // acquire timeout and then report only that it timed out.
        let mut probe = PgConnection::connect_with(&options)
            .await
            .map_err(|e| connect_error(name, "PostgreSQL", url, &e))?;
        let setting: Result<String, _> =
            sqlx::query_scalar("SELECT current_setting('max_prepared_transactions')")
                .fetch_one(&mut probe)
                .await;
        let _ = probe.close().await;
        let setting = setting.map_err(|e| ParticipantError::new(name, "connect", scrub(e, url)))?;
        if setting.trim() == "0" {
            return Err(ParticipantError::new(
                name,
                "connect",
                format!(
                    "the PostgreSQL server at {} has max_prepared_transactions = 0, so it cannot take part in two-phase commit; \
                     as a superuser run `ALTER SYSTEM SET max_prepared_transactions = 100` and restart the server",
                    super::spec::redact(url)
                ),
            ));
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // A connection that died while idle fails at BEGIN, which `begin` retries once on
            // a fresh connection; a ping on every acquire would cost a round trip per branch.
            .test_before_acquire(false)
            .after_release(|conn, _meta| {
                Box::pin(async move {
                    // Idle: a no-op. In a transaction: BEGIN warns, ROLLBACK cleans. In a failed
                    // transaction: BEGIN errors and sqlx closes the connection.
                    conn.execute("BEGIN; ROLLBACK").await?;
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(PostgresParticipant {
            name: name.into(),
            pool,
        })
    }

    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> ParticipantError {
        ParticipantError::new(&self.name, action, message)
    }

    /// `COMMIT PREPARED` or `ROLLBACK PREPARED` on a pool connection.
    async fn finish_prepared(
        &self,
        verb: &str,
        branch: &BranchId,
    ) -> Result<Resolution, ParticipantError> {
        let action = if verb == "COMMIT" {
            "commit prepared"
        } else {
            "rollback prepared"
        };
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error(action, describe(&e)))?;
        finish_prepared_on(&mut conn, verb, &branch.joined())
            .await
            .map_err(|e| {
                self.error(
                    action,
                    format!("branch {}: {}", branch.joined(), describe(&e)),
                )
            })
    }
}

/// Runs `<verb> PREPARED '<gid>'`; "does not exist" means an earlier request resolved it.
async fn finish_prepared_on(
    conn: &mut PoolConnection<Postgres>,
    verb: &str,
    gid: &str,
) -> Result<Resolution, sqlx::Error> {
    match conn
        .execute(AssertSqlSafe(format!("{verb} PREPARED '{gid}'")))
        .await
    {
        Ok(_) => Ok(Resolution::Done),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNDEFINED_OBJECT) => {
            Ok(Resolution::AlreadyResolved)
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl ServerParticipant for PostgresParticipant {
    fn name(&self) -> &str {
        &self.name
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn begin(
        &self,
        branch: &BranchId,
        timeouts: StatementTimeouts,
    ) -> Result<Box<dyn ServerBranch>, ParticipantError> {
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}",
            millis_at_least_one(timeouts.statement),
            millis_at_least_one(timeouts.lock)
        );
        let mut last_error = None;
        // One retry: an idle connection may have been closed by the server (restart,
        // idle timeout) since it was last used.
        for _ in 0..2 {
            let mut conn = self.pool.acquire().await.map_err(|e| {
                self.error(
                    "begin",
                    format!(
                        "{}; check that the PostgreSQL server is running and reachable",
                        describe(&e)
                    ),
                )
            })?;
            match conn.execute(AssertSqlSafe(begin.as_str())).await {
                Ok(_) => {
                    return Ok(Box::new(PostgresBranch {
                        participant: self.name.clone(),
                        pool: self.pool.clone(),
                        gid: branch.joined(),
                        conn: Some(conn),
                        state: State::Active,
                        failed: false,
                    }));
                }
                Err(e) if is_connection_error(&e) => {
                    conn.close_on_drop();
                    last_error = Some(e);
                }
                Err(e) => return Err(self.error("begin", describe(&e))),
            }
        }
        let e = last_error.map(|e| describe(&e)).unwrap_or_default();
        Err(self.error(
            "begin",
            format!("{e}; check that the PostgreSQL server is running and reachable"),
        ))
    }

    async fn prepared_branches(&self, gid_prefix: &str) -> Result<Vec<BranchId>, ParticipantError> {
        let gids: Vec<String> = sqlx::query_scalar(
            "SELECT gid FROM pg_prepared_xacts \
             WHERE database = current_database() AND left(gid, char_length($1)) = $1 ORDER BY prepared",
        )
        .bind(gid_prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("recovery scan", describe(&e)))?;
        Ok(gids
            .iter()
            .filter_map(|g| BranchId::parse_joined(g).ok())
            .collect())
    }

    async fn commit_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError> {
        self.finish_prepared("COMMIT", branch).await
    }

    async fn rollback_prepared(&self, branch: &BranchId) -> Result<Resolution, ParticipantError> {
        self.finish_prepared("ROLLBACK", branch).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside `BEGIN`.
    Active,
    /// `PREPARE TRANSACTION` succeeded; the session is out of the transaction.
    Prepared,
    /// The connection was lost during `PREPARE TRANSACTION`: it may be prepared.
    InDoubt,
    /// Committed or rolled back (or known never to commit).
    Ended,
}

/// One branch: a pool connection inside `BEGIN` until it is prepared, then the connection
/// that runs phase 2 (any connection could; this one saves an acquire).
struct PostgresBranch {
    participant: Arc<str>,
    pool: PgPool,
    /// `<gid>.<index>`, made of validated characters only.
    gid: String,
    /// Dropped into the pool when the branch ends; the pool's `after_release` rolls back
    /// anything left open.
    conn: Option<PoolConnection<Postgres>>,
    state: State,
    /// A statement failed: PostgreSQL has aborted the transaction.
    failed: bool,
}

impl PostgresBranch {
    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> ParticipantError {
        ParticipantError::new(
            &self.participant,
            action,
            format!("branch {}: {message}", self.gid),
        )
    }

    fn active_conn(&mut self) -> Result<&mut PoolConnection<Postgres>, StatementError> {
        match (self.state, self.conn.as_mut()) {
            (State::Active, Some(conn)) => Ok(conn),
            _ => Err(StatementError::Database(super::DbError {
                code: None,
                message: "the transaction on this participant is no longer open".into(),
            })),
        }
    }

    /// Records a failed statement: the transaction is doomed, and a broken connection is
    /// closed rather than reused.
    fn statement_failed(&mut self, err: &sqlx::Error) -> StatementError {
        self.failed = true;
        if is_connection_error(err) {
            if let Some(conn) = self.conn.as_mut() {
                conn.close_on_drop();
            }
            self.conn = None;
        }
        statement_error(err)
    }

    /// Ends the branch's use of its connection: back to the pool (whose `after_release`
    /// cleans it) unless it is known to be broken.
    fn release(&mut self, broken: bool) {
        if let Some(mut conn) = self.conn.take()
            && broken
        {
            conn.close_on_drop();
        }
    }

    /// The branch's own connection if it still has one, else one from the pool.
    async fn phase2_conn(
        &mut self,
        action: &'static str,
    ) -> Result<PoolConnection<Postgres>, ParticipantError> {
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => self
                .pool
                .acquire()
                .await
                .map_err(|e| self.error(action, describe(&e))),
        }
    }

    async fn finish_prepared(
        &mut self,
        verb: &str,
        action: &'static str,
    ) -> Result<Resolution, ParticipantError> {
        let mut conn = self.phase2_conn(action).await?;
        match finish_prepared_on(&mut conn, verb, &self.gid).await {
            Ok(resolution) => {
                self.state = State::Ended;
                Ok(resolution)
            }
            Err(e) => {
                if is_connection_error(&e) {
                    conn.close_on_drop();
                }
                Err(self.error(action, describe(&e)))
            }
        }
    }

    /// Plain `ROLLBACK` of an open transaction. A broken connection counts as rolled back:
    /// the server aborts an unprepared transaction when its session ends.
    async fn rollback_open(&mut self) -> Resolution {
        self.state = State::Ended;
        let Some(mut conn) = self.conn.take() else {
            return Resolution::Done;
        };
        if let Err(e) = conn.execute("ROLLBACK").await {
            tracing::warn!(participant = %self.participant, branch = %self.gid, error = %e,
                "ROLLBACK failed; closing the connection, which rolls the transaction back");
            conn.close_on_drop();
        }
        Resolution::Done
    }
}

#[async_trait]
impl ServerBranch for PostgresBranch {
    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StatementError> {
        let (sql, args, _) = bind_all(sql, params)?;
        let conn = self.active_conn()?;
        match sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut **conn)
            .await
        {
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
        let (sql, args, types) = bind_all(sql, params)?;
        let conn = self.active_conn()?;
        let rows = sqlx::query_with(AssertSqlSafe(sql.as_str()), args).fetch(&mut **conn);
        let (mut columns, rows) =
            match collect_rows(rows, limits, decode_row, PgTypeInfo::name).await {
                Ok(result) => result,
                Err(RowsError::Driver(e)) => return Err(self.statement_failed(&e)),
                // Undecodable values and limits leave the transaction intact (the coordinator
                // still dooms it); the rest of an abandoned result is drained on next use.
                Err(RowsError::Statement(e)) => return Err(e),
            };
        if rows.is_empty() {
            // No row to take the columns from: the statement is in the connection's cache
            // now, so this costs no round trip.
            let conn = self.active_conn()?;
            match conn
                .prepare_with(AssertSqlSafe(sql).into_sql_str(), &types)
                .await
            {
                Ok(statement) => columns = columns_of(statement.columns(), PgTypeInfo::name),
                Err(e) => return Err(self.statement_failed(&e)),
            }
        }
        Ok(RowSet { columns, rows })
    }

    async fn prepare(&mut self) -> Result<(), ParticipantError> {
        if self.state != State::Active || self.conn.is_none() {
            return Err(self.error("prepare", "the transaction is no longer open"));
        }
        if self.failed {
            self.rollback_open().await;
            return Err(self.error(
                "prepare",
                "a statement failed in this transaction, so PostgreSQL aborted it; rolled back instead",
            ));
        }
        // SAVEPOINT fails unless the session is in a healthy explicit transaction block, and
        // then nothing after it runs: PREPARE TRANSACTION only ever executes where it either
        // prepares or errors. (Alone, it answers ROLLBACK without an error in a failed
        // transaction, and in a multi-statement message without BEGIN it prepares an empty
        // implicit transaction.)
        let sql = format!("SAVEPOINT wtx_prepare; PREPARE TRANSACTION '{}'", self.gid);
        let conn = self.conn.as_mut().expect("checked above");
        match conn.execute(AssertSqlSafe(sql)).await {
            Ok(_) => {
                self.state = State::Prepared;
                Ok(())
            }
            Err(e) if is_connection_error(&e) => {
                // The outcome is unknown: a rollback resolves it with ROLLBACK PREPARED ("does
                // not exist" then means it never prepared).
                self.state = State::InDoubt;
                self.release(true);
                Err(self.error(
                    "prepare",
                    format!("{}; whether it prepared is unknown", describe(&e)),
                ))
            }
            Err(e) => {
                // The transaction had failed, or PREPARE itself failed (temporary objects,
                // max_prepared_transactions reached, gid in use): nothing is prepared.
                self.rollback_open().await;
                Err(self.error("prepare", describe(&e)))
            }
        }
    }

    async fn commit_one_phase(&mut self) -> Result<(), ParticipantError> {
        if self.state != State::Active || self.conn.is_none() {
            return Err(self.error("commit", "the transaction is no longer open"));
        }
        if self.failed {
            self.rollback_open().await;
            return Err(self.error(
                "commit",
                "a statement failed in this transaction, so PostgreSQL aborted it; rolled back instead",
            ));
        }
        let conn = self.conn.as_mut().expect("checked above");
        // In a failed transaction the SELECT errors and COMMIT (which would answer ROLLBACK
        // without an error) never runs.
        let outcome = conn.execute("SELECT 1; COMMIT").await;
        self.state = State::Ended;
        match outcome {
            Ok(_) => {
                self.release(false);
                Ok(())
            }
            Err(e) => {
                let broken = is_connection_error(&e);
                self.release(broken);
                let unknown = if broken {
                    "; whether it committed is unknown"
                } else {
                    ""
                };
                Err(self.error("commit", format!("{}{unknown}", describe(&e))))
            }
        }
    }

    async fn commit_prepared(&mut self) -> Result<Resolution, ParticipantError> {
        if self.state != State::Prepared {
            return Err(self.error("commit prepared", "the branch is not prepared"));
        }
        let result = self.finish_prepared("COMMIT", "commit prepared").await;
        if result.is_ok() {
            self.release(false);
        }
        result
    }

    async fn rollback(&mut self) -> Result<Resolution, ParticipantError> {
        match self.state {
            State::Active => Ok(self.rollback_open().await),
            State::Prepared | State::InDoubt => {
                let result = self.finish_prepared("ROLLBACK", "rollback").await;
                if result.is_ok() {
                    self.release(false);
                }
                result
            }
            State::Ended => {
                self.release(false);
                Ok(Resolution::AlreadyResolved)
            }
        }
    }
}

// ---- parameters ------------------------------------------------------------------------

/// A NULL of unspecified type: the server infers it from the statement, as for a literal.
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

/// JSON text bound as `jsonb` without re-serializing it (binary format: version 1 + text).
struct JsonbText<'a>(&'a str);

impl Type<Postgres> for JsonbText<'_> {
    fn type_info() -> PgTypeInfo {
        <sqlx::types::JsonValue as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for JsonbText<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

fn add<'q, T: Encode<'q, Postgres> + Type<Postgres>>(
    args: &mut PgArguments,
    types: &mut Vec<PgTypeInfo>,
    value: T,
) -> Result<(), StatementError> {
    types.push(T::type_info());
    args.add(value)
        .map_err(|e| StatementError::BadParameter(e.to_string()))
}

/// The statement text keyed by its parameter types, the arguments, and their types.
fn bind_all(
    sql: &str,
    params: &[Value],
) -> Result<(String, PgArguments, Vec<PgTypeInfo>), StatementError> {
    let mut args = PgArguments::default();
    let mut types = Vec::with_capacity(params.len());
    if params.is_empty() {
        return Ok((sql.to_owned(), args, types));
    }
    let mut key = String::with_capacity(params.len() + 12 + sql.len());
    key.push_str("/*wtx:");
    for (i, value) in params.iter().enumerate() {
        let bad =
            |what: &str| StatementError::BadParameter(format!("parameter ${}: {what}", i + 1));
        key.push(match value {
            Value::Null => {
                add(&mut args, &mut types, UntypedNull)?;
                'n'
            }
            Value::Boolean(b) => {
                add(&mut args, &mut types, *b)?;
                'b'
            }
            Value::Int64(n) => {
                add(&mut args, &mut types, *n)?;
                'i'
            }
            Value::Float64(f) => {
                add(&mut args, &mut types, *f)?;
                'f'
            }
            Value::Text(s) => {
                add(&mut args, &mut types, s.as_str())?;
                't'
            }
            Value::Bytes(b) => {
                add(&mut args, &mut types, b.as_slice())?;
                'y'
            }
            Value::Decimal(d) => {
                let d = BigDecimal::from_str(d)
                    .map_err(|e| bad(&format!("`{d}` is not a decimal: {e}")))?;
                add(&mut args, &mut types, d)?;
                'd'
            }
            Value::Date(d) => {
                add(&mut args, &mut types, *d)?;
                'D'
            }
            Value::Time(t) => {
                add(&mut args, &mut types, *t)?;
                'T'
            }
            Value::DateTime(t) => {
                add(&mut args, &mut types, *t)?;
                'S'
            }
            Value::Timestamp(micros) => {
                let t = DateTime::<Utc>::from_timestamp_micros(*micros)
                    .ok_or_else(|| bad(&format!("timestamp {micros} µs is out of range")))?;
                add(&mut args, &mut types, t)?;
                'Z'
            }
            Value::Uuid(u) => {
                add(&mut args, &mut types, *u)?;
                'u'
            }
            Value::Json(j) => {
                add(&mut args, &mut types, JsonbText(j))?;
                'j'
            }
        });
    }
    key.push_str("*/");
    key.push_str(sql);
    Ok((key, args, types))
}

// ---- results ---------------------------------------------------------------------------

fn decode_row(row: &PgRow) -> Result<Vec<Value>, StatementError> {
    (0..row.columns().len())
        .map(|i| decode_column(row, i))
        .collect()
}

fn decode_column(row: &PgRow, index: usize) -> Result<Value, StatementError> {
    let column = &row.columns()[index];
    let name = sqlx::Column::name(column);
    let raw = row
        .try_get_raw(index)
        .map_err(|e| decode_error(name, "?", e))?;
    let type_info = raw.type_info().into_owned();
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // Domains decode as their base type.
    let mut base = type_info.clone();
    while let PgTypeKind::Domain(inner) = base.kind() {
        base = inner.clone();
    }
    let type_name = type_info.name();
    let fail = |e: BoxDynError| decode_error(name, type_name, e);
    fn dec<'r, T: Decode<'r, Postgres>>(raw: PgValueRef<'r>) -> Result<T, BoxDynError> {
        T::decode(raw)
    }
    if let PgTypeKind::Enum(_) = base.kind() {
        return Ok(Value::Text(dec::<String>(raw).map_err(fail)?));
    }
    // Built-in types by OID (stable across servers); extension types by name.
    let oid = base.oid().map_or(0, |o| o.0);
    Ok(match oid {
        16 => Value::Boolean(dec(raw).map_err(fail)?),
        21 => Value::Int64(dec::<i16>(raw).map_err(fail)?.into()),
        23 => Value::Int64(dec::<i32>(raw).map_err(fail)?.into()),
        20 => Value::Int64(dec(raw).map_err(fail)?),
        26 => Value::Int64(dec::<Oid>(raw).map_err(fail)?.0.into()),
        700 => Value::Float64(dec::<f32>(raw).map_err(fail)?.into()),
        701 => Value::Float64(dec(raw).map_err(fail)?),
        1700 => {
            // The binary numeric's digits come in groups of four; its display scale (header
            // bytes 6..8) says how many fraction digits the value really has.
            let dscale = raw
                .as_bytes()
                .ok()
                .and_then(|b| b.get(6..8))
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
            let value = dec::<BigDecimal>(raw).map_err(fail)?;
            let value = match dscale {
                Some(scale) => value.with_scale(i64::from(scale)),
                None => value,
            };
            Value::Decimal(value.to_plain_string())
        }
        // text, varchar, bpchar, name, unknown
        25 | 1043 | 1042 | 19 | 705 => Value::Text(dec(raw).map_err(fail)?),
        // "char", one byte
        18 => Value::Text(char::from(dec::<i8>(raw).map_err(fail)? as u8).to_string()),
        17 => Value::Bytes(dec(raw).map_err(fail)?),
        1082 => Value::Date(dec::<NaiveDate>(raw).map_err(fail)?),
        1083 => Value::Time(dec::<NaiveTime>(raw).map_err(fail)?),
        1114 => Value::DateTime(dec::<NaiveDateTime>(raw).map_err(fail)?),
        1184 => Value::Timestamp(dec::<DateTime<Utc>>(raw).map_err(fail)?.timestamp_micros()),
        2950 => Value::Uuid(dec(raw).map_err(fail)?),
        114 | 3802 => {
            let bytes = raw.as_bytes().map_err(fail)?;
            // Binary jsonb is a version byte (1) followed by the text.
            let text = match (oid, bytes.split_first()) {
                (3802, Some((1, rest))) => rest,
                (3802, _) => return Err(fail("unknown jsonb format version".into())),
                _ => bytes,
            };
            Value::Json(String::from_utf8(text.to_vec()).map_err(|e| fail(e.into()))?)
        }
        // void
        2278 => Value::Null,
        _ if base.name().eq_ignore_ascii_case("citext") => Value::Text(dec(raw).map_err(fail)?),
        _ => {
            return Err(unsupported_column(
                name,
                type_name,
                &format!("`{name}::text`"),
            ));
        }
    })
}
