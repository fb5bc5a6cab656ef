//! The library's front door: a [`Host`] built from a [`Config`] owns what every command
//! and a long-running server need — the sandbox (engine, linker, compiled-component
//! cache), the participants and their pools, the coordinator and the decision store — and
//! runs transactions, recovery and inspections on them.

use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::decision_log::{DecisionLog, DecisionLogOptions};
use crate::decision_store::{DecisionSource, DecisionStore};
use crate::gid::NodeId;
use crate::participant::decision_table::DecisionTable;
use crate::participant::sqlite_decisions::SqliteDecisionTable;
use crate::participant::{ParticipantError, SpecError};
use crate::recovery::{Recovery, RecoveryReport, ScanFailure};
use crate::report::{ErrorKind, TxError, TxReport};
use crate::script::{Inspection, LoadError, Sandbox, ScriptLogic};

/// How big a host is.
#[derive(Debug, Clone, Copy)]
pub struct HostOptions {
    /// Scripts running at once (sizes the sandbox's instance pool).
    pub concurrency: u32,
    /// Connections per server participant.
    pub max_connections: u32,
    /// Script instances that may wait between the transactions of plugins run warm
    /// (0: every transaction gets a fresh instance).
    pub warm_instances: u32,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            concurrency: 1,
            max_connections: 2,
            warm_instances: 0,
        }
    }
}

/// Why a host could not be opened. Nothing was touched in any case.
#[derive(Debug, Error)]
pub enum HostError {
    /// A participant specification that cannot work here (e.g. an SQLite file's folder
    /// missing).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The script engine could not be set up with these limits.
    #[error("cannot set up the script engine: {0}")]
    Engine(String),
    /// A participant could not be connected, or the decision store opened.
    #[error("{0}; nothing was started")]
    Participant(#[from] ParticipantError),
    /// The shared decision log could not be opened, or this node's lease claimed.
    #[error("{0}; nothing was started")]
    Cluster(#[from] ClusterError),
}

impl From<HostError> for TxError {
    fn from(err: HostError) -> Self {
        match err {
            HostError::Spec(_) | HostError::Engine(_) => {
                TxError::new(ErrorKind::Input, err.to_string())
            }
            HostError::Participant(err) => TxError::participant(&err, "; nothing was started"),
            HostError::Cluster(_) => TxError::new(ErrorKind::Participant, err.to_string()),
        }
    }
}

/// A configured host: load scripts, run transactions, recover. Cheap to share behind an
/// `Arc`; every method takes `&self`.
pub struct Host {
    config: Config,
    sandbox: Arc<Sandbox>,
    coordinator: Coordinator,
    /// With `[decision_log] url`: the shared decision log and this node's lease.
    cluster: Option<Arc<Cluster>>,
}

/// A host whose configuration is checked and whose sandbox is ready, before anything is
/// connected: load scripts here so a bad script is refused before any database is touched.
pub struct HostBuilder {
    config: Config,
    sandbox: Arc<Sandbox>,
    options: HostOptions,
}

impl HostBuilder {
    /// Reads, checks and compiles a script component (see [`Host::load_script`]).
    pub fn load_script(&self, path: &Path) -> Result<ScriptLogic, LoadError> {
        load_script(&self.sandbox, path)
    }

    /// Joins the cluster if `[decision_log] url` is set (claiming this node's lease), then
    /// connects the participants (and, without a cluster, when two or more are servers,
    /// opens the decision log).
    pub async fn connect(self) -> Result<Host, HostError> {
        let cluster = Cluster::open(&self.config).await?;
        let shared = cluster
            .as_ref()
            .map(|c| c.store().clone() as Arc<dyn DecisionStore>);
        let coordinator =
            Coordinator::connect(&self.config, self.options.max_connections, shared).await?;
        Ok(Host {
            config: self.config,
            sandbox: self.sandbox,
            coordinator,
            cluster,
        })
    }
}

impl Host {
    /// Checks the configuration and sets up the sandbox; nothing is connected yet.
    pub fn builder(config: Config, options: HostOptions) -> Result<HostBuilder, HostError> {
        for spec in &config.participants {
            spec.check_local()?;
        }
        let sandbox = Sandbox::with_warm_instances(
            &config.limits,
            options.concurrency,
            options.warm_instances,
            config.cache_dir.clone(),
        )
        .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        Ok(HostBuilder {
            config,
            sandbox: Arc::new(sandbox),
            options,
        })
    }

    /// [`Host::builder`], then [`HostBuilder::connect`].
    pub async fn open(config: Config, options: HostOptions) -> Result<Self, HostError> {
        Self::builder(config, options)?.connect().await
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// The cluster this host belongs to, if `[decision_log] url` is set.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Reads, checks and compiles (or loads from the cache) a script component.
    pub fn load_script(&self, path: &Path) -> Result<ScriptLogic, LoadError> {
        load_script(&self.sandbox, path)
    }

    /// [`Host::load_script`] of a published plugin's component, whose bytes the registry
    /// checked against `digest` (see [`Sandbox::load_published`]).
    pub fn load_published_script(
        &self,
        path: &Path,
        digest: &str,
    ) -> Result<ScriptLogic, LoadError> {
        Ok(ScriptLogic {
            sandbox: self.sandbox.clone(),
            script: Arc::new(self.sandbox.load_published(path, digest)?),
            warm: None,
        })
    }

    /// Runs one global transaction with `script` as its prepare logic.
    pub async fn run(&self, script: &ScriptLogic, input: &str) -> TxReport {
        self.coordinator.run(script, input).await
    }

    /// Ends the host's work cleanly: makes queued DONE marks durable and, in a cluster,
    /// gives the node's lease up so that the next process for this node starts at once.
    pub async fn close(&self) {
        if let Some(store) = self.coordinator.decision_store()
            && let Err(err) = store.flush().await
        {
            tracing::warn!("cannot flush the decision log: {err}");
        }
        if let Some(cluster) = &self.cluster {
            cluster.close().await;
        }
    }

    /// What a component is and whether this host can run it.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, LoadError> {
        self.sandbox.inspect(path)
    }

    /// Resolves (or with `dry_run`, only lists) this node's branches left prepared, using
    /// every decision source of this host (see [`Host::recovery`]).
    pub async fn recover(&self, dry_run: bool) -> RecoveryReport {
        match self.recovery().await {
            Ok(recovery) => recovery.run(dry_run).await,
            Err(failure) => RecoveryReport {
                branches: Vec::new(),
                failures: vec![failure],
            },
        }
    }

    /// Recovery of this node's branches on the server participants, consulting every
    /// decision source of this host: the decision store (or the state directory's log, if
    /// one exists), the SQLite coordinator file and the last agent's decision table.
    pub async fn recovery(&self) -> Result<Recovery, ScanFailure> {
        let store = match self.coordinator.decision_store() {
            Some(store) => Some(store.clone()),
            None => self.existing_decision_log().await?,
        };
        let sqlite_decisions: Arc<dyn DecisionSource> = Arc::new(SqliteDecisionTable::new(
            self.config.sqlite_coordinator_path(),
        ));
        Ok(Recovery::new(
            &self.config.node,
            self.coordinator.server_participants().cloned().collect(),
            store,
            vec![sqlite_decisions],
        )
        .with_decision_tables(self.decision_tables()))
    }

    /// Recovery of another node's branches on this host's server participants, as its
    /// adopter: the shared decision log decides (the dead host's local files cannot be
    /// reached, and its SQLite participants are not touched). `None` without a cluster.
    pub fn recovery_of(&self, node: &NodeId) -> Option<Recovery> {
        let cluster = self.cluster.as_ref()?;
        Some(
            Recovery::new(
                node,
                self.coordinator.server_participants().cloned().collect(),
                Some(cluster.store().clone() as Arc<dyn DecisionStore>),
                Vec::new(),
            )
            .with_decision_tables(self.decision_tables()),
        )
    }

    /// Recovery of `node`'s branches: this host's own [`Host::recovery`], or in a cluster
    /// another node's ([`Host::recovery_of`]).
    pub async fn recovery_for(&self, node: &NodeId) -> Result<Recovery, ScanFailure> {
        if *node == self.config.node {
            return self.recovery().await;
        }
        self.recovery_of(node).ok_or_else(|| ScanFailure {
            participant: "decision log".into(),
            message: format!(
                "node `{node}`'s decisions are in its own decision log: this host is node `{}` and shares no decision log ([decision_log] url), so it cannot resolve that node's branches",
                self.config.node
            ),
        })
    }

    /// Where recovery records ABORT before a rollback: every last agent's table, and the
    /// shared decision log.
    fn decision_tables(&self) -> Vec<Arc<dyn DecisionTable>> {
        let mut tables: Vec<Arc<dyn DecisionTable>> = self
            .coordinator
            .server_participants()
            .filter_map(|p| p.decision_table())
            .collect();
        if let Some(cluster) = &self.cluster {
            tables.push(cluster.store().clone());
        }
        tables
    }

    /// The state directory's decision log if the file exists (a host whose participants
    /// need no log still recovers what an earlier configuration decided).
    async fn existing_decision_log(&self) -> Result<Option<Arc<dyn DecisionStore>>, ScanFailure> {
        let path = self.config.decision_log_path();
        if !path.exists() {
            return Ok(None);
        }
        match DecisionLog::open_async(&path, DecisionLogOptions::default()).await {
            Ok(log) => Ok(Some(Arc::new(log))),
            Err(err) => Err(ScanFailure {
                participant: "decision log".into(),
                message: err.to_string(),
            }),
        }
    }
}

fn load_script(sandbox: &Arc<Sandbox>, path: &Path) -> Result<ScriptLogic, LoadError> {
    Ok(ScriptLogic {
        sandbox: sandbox.clone(),
        script: Arc::new(sandbox.load(path)?),
        warm: None,
    })
}
