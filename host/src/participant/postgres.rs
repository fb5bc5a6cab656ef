//! PostgreSQL participant: `BEGIN` … `PREPARE TRANSACTION '<gid>.<index>'` …
//! `COMMIT PREPARED` / `ROLLBACK PREPARED`. The branch state machine is the shared one of
//! `server_branch.rs`; this file supplies PostgreSQL's statements, connection set-up, error
//! codes and value conversions.
//!
//! - Nothing cleans or tests a connection when it comes back (no `after_release`, no ping):
//!   the branch state machine hands a connection back only once its session is out of the
//!   transaction, and closes it on every other path (`server_branch.rs`, `connections.rs`).
//! - `PREPARE TRANSACTION` runs as `SAVEPOINT wtx_prepare; PREPARE TRANSACTION '…'`: sqlx does
//!   not expose the command tag, and after an earlier error PostgreSQL answers `ROLLBACK`
//!   without an error. The SAVEPOINT fails in a failed transaction and outside an explicit
//!   one, so PREPARE only runs where it either prepares or errors (measured: +3 µs, against
//!   +13 µs for reading the gid back from `pg_prepared_xact()` in the same message, which
//!   also misses the no-BEGIN case).
//! - `COMMIT` (one phase) runs as `SELECT 1; COMMIT`: in a failed transaction the `SELECT`
//!   errors and nothing commits, instead of `COMMIT` silently rolling back. A last agent's
//!   commit is `INSERT INTO wasmtx_decisions …; COMMIT`, where the INSERT plays that part.
//! - After `PREPARE TRANSACTION` the session is out of the transaction, so phase 2 may run on
//!   any connection; "does not exist" (`42704`) means an earlier request resolved the branch.
//! - Script statements are prepared statements whose parameter types come from the bound
//!   [`Value`]s. sqlx caches prepared statements by SQL text alone, so the text is prefixed with
//!   a comment naming those types (`/*wtx:it*/`): the same SQL bound with other kinds of values
//!   is prepared anew instead of reusing a statement whose parameter types no longer match
//!   (an `int8` value read as `float8` would be silently wrong). `Null` is bound with an
//!   unspecified type, so the server infers it.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgConnection, PgPoolOptions, PgRow,
    PgTypeInfo, PgTypeKind, PgValueRef, Postgres,
};
use sqlx::{
    Arguments, AssertSqlSafe, Connection, Decode, Encode, Executor, Row, SqlSafeStr, Statement,
    Type, TypeInfo, ValueRef,
};

use super::server_branch::{Finish, Server, ServerPool, ServerProtocol, finish_prepared_on};
use super::sql_common::{
    DriverCause, StatementFailure, caused_unless_secret, class_of, collect_rows, columns_of,
    connect_error, decode_error, describe, is_connection_error, millis_at_least_one, scrub,
    unsupported_column,
};
use super::{
    ErrorClass, ParticipantError, PrivilegeReport, Resolution, StatementError, StatementTimeouts,
};
use crate::dialect::Dialect;
use crate::gid::{BranchId, Gid};
use crate::value::{ResultLimits, RowSet, Value};

/// SQLSTATE `undefined_object`: `COMMIT/ROLLBACK PREPARED` of a gid that does not exist.
const UNDEFINED_OBJECT: &str = "42704";

/// A PostgreSQL server taking part in two-phase commit.
pub type PostgresParticipant = Server<PostgresProtocol>;

/// PostgreSQL's part of the server branch protocol: PostgreSQL needs no facts about the
/// server beyond the pool.
pub struct PostgresProtocol;

impl Server<PostgresProtocol> {
    /// Opens a pool of at most `max_connections` to `url` and checks that the server can
    /// prepare transactions (`max_prepared_transactions > 0`).
    pub async fn connect(
        name: &str,
        url: &str,
        max_connections: u32,
    ) -> Result<Self, ParticipantError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| connect_error(name, Dialect::Postgres, url, e))?;
        // One direct connection first: a pool would retry a refused connection until its
        // acquire timeout and then report only that it timed out.
        let mut probe = PgConnection::connect_with(&options)
            .await
            .map_err(|e| connect_error(name, Dialect::Postgres, url, e))?;
        let setting: Result<String, _> =
            sqlx::query_scalar("SELECT current_setting('max_prepared_transactions')")
                .fetch_one(&mut probe)
                .await;
        let _ = probe.close().await;
        let setting = setting.map_err(|e| {
            let error = ParticipantError::new(name, "connect", scrub(&e, url)).class(class_of(&e));
            caused_unless_secret(error, e, url)
        })?;
        if setting.trim() == "0" {
            return Err(ParticipantError::new(
                name,
                "connect",
                format!(
                    "the PostgreSQL server at {} has max_prepared_transactions = 0, so it cannot take part in two-phase commit",
                    super::spec::redact(url)
                ),
            )
            .class(ErrorClass::Configuration)
            .hint(
                "as a superuser run `ALTER SYSTEM SET max_prepared_transactions = 100` and restart the server",
            ));
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // A connection that died while idle fails at BEGIN, which `begin` retries once on
            // a fresh connection; a ping on every acquire would cost a round trip per branch.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Server::new(name, pool, PostgresProtocol))
    }
}

impl ServerProtocol for PostgresProtocol {
    type Database = Postgres;

    const DIALECT: Dialect = Dialect::Postgres;
    const CREATE_DECISION_TABLE: &'static str = "CREATE TABLE IF NOT EXISTS wasmtx_decisions (\
         gid text PRIMARY KEY, \
         decision char(1) NOT NULL CHECK (decision IN ('C', 'A')), \
         deadline_ms bigint NOT NULL, \
         decided_at_ms bigint NOT NULL, \
         CONSTRAINT wasmtx_decisions_commit_in_time CHECK (decision = 'A' OR decided_at_ms < deadline_ms))";
    const DECISION_TABLE_EXISTS: &'static str =
        "SELECT 'yes' WHERE to_regclass('wasmtx_decisions') IS NOT NULL";
    const NOW_MS: &'static str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
    const AFTER_FAILED_STATEMENT: &'static str = ", so PostgreSQL aborted it";

    fn branch_label(branch: &BranchId) -> String {
        format!("branch {}", branch.joined())
    }

    fn begin_sql(&self, _branch: &BranchId, timeouts: StatementTimeouts) -> String {
        format!(
            "BEGIN; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}",
            millis_at_least_one(timeouts.statement),
            millis_at_least_one(timeouts.lock)
        )
    }

    /// SAVEPOINT fails unless the session is in a healthy explicit transaction block, and
    /// then nothing after it runs: PREPARE TRANSACTION only ever executes where it either
    /// prepares or errors. (Alone, it answers ROLLBACK without an error in a failed
    /// transaction, and in a multi-statement message without BEGIN it prepares an empty
    /// implicit transaction.)
    fn prepare_sql(branch: &BranchId) -> String {
        format!(
            "SAVEPOINT wtx_prepare; PREPARE TRANSACTION '{}'",
            branch.joined()
        )
    }

    /// In a failed transaction the SELECT errors and COMMIT (which would answer ROLLBACK
    /// without an error) never runs.
    fn commit_one_phase_sql(_branch: &BranchId) -> String {
        "SELECT 1; COMMIT".to_owned()
    }

    /// The INSERT fails in a failed transaction, and past the deadline; then COMMIT does not
    /// run.
    fn commit_with_decision_sql(branch: &BranchId, deadline_ms: i64) -> String {
        format!(
            "INSERT INTO wasmtx_decisions (gid, decision, deadline_ms, decided_at_ms) \
             VALUES ('{}', 'C', {deadline_ms}, {}); COMMIT",
            branch.gid,
            Self::NOW_MS
        )
    }

    fn record_abort_sql(gid: &Gid, deadline_ms: i64) -> String {
        format!(
            "INSERT INTO wasmtx_decisions (gid, decision, deadline_ms, decided_at_ms) \
             VALUES ('{gid}', 'A', {deadline_ms}, {}) ON CONFLICT (gid) DO NOTHING",
            Self::NOW_MS
        )
    }

    /// `<gid>.<index>` is made of validated characters only.
    fn finish_prepared_sql(branch: &BranchId, finish: Finish) -> String {
        format!("{} PREPARED '{}'", finish.verb(), branch.joined())
    }

    fn rollback_open_sql(_branch: &BranchId) -> Vec<String> {
        vec!["ROLLBACK".to_owned()]
    }

    fn proves_resolved(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some(UNDEFINED_OBJECT))
    }

    /// On a pool connection: after PREPARE TRANSACTION any session can finish a branch.
    async fn finish_prepared_elsewhere(
        &self,
        server: &ServerPool<Postgres>,
        branch: &BranchId,
        finish: Finish,
    ) -> Result<Resolution, ParticipantError> {
        let action = finish.action();
        let mut conn = server
            .connections
            .acquire()
            .await
            .map_err(|e| server.error(action, describe(&e)).driver(e))?;
        finish_prepared_on::<Self>(&mut conn, branch, finish)
            .await
            .map_err(|e| {
                if is_connection_error(&e) {
                    conn.close_on_drop();
                }
                let message = format!("branch {}: {}", branch.joined(), describe(&e));
                server.error(action, message).driver(e)
            })
    }

    async fn prepared_branches(
        &self,
        server: &ServerPool<Postgres>,
        gid_prefix: &str,
    ) -> Result<Vec<BranchId>, ParticipantError> {
        let scan_failed = |e: sqlx::Error| server.error("recovery scan", describe(&e)).driver(e);
        let mut conn = server.connections.acquire().await.map_err(scan_failed)?;
        let gids: Vec<String> = sqlx::query_scalar(
            "SELECT gid FROM pg_prepared_xacts \
             WHERE database = current_database() AND left(gid, char_length($1)) = $1 ORDER BY prepared",
        )
        .bind(gid_prefix)
        .fetch_all(&mut *conn)
        .await
        .map_err(scan_failed)?;
        Ok(gids
            .iter()
            .filter_map(|g| BranchId::parse_joined(g).ok())
            .collect())
    }

    async fn privilege_check(
        server: &ServerPool<Postgres>,
    ) -> Result<PrivilegeReport, ParticipantError> {
        super::privilege::postgres(server).await
    }

    async fn execute(
        conn: &mut PgConnection,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StatementFailure> {
        let (sql, args, _) = bind_all(sql, params)?;
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
            .map_err(StatementFailure::Driver)
    }

    async fn query(
        conn: &mut PgConnection,
        sql: &str,
        params: &[Value],
        limits: ResultLimits,
    ) -> Result<RowSet, StatementFailure> {
        let (sql, args, types) = bind_all(sql, params)?;
        let rows = sqlx::query_with(AssertSqlSafe(sql.as_str()), args).fetch(&mut *conn);
        let (mut columns, rows) = collect_rows(rows, limits, decode_row, PgTypeInfo::name).await?;
        if rows.is_empty() {
            // No row to take the columns from: the statement is in the connection's cache
            // now, so this costs no round trip.
            let statement = conn
                .prepare_with(AssertSqlSafe(sql).into_sql_str(), &types)
                .await
                .map_err(StatementFailure::Driver)?;
            columns = columns_of(statement.columns(), PgTypeInfo::name);
        }
        Ok(RowSet { columns, rows })
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
        let bad = |what: &str| {
            StatementError::BadParameter(format!(
                "parameter {}: {what}",
                Dialect::Postgres.placeholder(i + 1)
            ))
        };
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
