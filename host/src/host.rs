//! The library's front door: a [`Host`] built from a [`Config`] owns what every command
//! and a long-running server need — the sandbox (engine, linker, compiled-component
//! cache), the participants and their pools, the coordinator and the decision store — and
//! runs transactions, recovery and inspections on them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::coordinator::{Coordinator, CoordinatorSettings, PrepareLogic};
use crate::decision_store::DecisionStats;
use crate::decisions::Decisions;
use crate::gid::{Gid, NodeId};
use crate::participant::{ParticipantError, ParticipantSlot, ServerParticipant, SpecError};
use crate::recovery::{
    Examined, ForceResolved, InDoubtFilter, InDoubtList, OperatorError, Recovery, RecoveryReport,
    Requested, ScanFailure,
};
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

impl HostOptions {
    /// With `warm` (some script runs warm), room in the sandbox's pool for one parked
    /// instance per running one; without, none.
    pub fn with_warm_room(mut self, warm: bool) -> Self {
        self.warm_instances = if warm { self.concurrency } else { 0 };
        self
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

/// What one transaction may choose for itself; what it leaves out is the host's.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Some of the configured participants, by name (case-insensitive), run in the
    /// configuration's order; all when `None`.
    pub participants: Option<Vec<String>>,
    /// The transaction's deadline from now; `limits.timeout_secs` when `None`.
    pub timeout: Option<Duration>,
    /// The gid to run under (its deadline is the transaction's, `timeout` is then unused);
    /// a new gid of this node when `None`.
    pub gid: Option<Gid>,
    /// Keep the decision of a committed transaction until [`Host::release_decision`]: the
    /// caller records the outcome somewhere of its own first (the server's history, for a
    /// request with an idempotency key), and until then the decision says what happened.
    pub keep_decision: bool,
}

/// Why a [`RunOptions`] cannot be used. Nothing was touched.
#[derive(Debug, Error)]
pub enum RunOptionsError {
    #[error("`{unknown}` is not a participant of this host; it has: {}", .known.join(", "))]
    UnknownParticipant { unknown: String, known: Vec<String> },
}

/// One transaction, its participants and gid chosen, ready to run. The gid is known before
/// it runs, so it can be recorded first.
pub struct PlannedRun {
    coordinator: Coordinator,
    gid: Gid,
}

impl PlannedRun {
    pub fn gid(&self) -> &Gid {
        &self.gid
    }

    /// The participants it runs on, in transaction order.
    pub fn participant_names(&self) -> Vec<String> {
        self.coordinator.participant_names()
    }

    /// Runs it with `logic` as its prepare logic.
    pub async fn run(self, logic: &dyn PrepareLogic, input: &str) -> TxReport {
        self.coordinator.run_as(self.gid, logic, input).await
    }
}

/// A configured host: load scripts, run transactions, recover. Cheap to share behind an
/// `Arc`; every method takes `&self`.
pub struct Host {
    config: Config,
    sandbox: Arc<Sandbox>,
    coordinator: Coordinator,
    /// The decision store and the sources recovery reads.
    decisions: Decisions,
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
        let config = &self.config;
        let cluster = Cluster::open(&config.node, &config.decision_log, &config.cluster).await?;
        let participants =
            ParticipantSlot::connect_all(&config.participants, self.options.max_connections)
                .await?;
        let shared = cluster.as_ref().map(|c| c.store().clone());
        let decisions = Decisions::open(config, &participants, shared).await?;
        let coordinator = Coordinator::new(
            CoordinatorSettings::from_config(config),
            participants,
            decisions.store().cloned(),
        );
        Ok(Host {
            config: self.config,
            sandbox: self.sandbox,
            coordinator,
            decisions,
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

    /// The coordinator itself, for tools that drive it directly (the benchmark runner).
    /// Commands and the server run transactions through [`Host::run`] and [`Host::plan`].
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// The configured participants, in transaction order.
    pub fn participants(&self) -> &[ParticipantSlot] {
        self.coordinator.participants()
    }

    /// The participants' names, in transaction order.
    pub fn participant_names(&self) -> Vec<String> {
        self.coordinator.participant_names()
    }

    /// Runs one global transaction over every participant with `logic` (a loaded script, or
    /// native [`PrepareLogic`]) as its prepare logic.
    pub async fn run(&self, logic: &dyn PrepareLogic, input: &str) -> TxReport {
        self.coordinator.run(logic, input).await
    }

    /// A transaction with the choices of `options`, ready to run.
    pub fn plan(&self, options: RunOptions) -> Result<PlannedRun, RunOptionsError> {
        let coordinator = match &options.participants {
            None => self.coordinator.clone(),
            Some(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                self.coordinator.subset(&names).map_err(|unknown| {
                    RunOptionsError::UnknownParticipant {
                        unknown: unknown.to_owned(),
                        known: self.participant_names(),
                    }
                })?
            }
        };
        let coordinator = match options.timeout {
            Some(timeout) => coordinator.with_timeout(timeout),
            None => coordinator,
        };
        let coordinator = if options.keep_decision {
            coordinator.keeping_decisions()
        } else {
            coordinator
        };
        let gid = options.gid.unwrap_or_else(|| coordinator.new_gid());
        Ok(PlannedRun { coordinator, gid })
    }

    /// Lets go of the decision a run with [`RunOptions::keep_decision`] kept.
    pub async fn release_decision(&self, gid: &Gid) {
        self.coordinator.release_decision(gid).await
    }

    /// The decision store's counters since open, if there is a store.
    pub fn decision_stats(&self) -> Option<DecisionStats> {
        self.decisions.store().map(|store| store.stats())
    }

    /// COMMITs recorded and not yet DONE: this node's and (in a cluster) other nodes'.
    /// `None` without a store, or when it cannot be read.
    pub async fn pending_commits(&self) -> Option<(usize, usize)> {
        let snapshot = self.decisions.store()?.snapshot().await.ok()?;
        let prefix = self.config.node.gid_prefix();
        let own = snapshot
            .pending
            .iter()
            .filter(|gid| gid.as_str().starts_with(&prefix))
            .count();
        Some((own, snapshot.pending.len() - own))
    }

    /// Ends the host's work cleanly: makes queued DONE marks durable and, in a cluster,
    /// gives the node's lease up so that the next process for this node starts at once.
    pub async fn close(&self) {
        if let Some(store) = self.decisions.store()
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
    /// decision source of this host (see `decisions.rs`).
    pub async fn recovery(&self) -> Result<Recovery, ScanFailure> {
        self.decisions.recovery(self.server_participants()).await
    }

    /// Recovery of another node's branches on this host's server participants, as its
    /// adopter: the shared decision log decides (the dead host's local files cannot be
    /// reached, and its SQLite participants are not touched). `None` without a cluster.
    pub fn recovery_of(&self, node: &NodeId) -> Option<Recovery> {
        self.decisions.recovery_of(node, self.server_participants())
    }

    /// What the databases and decision sources say of `gid`, of any node whose decisions
    /// this host can read. Nothing is changed.
    pub async fn examine(&self, gid: &Gid) -> Result<Examined, OperatorError> {
        self.recovery_for(&gid.node()).await?.examine(gid).await
    }

    /// Recovery of `gid`'s branches now.
    pub async fn retry(&self, gid: &Gid) -> Result<RecoveryReport, OperatorError> {
        self.recovery_for(&gid.node()).await?.retry(gid).await
    }

    /// Force-resolves `gid` as `asked`, heuristically only if `allow_heuristic` (the rules
    /// are in `recovery/operator.rs`).
    pub async fn force_resolve(
        &self,
        gid: &Gid,
        asked: Requested,
        allow_heuristic: bool,
    ) -> Result<ForceResolved, OperatorError> {
        self.recovery_for(&gid.node())
            .await?
            .force_resolve(gid, asked, allow_heuristic)
            .await
    }

    /// What is in doubt: this node's prepared branches and, in a cluster, every other
    /// node's on the shared participants (a dead node's local files are out of reach).
    pub async fn in_doubt(&self, filter: &InDoubtFilter) -> InDoubtList {
        let mut report = self.recover(true).await;
        if let Some(cluster) = &self.cluster {
            match cluster.nodes().await {
                Ok(nodes) => {
                    for row in nodes.iter().filter(|n| n.node != cluster.node().as_str()) {
                        let Ok(node) = NodeId::new(&row.node) else {
                            continue;
                        };
                        if let Some(recovery) = self.recovery_of(&node) {
                            let theirs = recovery.run(true).await;
                            report.branches.extend(theirs.branches);
                            report.failures.extend(theirs.failures);
                        }
                    }
                }
                Err(err) => report.failures.push(ScanFailure {
                    participant: "decision log".into(),
                    message: format!("cannot list the cluster's nodes: {err}"),
                }),
            }
        }
        crate::recovery::in_doubt(report, self.decisions.store(), filter, SystemTime::now()).await
    }

    /// Recovery of `node`'s branches: this host's own, or in a cluster another node's.
    async fn recovery_for(&self, node: &NodeId) -> Result<Recovery, OperatorError> {
        if *node == self.config.node {
            return self.recovery().await.map_err(OperatorError::NoDecisions);
        }
        self.recovery_of(node).ok_or_else(|| {
            OperatorError::NoDecisions(ScanFailure {
                participant: "decision log".into(),
                message: format!(
                    "node `{node}`'s decisions are in its own decision log: this host is node `{}` and shares no decision log ([decision_log] url), so it cannot resolve that node's branches",
                    self.config.node
                ),
            })
        })
    }

    fn server_participants(&self) -> Vec<Arc<dyn ServerParticipant>> {
        self.coordinator.server_participants().cloned().collect()
    }
}

fn load_script(sandbox: &Arc<Sandbox>, path: &Path) -> Result<ScriptLogic, LoadError> {
    Ok(ScriptLogic {
        sandbox: sandbox.clone(),
        script: Arc::new(sandbox.load(path)?),
        warm: None,
    })
}
