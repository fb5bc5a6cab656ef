//! The PostgreSQL decision store: the cluster's decisions as rows of `wasmtx.decision`.
//!
//! - **Group commit.** One writer task takes every COMMIT queued while the previous batch was
//!   being written and records them with one `INSERT … SELECT FROM unnest(…)` on its own
//!   connection (`synchronous_commit = on`, autocommit): the row is durable when PostgreSQL
//!   answers.
//! - **Only before the deadline, only under a live lease — by the database's clock.** The
//!   INSERT keeps a row only if the gid's deadline is after `clock_timestamp()` and this
//!   node's row has this incarnation with a live lease. A gid the answer does not list was
//!   refused (deadline passed, lease lost, or an ABORT already there): it must roll back.
//! - **A lost answer is unknown, never an abort.** An error, a timeout or a dropped
//!   connection during the INSERT is [`DecisionError::MaybeRecorded`]: the branches stay
//!   prepared until recovery reads the row (or its absence past the deadline).
//! - **The first row for a gid wins** (primary key): recovery's ABORT (written through the
//!   [`DecisionTable`] methods before it rolls a branch back) and a late COMMIT cannot both
//!   be recorded; a COMMIT still in flight makes the ABORT wait, then the ABORT loses.
//! - **DONE marks are lazy**: collected and written in batches with
//!   `synchronous_commit = off` (losing one only makes recovery check that gid again);
//!   [`DecisionStore::flush`] writes what is queued synchronously.
//! - Finished decisions (DONE, or ABORT past the deadline) are pruned by recovery after the
//!   retention period; pending COMMITs are listed for every node of the cluster.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::lease::{Lease, millis};
use crate::decision_store::{
    DecisionCause, DecisionError, DecisionSource, DecisionStats, DecisionStore, DecisionTable,
    Snapshot, TableDecision, unix_millis,
};
use crate::gid::Gid;

/// How long one batch INSERT may take before its outcome counts as unknown.
const INSERT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long DONE marks wait to be batched.
const DONE_DELAY: Duration = Duration::from_millis(20);
const DONE_BATCH: usize = 1024;
/// A writer connection idle longer than this is pinged before a batch goes on it.
const IDLE_PING: Duration = Duration::from_secs(1);

/// The batch INSERT. Returned gids have a COMMIT row (written now, or before); any other gid
/// of the batch was refused.
const INSERT_COMMITS: &str = "\
WITH ins AS (
  INSERT INTO wasmtx.decision (gid, node_id, decider, decider_inc, outcome, deadline)
  SELECT d.gid, $1, $1, $2, 1, to_timestamp(d.deadline_ms / 1000.0)
    FROM unnest($3::text[], $4::int8[]) AS d(gid, deadline_ms)
   WHERE to_timestamp(d.deadline_ms / 1000.0) > clock_timestamp()
     AND EXISTS (SELECT 1 FROM wasmtx.node n
                  WHERE n.node_id = $1 AND n.incarnation = $2
                    AND n.lease_until > clock_timestamp() AND n.state = 'active')
  ON CONFLICT (gid) DO NOTHING
  RETURNING gid)
SELECT gid FROM ins
UNION ALL
SELECT gid FROM wasmtx.decision WHERE gid = ANY($3) AND outcome = 1";

struct CommitRequest {
    gid: Gid,
    deadline: SystemTime,
    reply: oneshot::Sender<Result<(), DecisionError>>,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    dones: AtomicU64,
    batches: AtomicU64,
}

/// See the module doc.
pub struct PgDecisionStore {
    description: String,
    pool: PgPool,
    lease: Arc<Lease>,
    retention: Duration,
    commits: mpsc::UnboundedSender<CommitRequest>,
    dones: Arc<Mutex<Vec<Gid>>>,
    done_waiting: Arc<Notify>,
    counters: Arc<Counters>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PgDecisionStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PgDecisionStore {
    /// Starts the writer tasks. `url` is the decision database (the writer opens its own
    /// connection); `pool` serves reads, DONE marks and arbitration.
    pub fn start(
        url: &str,
        description: String,
        pool: PgPool,
        lease: Arc<Lease>,
        batch_max: usize,
        retention: Duration,
    ) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?
            .options([("synchronous_commit", "on")])
            .disable_statement_logging();
        let (commits, queue) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let dones = Arc::new(Mutex::new(Vec::new()));
        let done_waiting = Arc::new(Notify::new());
        let writer = CommitWriter {
            options,
            connection: None,
            lease: lease.clone(),
            counters: counters.clone(),
            batch_max,
            last_used: Instant::now(),
        };
        let tasks = vec![
            tokio::spawn(writer.run(queue)),
            tokio::spawn(write_dones_forever(
                pool.clone(),
                dones.clone(),
                done_waiting.clone(),
                counters.clone(),
            )),
        ];
        Ok(PgDecisionStore {
            description,
            pool,
            lease,
            retention,
            commits,
            dones,
            done_waiting,
            counters,
            tasks,
        })
    }

    fn unavailable(&self, err: sqlx::Error) -> DecisionError {
        DecisionError::Unavailable(cause(format!("{}: {err}", self.description)))
    }

    async fn outcome(&self, gid: &Gid) -> Result<Option<i16>, sqlx::Error> {
        sqlx::query_scalar("SELECT outcome FROM wasmtx.decision WHERE gid = $1")
            .bind(gid.as_str())
            .fetch_optional(&self.pool)
            .await
    }
}

fn cause(message: String) -> DecisionCause {
    Arc::new(std::io::Error::other(message))
}

#[async_trait]
impl DecisionSource for PgDecisionStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError> {
        let outcome = self.outcome(gid).await.map_err(|e| self.unavailable(e))?;
        Ok(outcome == Some(1))
    }
}

#[async_trait]
impl DecisionStore for PgDecisionStore {
    async fn record_commit(&self, gid: &Gid, deadline: SystemTime) -> Result<(), DecisionError> {
        if SystemTime::now() >= deadline {
            return Err(DecisionError::NotRecorded(cause(format!(
                "the deadline of {gid} has passed; no COMMIT was recorded"
            ))));
        }
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest {
            gid: gid.clone(),
            deadline,
            reply,
        };
        if self.commits.send(request).is_err() {
            return Err(DecisionError::NotRecorded(cause(
                "the decision writer has stopped; no COMMIT was recorded".into(),
            )));
        }
        answer.await.unwrap_or_else(|_| {
            Err(DecisionError::MaybeRecorded(cause(
                "the decision writer stopped while recording".into(),
            )))
        })
    }

    async fn record_done(&self, gid: &Gid) -> Result<(), DecisionError> {
        let mut dones = self.dones.lock().unwrap();
        dones.push(gid.clone());
        if dones.len() == 1 || dones.len() >= DONE_BATCH {
            self.done_waiting.notify_one();
        }
        Ok(())
    }

    async fn snapshot(&self) -> Result<Snapshot, DecisionError> {
        let as_of = SystemTime::now();
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT gid FROM wasmtx.decision WHERE outcome = 1 AND done_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.unavailable(e))?;
        let pending = rows.iter().filter_map(|g| Gid::parse(g).ok()).collect();
        Ok(Snapshot { pending, as_of })
    }

    async fn flush(&self) -> Result<(), DecisionError> {
        let batch = std::mem::take(&mut *self.dones.lock().unwrap());
        if batch.is_empty() {
            return Ok(());
        }
        mark_done(&self.pool, &batch, true)
            .await
            .map_err(|e| self.unavailable(e))?;
        self.counters
            .dones
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn stats(&self) -> DecisionStats {
        let batches = self.counters.batches.load(Ordering::Relaxed);
        DecisionStats {
            commits_written: self.counters.commits.load(Ordering::Relaxed),
            dones_written: self.counters.dones.load(Ordering::Relaxed),
            batches_written: batches,
            syncs: batches,
            compactions: 0,
        }
    }
}

/// Recovery's arbitration and pruning on the shared table (see the module doc).
#[async_trait]
impl DecisionTable for PgDecisionStore {
    fn participant(&self) -> &str {
        "decision log"
    }

    async fn decision(&self, gid: &Gid) -> Result<Option<TableDecision>, DecisionError> {
        let outcome = self.outcome(gid).await.map_err(|e| self.unavailable(e))?;
        Ok(outcome.map(|o| {
            if o == 1 {
                TableDecision::Commit
            } else {
                TableDecision::Abort
            }
        }))
    }

    async fn abort_unless_committed(&self, gid: &Gid) -> Result<TableDecision, DecisionError> {
        let node = gid.as_str().split('.').nth(1).unwrap_or_default();
        sqlx::query(
            "INSERT INTO wasmtx.decision (gid, node_id, decider, decider_inc, outcome, source, deadline) \
             VALUES ($1, $2, $3, $4, 2, 1, to_timestamp($5 / 1000.0)) ON CONFLICT (gid) DO NOTHING",
        )
        .bind(gid.as_str())
        .bind(node)
        .bind(self.lease.node().as_str())
        .bind(self.lease.incarnation())
        .bind(unix_millis(gid.deadline()))
        .execute(&self.pool)
        .await
        .map_err(|e| self.unavailable(e))?;
        match self.decision(gid).await? {
            Some(decision) => Ok(decision),
            None => Err(DecisionError::Unavailable(cause(format!(
                "{}: the row for {gid} is missing right after its INSERT",
                self.description
            )))),
        }
    }

    fn forget(&self, _gid: &Gid) {}

    async fn prune(
        &self,
        gid_prefix: &str,
        expired_before: SystemTime,
        margin: Duration,
        keep: &BTreeSet<Gid>,
    ) -> Result<u64, DecisionError> {
        let keep: Vec<&str> = keep.iter().map(Gid::as_str).collect();
        let pruned = sqlx::query(
            "DELETE FROM wasmtx.decision \
              WHERE starts_with(gid, $1) AND (outcome = 2 OR done_at IS NOT NULL) \
                AND deadline < to_timestamp($2 / 1000.0) \
                AND deadline < clock_timestamp() - $3 * interval '1 millisecond' \
                AND decided_at < clock_timestamp() - $4 * interval '1 millisecond' \
                AND gid <> ALL($5)",
        )
        .bind(gid_prefix)
        .bind(unix_millis(expired_before))
        .bind(millis(margin))
        .bind(millis(self.retention))
        .bind(&keep)
        .execute(&self.pool)
        .await
        .map_err(|e| self.unavailable(e))?;
        Ok(pruned.rows_affected())
    }
}

/// The group-commit writer: one batch INSERT at a time on its own connection.
struct CommitWriter {
    options: PgConnectOptions,
    connection: Option<PgConnection>,
    lease: Arc<Lease>,
    counters: Arc<Counters>,
    batch_max: usize,
    last_used: Instant,
}

impl CommitWriter {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<CommitRequest>) {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while batch.len() < self.batch_max {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.write(batch).await;
        }
    }

    async fn write(&mut self, batch: Vec<CommitRequest>) {
        let now = SystemTime::now();
        let (late, batch): (Vec<_>, Vec<_>) = batch.into_iter().partition(|r| r.deadline <= now);
        for request in late {
            let message = format!(
                "the deadline of {} has passed; no COMMIT was recorded",
                request.gid
            );
            let _ = request
                .reply
                .send(Err(DecisionError::NotRecorded(cause(message))));
        }
        if batch.is_empty() {
            return;
        }
        let Some(incarnation) = self.lease.fencing_token() else {
            refuse_all(
                batch,
                &format!(
                    "node `{}` does not hold its lease now; no COMMIT was recorded",
                    self.lease.node()
                ),
            );
            return;
        };
        let mut connection = self.connection.take();
        // A connection idle for a while may have died with the server (a restart): ping it
        // first, so the batch goes on a fresh one instead of getting a lost answer.
        if let Some(idle) = connection.as_mut()
            && self.last_used.elapsed() > IDLE_PING
            && idle.ping().await.is_err()
        {
            connection = None;
        }
        let connection = match connection {
            Some(connection) => connection,
            // Nothing was sent: a connection that cannot be opened recorded nothing.
            None => match self.options.connect().await {
                Ok(connection) => connection,
                Err(err) => {
                    refuse_all(
                        batch,
                        &format!(
                            "cannot connect to the decision database: {err}; no COMMIT was recorded"
                        ),
                    );
                    return;
                }
            },
        };
        let mut connection = connection;
        self.last_used = Instant::now();
        let gids: Vec<&str> = batch.iter().map(|r| r.gid.as_str()).collect();
        let deadlines: Vec<i64> = batch.iter().map(|r| unix_millis(r.deadline)).collect();
        let answer = tokio::time::timeout(
            INSERT_TIMEOUT,
            sqlx::query_scalar::<_, String>(INSERT_COMMITS)
                .bind(self.lease.node().as_str())
                .bind(incarnation)
                .bind(&gids)
                .bind(&deadlines)
                .fetch_all(&mut connection),
        )
        .await;
        let recorded: BTreeSet<String> = match answer {
            Ok(Ok(rows)) => {
                self.connection = Some(connection);
                rows.into_iter().collect()
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(err)) => err.to_string(),
                    _ => format!("no answer within {} s", INSERT_TIMEOUT.as_secs()),
                };
                for request in batch {
                    let message = format!(
                        "the COMMIT INSERT for {} got no clear answer ({why})",
                        request.gid
                    );
                    let _ = request
                        .reply
                        .send(Err(DecisionError::MaybeRecorded(cause(message))));
                }
                return;
            }
        };
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        let mut refused = Vec::new();
        for request in batch {
            if recorded.contains(request.gid.as_str()) {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                let _ = request.reply.send(Ok(()));
            } else {
                refused.push(request);
            }
        }
        if !refused.is_empty() {
            let why = self.why_refused(incarnation).await;
            refuse_all(refused, &why);
        }
    }

    /// Says why the database kept no row (and notices a lapsed lease at once).
    async fn why_refused(&mut self, incarnation: i64) -> String {
        let Some(connection) = self.connection.as_mut() else {
            return "the decision database refused the COMMIT".into();
        };
        let live: Option<bool> = sqlx::query_scalar(
            "SELECT incarnation = $2 AND lease_until > clock_timestamp() AND state = 'active' \
               FROM wasmtx.node WHERE node_id = $1",
        )
        .bind(self.lease.node().as_str())
        .bind(incarnation)
        .fetch_optional(connection)
        .await
        .ok()
        .flatten();
        if live == Some(true) {
            "the decision database refused the COMMIT: the deadline had passed by its clock, or recovery had recorded ABORT first; nothing was committed".into()
        } else {
            self.lease.mark_lost();
            format!(
                "the decision database refused the COMMIT: node `{}` no longer holds its lease (incarnation {incarnation}); nothing was committed",
                self.lease.node()
            )
        }
    }
}

fn refuse_all(batch: Vec<CommitRequest>, why: &str) {
    for request in batch {
        let _ = request
            .reply
            .send(Err(DecisionError::NotRecorded(cause(format!(
                "{}: {why}",
                request.gid
            )))));
    }
}

async fn mark_done(pool: &PgPool, gids: &[Gid], durable: bool) -> Result<(), sqlx::Error> {
    let gids: Vec<&str> = gids.iter().map(Gid::as_str).collect();
    let mut tx = pool.begin().await?;
    if !durable {
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "UPDATE wasmtx.decision SET done_at = clock_timestamp() \
          WHERE gid = ANY($1) AND done_at IS NULL",
    )
    .bind(&gids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn write_dones_forever(
    pool: PgPool,
    dones: Arc<Mutex<Vec<Gid>>>,
    waiting: Arc<Notify>,
    counters: Arc<Counters>,
) {
    loop {
        waiting.notified().await;
        tokio::time::sleep(DONE_DELAY).await;
        loop {
            let batch: Vec<Gid> = {
                let mut dones = dones.lock().unwrap();
                let take = dones.len().min(DONE_BATCH);
                dones.drain(..take).collect()
            };
            if batch.is_empty() {
                break;
            }
            match mark_done(&pool, &batch, false).await {
                Ok(()) => {
                    counters
                        .dones
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                // Lazy by design: a lost DONE makes recovery look at the gid again.
                Err(err) => tracing::warn!("cannot mark {} decisions done: {err}", batch.len()),
            }
        }
    }
}
