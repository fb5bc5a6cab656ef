//! Which decision store a host records its COMMITs in, and which decision sources its
//! recovery reads: the one place that chooses among them.
//!
//! | configuration | the coordinator records COMMIT in | recovery also reads |
//! |---|---|---|
//! | `[decision_log] url` (a cluster) | the cluster's PostgreSQL store (`cluster/store.rs`) | it, for every node's gids; it arbitrates too |
//! | two or more server participants | the file log `state_dir/decisions-<node>.log` | — |
//! | fewer | nothing (one resource commits in one phase; an SQLite group's commit is its decision) | the file log, if an earlier configuration left one |
//! | SQLite participants | the SQLite coordinator file, inside the group's own commit | the SQLite coordinator file (always) |
//! | a last agent | its table `wasmtx_decisions`, inside its own commit | every last agent's table, which arbitrates before a rollback |
//!
//! Another node's gids (in a cluster) are recovered from the shared store alone: the dead
//! host's local files cannot be reached.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::PgDecisionStore;
use crate::config::Config;
use crate::decision_log::{DecisionLog, DecisionLogOptions};
use crate::decision_store::{DecisionSource, DecisionStore, DecisionTable};
use crate::gid::NodeId;
use crate::participant::sqlite_decisions::SqliteDecisionTable;
use crate::participant::{ParticipantError, ParticipantSlot, ServerParticipant};
use crate::recovery::{Recovery, ScanFailure};

/// A host's decision store and sources.
pub struct Decisions {
    node: NodeId,
    /// Where the coordinator records COMMIT decisions.
    store: Option<Arc<dyn DecisionStore>>,
    /// A cluster's shared store: the store above, and a source and arbiter for every node.
    shared: Option<Arc<PgDecisionStore>>,
    /// The last agents' tables.
    last_agents: Vec<Arc<dyn DecisionTable>>,
    decision_log_path: PathBuf,
    sqlite_coordinator: PathBuf,
}

impl Decisions {
    /// Chooses for `participants` as configured (see the module's table); `shared` is the
    /// cluster's store when `[decision_log] url` is set. Opens the file log when it is the
    /// store.
    pub async fn open(
        config: &Config,
        participants: &[ParticipantSlot],
        shared: Option<Arc<PgDecisionStore>>,
    ) -> Result<Decisions, ParticipantError> {
        let servers: Vec<&Arc<dyn ServerParticipant>> = participants
            .iter()
            .filter_map(ParticipantSlot::server)
            .collect();
        let store: Option<Arc<dyn DecisionStore>> = match &shared {
            Some(shared) => Some(shared.clone()),
            None if servers.len() >= 2 => {
                let log = DecisionLog::open_async(
                    &config.decision_log_path(),
                    DecisionLogOptions::default(),
                )
                .await
                .map_err(|e| ParticipantError::new("decision log", "open", e))?;
                Some(Arc::new(log))
            }
            None => None,
        };
        Ok(Decisions {
            node: config.node.clone(),
            store,
            shared,
            last_agents: servers.iter().filter_map(|p| p.decision_table()).collect(),
            decision_log_path: config.decision_log_path(),
            sqlite_coordinator: config.sqlite_coordinator_path(),
        })
    }

    /// Where the coordinator records COMMIT decisions, if anywhere.
    pub fn store(&self) -> Option<&Arc<dyn DecisionStore>> {
        self.store.as_ref()
    }

    /// Recovery of this node's branches on `participants`, consulting every decision
    /// source: the store (or the state directory's log, if one exists), the SQLite
    /// coordinator file and the last agents' tables.
    pub async fn recovery(
        &self,
        participants: Vec<Arc<dyn ServerParticipant>>,
    ) -> Result<Recovery, ScanFailure> {
        let store = match &self.store {
            Some(store) => Some(store.clone()),
            None => self.existing_decision_log().await?,
        };
        let sqlite_decisions: Arc<dyn DecisionSource> =
            Arc::new(SqliteDecisionTable::new(&self.sqlite_coordinator));
        Ok(
            Recovery::new(&self.node, participants, store, vec![sqlite_decisions])
                .with_decision_tables(self.arbiters()),
        )
    }

    /// Recovery of another node's branches on `participants`, as its adopter: the shared
    /// store decides. `None` without a cluster.
    pub fn recovery_of(
        &self,
        node: &NodeId,
        participants: Vec<Arc<dyn ServerParticipant>>,
    ) -> Option<Recovery> {
        let shared = self.shared.clone()?;
        Some(
            Recovery::new(node, participants, Some(shared), Vec::new())
                .with_decision_tables(self.arbiters()),
        )
    }

    /// Where recovery records ABORT before a rollback: every last agent's table, and the
    /// shared store.
    fn arbiters(&self) -> Vec<Arc<dyn DecisionTable>> {
        let mut tables = self.last_agents.clone();
        if let Some(shared) = &self.shared {
            tables.push(shared.clone());
        }
        tables
    }

    /// The state directory's decision log if the file exists (a host whose participants
    /// need no log still recovers what an earlier configuration decided).
    async fn existing_decision_log(&self) -> Result<Option<Arc<dyn DecisionStore>>, ScanFailure> {
        if !self.decision_log_path.exists() {
            return Ok(None);
        }
        match DecisionLog::open_async(&self.decision_log_path, DecisionLogOptions::default()).await
        {
            Ok(log) => Ok(Some(Arc::new(log))),
            Err(err) => Err(ScanFailure {
                participant: "decision log".into(),
                message: err.to_string(),
            }),
        }
    }
}
