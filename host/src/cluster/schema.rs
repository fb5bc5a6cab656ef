//! The shared decision database's tables, created on first use under an advisory lock (so
//! nodes starting together do not race), or by an operator ahead of time with the same
//! statements (`SCHEMA`).

use sqlx::PgPool;

/// Every statement, idempotent. The `node` row is the lease and its incarnation the
/// fencing token; the `decision` row's primary key is the arbiter (first INSERT wins).
pub const SCHEMA: &str = r"
CREATE SCHEMA IF NOT EXISTS wasmtx;
CREATE TABLE IF NOT EXISTS wasmtx.node (
  node_id       text        PRIMARY KEY CHECK (node_id ~ '^[A-Za-z0-9-]{1,16}$'),
  incarnation   bigint      NOT NULL DEFAULT 1,
  host          text        NOT NULL,
  api_addr      text,
  version       text        NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  lease_until   timestamptz NOT NULL,
  state         text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired')),
  adopted_by    text,
  adopted_until timestamptz
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS wasmtx.decision (
  gid          text        PRIMARY KEY,
  node_id      text        NOT NULL,
  decider      text        NOT NULL,
  decider_inc  bigint      NOT NULL,
  outcome      smallint    NOT NULL CHECK (outcome IN (1, 2)),
  source       smallint    NOT NULL DEFAULT 0 CHECK (source IN (0, 1, 2)),
  deadline     timestamptz NOT NULL,
  decided_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  done_at      timestamptz
);
CREATE INDEX IF NOT EXISTS decision_pending ON wasmtx.decision (node_id) WHERE done_at IS NULL AND outcome = 1;
";

/// A key of its own for `pg_advisory_xact_lock`, so concurrent creators wait for each other.
const SCHEMA_LOCK: i64 = 0x7761_736d_7478; // "wasmtx"

/// Creates what is missing. A user without the privilege gets PostgreSQL's error; the
/// caller names the statements to run instead.
pub async fn ensure(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    tx.commit().await
}
