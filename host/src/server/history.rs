//! The server's record of transactions it ran: what status, history and idempotency answer
//! from. One SQLite file in the state directory (`server-<node>.sqlite`, WAL).
//!
//! A row is written when a transaction finishes, with the response that was sent. An invoke
//! with an `Idempotency-Key` also gets a row naming its gid that is synced to disk before the
//! transaction can commit and before it is answered, so that after any crash the key still
//! names the gid that ran: a repeat then answers from that gid's record or decision instead
//! of running again. Those synced writes are group-committed ([`SyncedWriter`]): every key
//! waiting when one SQLite commit ends goes into the next, so concurrent keyed invokes share
//! fsyncs as the decision log's COMMITs do. Finished rows (keyed or not) only reach the WAL
//! before the answer: they survive the process being killed, and after an operating-system
//! crash a repeat answers from the gid's decision.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use crate::recovery::{Requested, TxState};
use crate::registry::Resolved;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transactions (
    gid            TEXT PRIMARY KEY,
    plugin         TEXT NOT NULL,
    version        TEXT NOT NULL,
    digest         TEXT NOT NULL,
    participants   TEXT NOT NULL,
    status         TEXT NOT NULL,
    http_status    INTEGER,
    response       TEXT,
    idem_key       TEXT,
    request_sha256 TEXT,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    resolution     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS transactions_idem
    ON transactions (plugin, idem_key) WHERE idem_key IS NOT NULL;
-- Newest-first listings and counts per minute and status, read from the index alone.
CREATE INDEX IF NOT EXISTS transactions_started_status ON transactions (started_at, status);
DROP INDEX IF EXISTS transactions_started;
";

/// One transaction as the server recorded it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TxRecord {
    pub gid: String,
    pub plugin: String,
    pub version: String,
    pub digest: String,
    pub participants: Vec<String>,
    /// `running` (recorded before it ran, not yet finished), `committed`, `aborted`,
    /// `in-doubt`, or after a heuristic decision `heuristic-commit` / `heuristic-rollback`.
    pub status: TxState,
    #[serde(skip)]
    pub http_status: Option<u16>,
    /// The response body that was sent.
    pub response: Option<serde_json::Value>,
    #[serde(skip)]
    pub idem_key: Option<String>,
    #[serde(skip)]
    pub request_sha256: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// What an operator did to it (force-resolve), if anything.
    pub resolution: Option<Resolution>,
}

/// An operator's force-resolve of a transaction: who, when, what was asked and why, and
/// what was done on each prepared branch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resolution {
    /// The token's name (`loopback` without tokens).
    pub by: String,
    /// Unix milliseconds.
    pub at: i64,
    pub asked: Requested,
    pub reason: String,
    /// Whether it went against a recorded decision or the presumed abort.
    pub heuristic: bool,
    /// What was done on each prepared branch, by participant.
    pub branches: BTreeMap<String, String>,
}

/// What a history listing is filtered by.
#[derive(Debug, Default, Clone)]
pub struct HistoryFilter {
    pub plugin: Option<String>,
    pub status: Option<TxState>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// `started_at:gid` of the last row of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

/// The cursor of the page after `page` (`started_at:gid` of its last row), if it was full.
pub fn next_cursor(page: &[TxRecord], limit: u32) -> Option<String> {
    if page.len() < limit as usize {
        return None;
    }
    page.last().map(|t| format!("{}:{}", t.started_at, t.gid))
}

/// A cursor [`next_cursor`] gave, as `HistoryFilter::after`.
pub fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (time, gid) = cursor.split_once(':')?;
    Some((time.parse().ok()?, gid.to_owned()))
}

/// The history file.
#[derive(Clone)]
pub struct History {
    /// Full sync on commit: keys (through `writer`) and operators' resolutions.
    synced: SqlitePool,
    /// WAL only: finished rows.
    relaxed: SqlitePool,
    writer: SyncedWriter,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl History {
    pub async fn open(path: &Path) -> Result<History, sqlx::Error> {
        let options = |sync| {
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sync)
                .busy_timeout(Duration::from_secs(5))
        };
        let synced = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options(SqliteSynchronous::Full))
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&synced).await?;
        let relaxed = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options(SqliteSynchronous::Normal))
            .await?;
        let writer = SyncedWriter::start(synced.clone());
        Ok(History {
            synced,
            relaxed,
            writer,
        })
    }

    /// Records a keyed transaction's key and gid, synced, in the next group commit. The
    /// answer: `Ok(true)` once it is on disk, `Ok(false)` if the key was taken already.
    pub fn reserve_key(
        &self,
        record: &TxRecord,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send + 'static {
        self.writer.reserve(record.clone())
    }

    /// Records how a transaction ended and the response sent (WAL: see the module doc).
    pub async fn finish(&self, record: &TxRecord) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO transactions (gid, plugin, version, digest, participants, status, http_status, response, idem_key, request_sha256, started_at, finished_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (gid) DO UPDATE SET status = excluded.status, http_status = excluded.http_status,
                 response = excluded.response, finished_at = excluded.finished_at",
        )
        .bind(&record.gid)
        .bind(&record.plugin)
        .bind(&record.version)
        .bind(&record.digest)
        .bind(serde_json::to_string(&record.participants).unwrap_or_default())
        .bind(record.status.as_str())
        .bind(record.http_status.map(i64::from))
        .bind(record.response.as_ref().map(|r| r.to_string()))
        .bind(&record.idem_key)
        .bind(&record.request_sha256)
        .bind(record.started_at)
        .bind(record.finished_at)
        .execute(&self.relaxed)
        .await?;
        Ok(())
    }

    /// Records an operator's action on a transaction and its new status. A transaction
    /// this server did not run (another node's, or one run outside the server) gets a row of
    /// its own, with no plugin, on `participants`.
    pub async fn resolve(
        &self,
        gid: &str,
        status: TxState,
        participants: &[String],
        resolution: &Resolution,
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO transactions (gid, plugin, version, digest, participants, status, started_at, finished_at, resolution)
             VALUES (?, '', '', '', ?, ?, ?, ?, ?)
             ON CONFLICT (gid) DO UPDATE SET status = excluded.status, resolution = excluded.resolution",
        )
        .bind(gid)
        .bind(serde_json::to_string(participants).unwrap_or_default())
        .bind(status.as_str())
        .bind(now)
        .bind(now)
        .bind(serde_json::to_string(resolution).unwrap_or_default())
        .execute(&self.synced)
        .await?;
        Ok(())
    }

    /// Rows of keyed requests that never finished here (the server stopped while they ran),
    /// settled as `committing` or not at all.
    pub async fn unfinished(&self) -> Result<Vec<TxRecord>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM transactions WHERE finished_at IS NULL AND status IN ('running', 'committing')",
        )
        .fetch_all(&self.synced)
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Records, synced, what became of a row that never finished: `committing` (a COMMIT
    /// found, a branch still prepared), or a final state, which also ends the row so that
    /// retention prunes it.
    pub async fn settle(&self, gid: &str, status: TxState) -> Result<(), sqlx::Error> {
        let finished_at = status.is_final().then(now_ms);
        sqlx::query(
            "UPDATE transactions SET status = ?, finished_at = ? \
              WHERE gid = ? AND finished_at IS NULL AND status IN ('running', 'committing')",
        )
        .bind(status.as_str())
        .bind(finished_at)
        .bind(gid)
        .execute(&self.synced)
        .await?;
        Ok(())
    }

    pub async fn get(&self, gid: &str) -> Result<Option<TxRecord>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM transactions WHERE gid = ?")
            .bind(gid)
            .fetch_optional(&self.synced)
            .await?;
        Ok(row.as_ref().map(record))
    }

    pub async fn by_key(&self, plugin: &str, key: &str) -> Result<Option<TxRecord>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM transactions WHERE plugin = ? AND idem_key = ?")
            .bind(plugin)
            .bind(key)
            .fetch_optional(&self.synced)
            .await?;
        Ok(row.as_ref().map(record))
    }

    /// Newest first.
    pub async fn list(&self, filter: &HistoryFilter) -> Result<Vec<TxRecord>, sqlx::Error> {
        let (after_time, after_gid) = filter.after.clone().unwrap_or((i64::MAX, String::new()));
        let status = filter.status.map(TxState::as_str);
        let rows = sqlx::query(
            "SELECT * FROM transactions
              WHERE (? IS NULL OR plugin = ?) AND (? IS NULL OR status = ?)
                AND started_at >= ? AND started_at < ? AND started_at <= ?
                AND (started_at < ? OR (started_at = ? AND gid < ?) OR ? = '')
              ORDER BY started_at DESC, gid DESC LIMIT ?",
        )
        .bind(&filter.plugin)
        .bind(&filter.plugin)
        .bind(status)
        .bind(status)
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.until.unwrap_or(i64::MAX))
        // The cursor's time bounds the scan of the index; the next line breaks ties.
        .bind(after_time)
        .bind(after_time)
        .bind(after_time)
        .bind(&after_gid)
        .bind(&after_gid)
        .bind(filter.limit as i64)
        .fetch_all(&self.relaxed)
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Transactions started since `since` (Unix ms), counted per minute and status: `(minute
    /// start in Unix ms, status, count)`, oldest first.
    pub async fn per_minute(&self, since: i64) -> Result<Vec<(i64, TxState, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT started_at / 60000 AS minute, status, COUNT(*) AS n FROM transactions
              WHERE started_at >= ? GROUP BY minute, status ORDER BY minute",
        )
        .bind(since)
        .fetch_all(&self.relaxed)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get::<i64, _>("minute") * 60_000,
                    TxState::from_word(row.get("status")),
                    row.get::<i64, _>("n"),
                )
            })
            .collect())
    }

    /// Deletes finished rows that ended before `older_than` ago; returns how many.
    pub async fn prune(&self, older_than: Duration) -> Result<u64, sqlx::Error> {
        let cutoff = now_ms() - older_than.as_millis() as i64;
        let done = sqlx::query(
            "DELETE FROM transactions WHERE finished_at IS NOT NULL AND finished_at < ?",
        )
        .bind(cutoff)
        .execute(&self.relaxed)
        .await?;
        Ok(done.rows_affected())
    }
}

/// One key waiting for the next group commit, and who waits for it.
type Reservation = (TxRecord, oneshot::Sender<Result<bool, String>>);

/// The group-committing writer of keys: a task that takes every reservation queued, writes
/// them in one SQLite statement with a full sync, and answers each.
#[derive(Clone)]
struct SyncedWriter {
    queue: mpsc::UnboundedSender<Reservation>,
}

/// The most reservations one commit takes.
const BATCH_MAX: usize = 256;

impl SyncedWriter {
    fn start(pool: SqlitePool) -> SyncedWriter {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Reservation>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH_MAX);
            while waiting.recv_many(&mut batch, BATCH_MAX).await > 0 {
                let written = write_reservations(&pool, &batch).await;
                for ((_, answer), result) in batch.drain(..).zip(written) {
                    let _ = answer.send(result);
                }
            }
        });
        SyncedWriter { queue }
    }

    fn reserve(
        &self,
        record: TxRecord,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send + 'static {
        let (answer, reply) = oneshot::channel();
        let queued = self.queue.send((record, answer));
        async move {
            queued.map_err(|_| "the history's writer has stopped".to_owned())?;
            reply
                .await
                .map_err(|_| "the history's writer has stopped".to_owned())?
        }
    }
}

/// Writes a batch of reservations as one statement — one trip to SQLite's worker thread and
/// one synced commit for the whole batch; each one's result, in order: `true` if its row was
/// inserted, `false` if its key (or gid) was there already. A failed statement fails them
/// all (none is on disk).
async fn write_reservations(pool: &SqlitePool, batch: &[Reservation]) -> Vec<Result<bool, String>> {
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO transactions (gid, plugin, version, digest, participants, status, idem_key, request_sha256, started_at) ",
    );
    insert.push_values(batch, |mut row, (record, _)| {
        row.push_bind(&record.gid)
            .push_bind(&record.plugin)
            .push_bind(&record.version)
            .push_bind(&record.digest)
            .push_bind(serde_json::to_string(&record.participants).unwrap_or_default())
            .push_bind(TxState::Running.as_str())
            .push_bind(&record.idem_key)
            .push_bind(&record.request_sha256)
            .push_bind(record.started_at);
    });
    insert.push(" ON CONFLICT DO NOTHING RETURNING gid");
    let written: Result<HashSet<String>, sqlx::Error> = insert
        .build_query_scalar::<String>()
        .fetch_all(pool)
        .await
        .map(|gids| gids.into_iter().collect());
    match written {
        Ok(inserted) => batch
            .iter()
            .map(|(record, _)| Ok(inserted.contains(&record.gid)))
            .collect(),
        Err(err) => batch
            .iter()
            .map(|_| Err(format!("cannot record the idempotency key: {err}")))
            .collect(),
    }
}

fn record(row: &sqlx::sqlite::SqliteRow) -> TxRecord {
    let json = |column: &str| -> Option<serde_json::Value> {
        row.get::<Option<String>, _>(column)
            .and_then(|text| serde_json::from_str(&text).ok())
    };
    TxRecord {
        gid: row.get("gid"),
        plugin: row.get("plugin"),
        version: row.get("version"),
        digest: row.get("digest"),
        participants: row
            .get::<Option<String>, _>("participants")
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        status: TxState::from_word(row.get("status")),
        http_status: row.get::<Option<i64>, _>("http_status").map(|s| s as u16),
        response: json("response"),
        idem_key: row.get("idem_key"),
        request_sha256: row.get("request_sha256"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        resolution: row
            .get::<Option<String>, _>("resolution")
            .and_then(|text| serde_json::from_str(&text).ok()),
    }
}

/// Which plugin ran.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
    pub digest: String,
}

impl PluginRef {
    pub fn new(name: String, version: String, digest: String) -> Self {
        PluginRef {
            name,
            version,
            digest,
        }
    }
}

/// What a `Resolved` plugin is called in answers.
impl From<&Resolved> for PluginRef {
    fn from(resolved: &Resolved) -> Self {
        PluginRef::new(
            resolved.name.clone(),
            resolved.version.clone(),
            resolved.digest.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(gid: &str, key: &str) -> TxRecord {
        TxRecord {
            gid: gid.to_owned(),
            plugin: "transfer".to_owned(),
            version: "1.0.0".to_owned(),
            digest: "d".repeat(64),
            participants: vec!["a".to_owned(), "b".to_owned()],
            status: TxState::Running,
            http_status: None,
            response: None,
            idem_key: Some(key.to_owned()),
            request_sha256: Some("0".repeat(64)),
            started_at: now_ms(),
            finished_at: None,
            resolution: None,
        }
    }

    #[tokio::test]
    async fn a_batch_of_keys_inserts_each_new_one_and_refuses_a_taken_one() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(&dir.path().join("history.sqlite"))
            .await
            .unwrap();
        assert_eq!(history.reserve_key(&keyed("g1", "k1")).await, Ok(true));

        // Queued together, so that one statement writes them.
        let answers = futures::future::join_all([
            history.reserve_key(&keyed("g2", "k2")),
            history.reserve_key(&keyed("g3", "k1")),
            history.reserve_key(&keyed("g4", "k3")),
            history.reserve_key(&keyed("g1", "k4")),
        ])
        .await;
        assert_eq!(answers, [Ok(true), Ok(false), Ok(true), Ok(false)]);

        assert_eq!(
            history.by_key("transfer", "k1").await.unwrap().unwrap().gid,
            "g1"
        );
        assert_eq!(
            history.by_key("transfer", "k3").await.unwrap().unwrap().gid,
            "g4"
        );
        assert!(history.by_key("transfer", "k4").await.unwrap().is_none());
        let row = history.get("g2").await.unwrap().unwrap();
        assert_eq!((row.status, row.finished_at), (TxState::Running, None));
    }
}
