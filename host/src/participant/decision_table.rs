//! The last agent's decision table: a PostgreSQL or MySQL/MariaDB participant configured with
//! `last_agent = true` is committed in one phase after every other branch is prepared, and
//! the COMMIT decision is a row of table `wasmtx_decisions` in that same database, inserted
//! inside the branch's own transaction. So that commit *is* the durable decision: no PREPARE
//! and no phase 2 for that branch, and no decision-log write.
//!
//! ```sql
//! -- PostgreSQL (in the schema the participant's user sees first)
//! CREATE TABLE wasmtx_decisions (
//!     gid text PRIMARY KEY,
//!     decision char(1) NOT NULL CHECK (decision IN ('C', 'A')),
//!     deadline_ms bigint NOT NULL,
//!     decided_at_ms bigint NOT NULL,
//!     CONSTRAINT wasmtx_decisions_commit_in_time CHECK (decision = 'A' OR decided_at_ms < deadline_ms));
//! -- MySQL / MariaDB (in the URL's database): the same columns, gid VARCHAR(64) in ascii_bin
//! ```
//!
//! The host creates the table when it connects to a last agent and the table is missing; a
//! user who may not create tables gets a configuration error naming the statement to run, and
//! needs SELECT, INSERT and DELETE on it (checked at connect). Scripts cannot name the table
//! (the statement policy refuses it).
//!
//! The rules that keep a transaction whole:
//!
//! - **Only before the deadline, by the database's clock.** The COMMIT row carries the
//!   transaction's deadline and the database's clock at the INSERT (`decided_at_ms`); the
//!   `wasmtx_decisions_commit_in_time` constraint refuses a COMMIT decided at or after the
//!   deadline, and then nothing after the INSERT runs: the branch rolls back, and so does
//!   everything else.
//! - **One message.** The INSERT and the one-phase commit travel together (`INSERT …; COMMIT`,
//!   `INSERT …; XA END …; XA COMMIT … ONE PHASE`).
//! - **An unknown outcome is in doubt, never an abort.** If the connection is lost or killed
//!   while that message runs, the host does not know whether the row committed. It asks the
//!   table, through the arbitration below, once the database answers again; until then every
//!   other branch stays prepared, and recovery asks the same way.
//! - **The primary key arbitrates.** Whoever must give up on an undecided transaction (the
//!   host after a lost COMMIT, recovery before rolling back an expired branch) first inserts
//!   an ABORT row for its gid unless a row is there (`ON CONFLICT DO NOTHING` /
//!   `ON DUPLICATE KEY UPDATE`), then reads the row. A COMMIT row still in flight holds the
//!   key, so the ABORT insert waits until that transaction commits (the ABORT is a no-op and
//!   the row says COMMIT) or rolls back (the ABORT goes in, and no COMMIT can follow it). No
//!   clock or margin decides it.
//! - **Pruned once every branch is done.** After phase 2 committed every other branch, the
//!   host drops the COMMIT row, in batches of [`PRUNE_BATCH`] gids (one DELETE on a pool
//!   connection). Recovery drops what is left of this node's rows once their deadline (plus a
//!   margin, by the host's clock and by the database's) has passed and no branch of theirs is
//!   prepared on any participant; ABORT rows only go that way, so an ABORT outlives any
//!   COMMIT the clock check would still let in.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::ConnectOptions;

use super::server_branch::{Server, ServerProtocol, Shared};
use super::sql_common::{DriverCause, TextSql, describe};
use super::{ErrorClass, ParticipantError};
use crate::decision_store::{
    DecisionError, DecisionSource, DecisionTable, TableDecision, unix_millis,
};
use crate::gid::Gid;

/// The table's name: the statement policy refuses any script statement that names it.
pub const DECISION_TABLE: &str = "wasmtx_decisions";

/// How many finished gids the host collects before it deletes their COMMIT rows.
pub const PRUNE_BATCH: usize = 64;

/// The three statements a last agent's user must be allowed; each reads or writes no row.
const PRIVILEGE_PROBE: &str = "SELECT gid FROM wasmtx_decisions WHERE 1 = 0; \
     DELETE FROM wasmtx_decisions WHERE 1 = 0; \
     INSERT INTO wasmtx_decisions SELECT * FROM wasmtx_decisions WHERE 1 = 0";

/// `'a', 'b'`: gids are made of validated characters only.
fn quoted_list<'a>(gids: impl Iterator<Item = &'a str>) -> String {
    gids.map(|g| format!("'{g}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<P: ServerProtocol> Server<P> {
    /// Makes this participant the last agent: checks its decision table, creating it if
    /// missing, and that this user may read, insert and delete there.
    pub async fn into_last_agent(mut self) -> Result<Self, ParticipantError> {
        ensure_table(&self.shared).await?;
        self.decision_table = Some(Arc::new(ServerDecisionTable {
            shared: self.shared.clone(),
            forgotten: Mutex::new(Vec::new()),
        }));
        Ok(self)
    }
}

async fn ensure_table<P: ServerProtocol>(shared: &Shared<P>) -> Result<(), ParticipantError> {
    let server = &shared.server;
    let fail = |e: sqlx::Error| server.error("connect", describe(&e)).driver(e);
    let mut conn = server.connections.acquire().await.map_err(fail)?;
    let exists = P::Database::texts(&mut conn, P::DECISION_TABLE_EXISTS.to_owned())
        .await
        .map_err(fail)?;
    if exists.is_empty()
        && let Err(e) = P::Database::run(&mut conn, P::CREATE_DECISION_TABLE.to_owned()).await
    {
        return Err(server
            .error(
                "connect",
                format!(
                    "cannot create the last agent's decision table {DECISION_TABLE}: {}",
                    describe(&e)
                ),
            )
            .driver(e)
            .class(ErrorClass::Configuration)
            .hint(format!(
                "create it as a user who may, then grant this user SELECT, INSERT and DELETE on it: {}",
                P::CREATE_DECISION_TABLE
            )));
    }
    P::Database::run(&mut conn, PRIVILEGE_PROBE.to_owned())
        .await
        .map_err(|e| {
            server
                .error(
                    "connect",
                    format!(
                        "the last agent's decision table {DECISION_TABLE} is not usable: {}",
                        describe(&e)
                    ),
                )
                .driver(e)
                .class(ErrorClass::Configuration)
                .hint(format!(
                    "grant this user SELECT, INSERT and DELETE on {DECISION_TABLE}"
                ))
        })
}

/// The decision table of server participant `P`.
struct ServerDecisionTable<P: ServerProtocol> {
    shared: Arc<Shared<P>>,
    /// Gids whose every branch is done, waiting for the next batched DELETE.
    forgotten: Mutex<Vec<Gid>>,
}

impl<P: ServerProtocol> ServerDecisionTable<P> {
    fn error(&self, action: &'static str, err: sqlx::Error) -> ParticipantError {
        let message = format!("decision table {DECISION_TABLE}: {}", describe(&err));
        self.shared.server.error(action, message).driver(err)
    }

    /// A connection of its own, outside the pool: an arbitration may wait on a lock, and a
    /// caller that gives up on it drops the connection, which must then not be reused.
    async fn own_connection(
        &self,
        action: &'static str,
    ) -> Result<<P::Database as sqlx::Database>::Connection, ParticipantError> {
        self.shared
            .server
            .connections
            .connect_options()
            .connect()
            .await
            .map_err(|e| self.error(action, e))
    }

    async fn read(
        &self,
        conn: &mut <P::Database as sqlx::Database>::Connection,
        gid: &Gid,
        action: &'static str,
    ) -> Result<Option<TableDecision>, ParticipantError> {
        let sql = format!(
            "SELECT decision FROM {DECISION_TABLE} WHERE gid = '{}'",
            gid.as_str()
        );
        let rows = P::Database::texts(conn, sql)
            .await
            .map_err(|e| self.error(action, e))?;
        match rows.first().map(String::as_str) {
            None => Ok(None),
            Some("C") => Ok(Some(TableDecision::Commit)),
            Some("A") => Ok(Some(TableDecision::Abort)),
            Some(other) => Err(self.shared.server.error(
                action,
                format!(
                    "decision table {DECISION_TABLE} holds `{other}` for {gid}, neither C nor A"
                ),
            )),
        }
    }

    /// Deletes the rows of `gids` (already filtered) that also match `condition`.
    async fn delete(&self, gids: &[&str], condition: &str) -> Result<u64, ParticipantError> {
        if gids.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "DELETE FROM {DECISION_TABLE} WHERE gid IN ({}){condition}",
            quoted_list(gids.iter().copied())
        );
        let mut conn = self
            .shared
            .server
            .connections
            .acquire()
            .await
            .map_err(|e| self.error("prune decisions", e))?;
        P::Database::run(&mut conn, sql)
            .await
            .map_err(|e| self.error("prune decisions", e))?;
        Ok(gids.len() as u64)
    }
}

/// The table's answers as the arbiter trait gives them: the participant's error, classed
/// (a connection that failed is worth asking again, anything else is a refusal).
fn arbiter_error(err: ParticipantError) -> DecisionError {
    if err.is_retryable() {
        DecisionError::Unavailable(Arc::new(err))
    } else {
        DecisionError::NotRecorded(Arc::new(err))
    }
}

#[async_trait]
impl<P: ServerProtocol> DecisionTable for ServerDecisionTable<P> {
    fn participant(&self) -> &str {
        &self.shared.server.name
    }

    async fn decision(&self, gid: &Gid) -> Result<Option<TableDecision>, DecisionError> {
        self.read_decision(gid).await.map_err(arbiter_error)
    }

    async fn abort_unless_committed(&self, gid: &Gid) -> Result<TableDecision, DecisionError> {
        self.record_abort(gid).await.map_err(arbiter_error)
    }

    fn forget(&self, gid: &Gid) {
        let batch = {
            let mut forgotten = self.forgotten.lock().unwrap_or_else(|e| e.into_inner());
            forgotten.push(gid.clone());
            if forgotten.len() < PRUNE_BATCH {
                return;
            }
            std::mem::take(&mut *forgotten)
        };
        let table = ServerDecisionTable::<P> {
            shared: self.shared.clone(),
            forgotten: Mutex::new(Vec::new()),
        };
        tokio::spawn(async move {
            let gids: Vec<&str> = batch.iter().map(Gid::as_str).collect();
            if let Err(err) = table.delete(&gids, "").await {
                tracing::warn!("cannot prune decided rows (recovery will): {err}");
            }
        });
    }

    async fn prune(
        &self,
        gid_prefix: &str,
        expired_before: SystemTime,
        margin: Duration,
        keep: &BTreeSet<Gid>,
    ) -> Result<u64, DecisionError> {
        self.prune_rows(gid_prefix, expired_before, margin, keep)
            .await
            .map_err(arbiter_error)
    }
}

impl<P: ServerProtocol> ServerDecisionTable<P> {
    async fn read_decision(&self, gid: &Gid) -> Result<Option<TableDecision>, ParticipantError> {
        let mut conn = self.own_connection("read decision").await?;
        let found = self.read(&mut conn, gid, "read decision").await;
        let _ = sqlx::Connection::close(conn).await;
        found
    }

    async fn record_abort(&self, gid: &Gid) -> Result<TableDecision, ParticipantError> {
        let action = "record abort";
        let mut conn = self.own_connection(action).await?;
        let sql = P::record_abort_sql(gid, unix_millis(gid.deadline()));
        let outcome = match P::Database::run(&mut conn, sql).await {
            Ok(()) => self.read(&mut conn, gid, action).await,
            Err(e) => Err(self.error(action, e)),
        };
        let _ = sqlx::Connection::close(conn).await;
        match outcome? {
            Some(decision) => Ok(decision),
            None => Err(self.shared.server.error(
                action,
                format!(
                    "decision table {DECISION_TABLE} holds no row for {gid} after recording ABORT"
                ),
            )),
        }
    }

    async fn prune_rows(
        &self,
        gid_prefix: &str,
        expired_before: SystemTime,
        margin: Duration,
        keep: &BTreeSet<Gid>,
    ) -> Result<u64, ParticipantError> {
        let action = "prune decisions";
        // Expired by the host's clock and by the database's.
        let condition = format!(
            " AND deadline_ms < {} AND deadline_ms < {} - {}",
            unix_millis(expired_before),
            P::NOW_MS,
            margin.as_millis()
        );
        let sql =
            format!("SELECT gid FROM {DECISION_TABLE} WHERE gid LIKE '{gid_prefix}%'{condition}");
        let mut conn = self
            .shared
            .server
            .connections
            .acquire()
            .await
            .map_err(|e| self.error(action, e))?;
        let found = P::Database::texts(&mut conn, sql)
            .await
            .map_err(|e| self.error(action, e))?;
        drop(conn);
        let gids: Vec<&str> = found
            .iter()
            .map(String::as_str)
            .filter(|g| !keep.iter().any(|k| k.as_str() == *g))
            .collect();
        self.delete(&gids, &condition).await
    }
}

#[async_trait]
impl<P: ServerProtocol> DecisionSource for ServerDecisionTable<P> {
    fn describe(&self) -> String {
        format!(
            "decision table {DECISION_TABLE} of participant `{}`",
            self.shared.server.name
        )
    }

    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError> {
        match self.read_decision(gid).await {
            Ok(decision) => Ok(decision == Some(TableDecision::Commit)),
            Err(err) => Err(DecisionError::Unavailable(Arc::new(err))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_are_quoted_one_by_one() {
        assert_eq!(quoted_list(["a", "b"].into_iter()), "'a', 'b'");
    }
}
