//! The shared decision database's tables, created on first use under an advisory lock (so
//! nodes starting together do not race), or by an operator ahead of time with the same
//! statements (`SCHEMA`).

use sqlx::PgPool;

/// Every statement, idempotent. The `node` row is the lease and its incarnation the
/// fencing token; the `decision` row's primary key is the arbiter (first INSERT wins). The
/// plugin registry's blobs, versions and aliases follow; every registry write adds one to
/// `registry_generation`, which tells a node's mirror whether it is current.
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
CREATE TABLE IF NOT EXISTS wasmtx.blob (
  digest       bytea       PRIMARY KEY CHECK (length(digest) = 32),
  size         bigint      NOT NULL,
  bytes        bytea       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS wasmtx.plugin_version (
  name         text        NOT NULL,
  version      text        NOT NULL,
  digest       bytea       NOT NULL REFERENCES wasmtx.blob (digest),
  size         bigint      NOT NULL,
  published_at timestamptz NOT NULL,
  published_by text,
  withdrawn_at timestamptz,
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS wasmtx.plugin_alias (
  name         text        NOT NULL,
  alias        text        NOT NULL,
  version      text        NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (name, alias),
  FOREIGN KEY (name, version) REFERENCES wasmtx.plugin_version (name, version)
);
CREATE TABLE IF NOT EXISTS wasmtx.registry_generation (
  only_row     boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
  generation   bigint      NOT NULL
);
INSERT INTO wasmtx.registry_generation VALUES (true, 0) ON CONFLICT DO NOTHING;
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
