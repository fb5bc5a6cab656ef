//! The plugin registry of a cluster, kept in its decision database (the tables are in
//! `cluster/schema.rs`): blobs, versions and aliases. Writers take one advisory lock, read
//! the whole index, apply the same rules as the local registry (`index.rs`) and write what
//! changed, adding one to `registry_generation` and notifying [`CHANGES`] in the same
//! transaction. Each node mirrors the index and the blobs into its own directory
//! ([`PgRegistry::refresh`]), so invocations read local files and the compiled cache stays
//! local.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::Mutex;

use super::index::{Index, VersionEntry};
use super::{Registry, RegistryError, check_blob, names};

/// The channel a write notifies, so that mirrors refresh at once rather than at their next
/// poll.
pub const CHANGES: &str = "wasmtx_registry";

/// A key of its own for `pg_advisory_xact_lock`: one registry writer at a time.
const WRITE_LOCK: i64 = 0x7761_736d_7478_0001;

/// The shared registry's tables, and which of their generations this node mirrors.
pub struct PgRegistry {
    pool: PgPool,
    mirrored: Mutex<Option<i64>>,
}

impl PgRegistry {
    pub fn new(pool: PgPool) -> PgRegistry {
        PgRegistry {
            pool,
            mirrored: Mutex::new(None),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies `change` to the shared index under the write lock and stores what it
    /// changed, all in one transaction. A version new to the shared index gets its bytes
    /// from `blob` (given its digest) unless they are stored already. A failed commit may
    /// or may not have been applied; every change is idempotent, so retrying is safe.
    pub async fn write<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<(T, bool), RegistryError>,
        blob: impl Fn(&str) -> Result<Vec<u8>, RegistryError>,
    ) -> Result<T, RegistryError> {
        let db = RegistryError::database;
        let mut tx = self.pool.begin().await.map_err(db("begin a write"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db("take its write lock"))?;
        let (_, before) = load(&mut tx).await?;
        let mut after = before.clone();
        let (result, changed) = change(&mut after)?;
        if changed {
            store_changes(&mut tx, &before, &after, &blob).await?;
            sqlx::query("UPDATE wasmtx.registry_generation SET generation = generation + 1")
                .execute(&mut *tx)
                .await
                .map_err(db("count a write"))?;
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES)
                .execute(&mut *tx)
                .await
                .map_err(db("announce a write"))?;
            tx.commit().await.map_err(db("commit a write"))?;
        }
        Ok(result)
    }

    /// Brings `local` up to the shared registry: fetches the blobs it lacks, then replaces
    /// its index. Nothing is read when the generation it mirrors is current. Returns the
    /// digests fetched.
    pub async fn refresh(&self, local: &Registry) -> Result<Vec<String>, RegistryError> {
        let db = RegistryError::database;
        let mut mirrored = self.mirrored.lock().await;
        let generation: i64 =
            sqlx::query_scalar("SELECT generation FROM wasmtx.registry_generation")
                .fetch_one(&self.pool)
                .await
                .map_err(db("be read"))?;
        if *mirrored == Some(generation) {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db("be read"))?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db("be read"))?;
        let (generation, index) = load(&mut tx).await?;
        tx.commit().await.map_err(db("be read"))?;
        let mut fetched = Vec::new();
        for digest in index.digests() {
            if local.has_blob(digest) {
                continue;
            }
            let bytes: Vec<u8> = sqlx::query_scalar(
                "SELECT bytes FROM wasmtx.blob WHERE digest = decode($1, 'hex')",
            )
            .bind(hex_of(digest))
            .fetch_one(&self.pool)
            .await
            .map_err(db("send a component"))?;
            local.store_blob(digest, &bytes)?;
            fetched.push(digest.to_owned());
        }
        local.mirror(index)?;
        *mirrored = Some(generation);
        Ok(fetched)
    }

    /// Adds what `local` was given before this node joined a cluster and the shared
    /// registry lacks (see [`Index::merge_missing`]); a version published in both with
    /// different bytes keeps the cluster's, with a warning.
    pub async fn import(&self, local: &Registry) -> Result<(), RegistryError> {
        let ours = local.snapshot()?;
        if ours.plugins.is_empty() {
            return Ok(());
        }
        let read_blob = |digest: &str| {
            let path = local.blob_path(digest);
            std::fs::read(&path).map_err(|e| RegistryError::io(path, "read", e))
        };
        let conflicts = self
            .write(
                |shared| {
                    let (added, conflicts) = shared.merge_missing(&ours);
                    Ok((conflicts, added))
                },
                read_blob,
            )
            .await?;
        for version in conflicts {
            tracing::warn!(
                plugin = version,
                "this node's registry has other bytes for a version the cluster's registry has; the cluster's are kept"
            );
        }
        Ok(())
    }
}

/// The generation and the whole index, as one transaction sees them.
async fn load(conn: &mut PgConnection) -> Result<(i64, Index), RegistryError> {
    let db = RegistryError::database;
    let generation: i64 = sqlx::query_scalar("SELECT generation FROM wasmtx.registry_generation")
        .fetch_one(&mut *conn)
        .await
        .map_err(db("be read"))?;
    let versions = sqlx::query(
        "SELECT name, version, encode(digest, 'hex') AS digest, size, published_at, published_by, withdrawn_at
           FROM wasmtx.plugin_version",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db("be read"))?;
    let mut index = Index::default();
    for row in versions {
        let text = |column: &str| row.try_get::<String, _>(column).map_err(db("be read"));
        let time = |column: &str| {
            row.try_get::<Option<DateTime<Utc>>, _>(column)
                .map(|t| t.map(rfc3339))
                .map_err(db("be read"))
        };
        let entry = VersionEntry {
            digest: format!("sha256:{}", text("digest")?),
            size: row.try_get::<i64, _>("size").map_err(db("be read"))? as u64,
            published_at: time("published_at")?.unwrap_or_default(),
            published_by: row
                .try_get::<Option<String>, _>("published_by")
                .map_err(db("be read"))?,
            withdrawn_at: time("withdrawn_at")?,
        };
        index.insert(&text("name")?, &text("version")?, entry);
    }
    let aliases: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, alias, version FROM wasmtx.plugin_alias")
            .fetch_all(&mut *conn)
            .await
            .map_err(db("be read"))?;
    for (name, alias, version) in aliases {
        let plugin = index.plugins.entry(name).or_default();
        plugin.aliases.insert(alias, version);
    }
    Ok((generation, index))
}

/// Writes the difference between two indexes: new versions (their blobs first), changed
/// withdrawals, set and removed aliases. Versions are never removed.
async fn store_changes(
    conn: &mut PgConnection,
    before: &Index,
    after: &Index,
    blob: &impl Fn(&str) -> Result<Vec<u8>, RegistryError>,
) -> Result<(), RegistryError> {
    let db = RegistryError::database;
    for (name, plugin) in &after.plugins {
        let old = before.plugins.get(name);
        for (version, entry) in &plugin.versions {
            match old.and_then(|p| p.versions.get(version)) {
                None => {
                    store_blob(conn, &entry.digest, blob).await?;
                    sqlx::query(
                        "INSERT INTO wasmtx.plugin_version
                                (name, version, digest, size, published_at, published_by, withdrawn_at)
                         VALUES ($1, $2, decode($3, 'hex'), $4, $5::timestamptz, $6, $7::timestamptz)",
                    )
                    .bind(name)
                    .bind(version)
                    .bind(hex_of(&entry.digest))
                    .bind(entry.size as i64)
                    .bind(&entry.published_at)
                    .bind(&entry.published_by)
                    .bind(&entry.withdrawn_at)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("record a version"))?;
                }
                Some(was) if was.withdrawn_at != entry.withdrawn_at => {
                    sqlx::query(
                        "UPDATE wasmtx.plugin_version SET withdrawn_at = $3::timestamptz
                          WHERE name = $1 AND version = $2",
                    )
                    .bind(name)
                    .bind(version)
                    .bind(&entry.withdrawn_at)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("record a withdrawal"))?;
                }
                Some(_) => {}
            }
        }
        for (alias, version) in &plugin.aliases {
            if old.and_then(|p| p.aliases.get(alias)) == Some(version) {
                continue;
            }
            sqlx::query(
                "INSERT INTO wasmtx.plugin_alias (name, alias, version) VALUES ($1, $2, $3)
                 ON CONFLICT (name, alias)
                 DO UPDATE SET version = EXCLUDED.version, updated_at = clock_timestamp()",
            )
            .bind(name)
            .bind(alias)
            .bind(version)
            .execute(&mut *conn)
            .await
            .map_err(db("record an alias"))?;
        }
    }
    for (name, plugin) in &before.plugins {
        for alias in plugin.aliases.keys() {
            let kept = after
                .plugins
                .get(name)
                .is_some_and(|p| p.aliases.contains_key(alias));
            if !kept {
                sqlx::query("DELETE FROM wasmtx.plugin_alias WHERE name = $1 AND alias = $2")
                    .bind(name)
                    .bind(alias)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("remove an alias"))?;
            }
        }
    }
    Ok(())
}

/// Stores the blob of `digest` unless it is stored: its bytes from `blob`, checked against
/// the digest.
async fn store_blob(
    conn: &mut PgConnection,
    digest: &str,
    blob: &impl Fn(&str) -> Result<Vec<u8>, RegistryError>,
) -> Result<(), RegistryError> {
    let db = RegistryError::database;
    let stored: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM wasmtx.blob WHERE digest = decode($1, 'hex'))",
    )
    .bind(hex_of(digest))
    .fetch_one(&mut *conn)
    .await
    .map_err(db("be read"))?;
    if stored {
        return Ok(());
    }
    let bytes = blob(digest)?;
    check_blob(digest, &bytes, format!("the component {digest}"))?;
    sqlx::query(
        "INSERT INTO wasmtx.blob (digest, size, bytes) VALUES (decode($1, 'hex'), $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(hex_of(digest))
    .bind(bytes.len() as i64)
    .bind(bytes)
    .execute(&mut *conn)
    .await
    .map_err(db("store a component"))?;
    Ok(())
}

/// The hex part of a `sha256:<hex>` digest the index holds.
fn hex_of(digest: &str) -> &str {
    names::digest_hex(digest).unwrap_or(digest)
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}
