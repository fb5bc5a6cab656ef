//! What every request handler shares: the host, the registry, the history, the tokens, the
//! admission limit, the transactions running now, and whether the server is ready.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use super::auth::Auth;
use super::history::History;
use super::metrics::Metrics;
use super::problem::Problem;
use crate::cluster::LeaseStatus;
use crate::config::Config;
use crate::config::ServerSettings;
use crate::host::Host;
use crate::recovery::{InDoubtFilter, InDoubtList};
use crate::registry::{Plugins, Resolved};
use crate::script::{ScriptLogic, Warm};

/// A transaction running on this server now.
#[derive(Debug, Clone)]
pub struct Running {
    pub plugin: String,
    pub version: String,
    pub digest: String,
    pub participants: Vec<String>,
    pub started_at: i64,
}

/// Held while a request with one idempotency key runs.
pub type KeyLock = Arc<tokio::sync::Mutex<()>>;

pub struct AppState {
    pub host: Host,
    pub settings: ServerSettings,
    pub registry: Arc<Plugins>,
    pub history: History,
    pub auth: Arc<Auth>,
    pub metrics: Metrics,
    /// One permit per transaction running at once (the sandbox's instance pool).
    slots: Arc<Semaphore>,
    /// Loaded components by digest: compiled once, instantiated fresh per transaction.
    scripts: Mutex<HashMap<String, ScriptLogic>>,
    /// The warm claims of the plugin versions configured to run warm (`[server.warm]`):
    /// one per name and version, so no other plugin or version ever gets their instances.
    warm: Mutex<HashMap<(String, String), Arc<Warm>>>,
    pub running: Mutex<HashMap<String, Running>>,
    /// One lock per (plugin, idempotency key) in use: requests with one key run one at a
    /// time, so two can never both commit.
    key_locks: Mutex<HashMap<(String, String), KeyLock>>,
    /// Serializes recovery runs and force-resolves.
    pub recovery_lock: tokio::sync::Mutex<()>,
    /// Transactions' tasks: they outlive their requests and are awaited at shutdown.
    pub tasks: TaskTracker,
    ready: AtomicBool,
    not_ready_reason: Mutex<String>,
    draining: AtomicBool,
    /// Held while the server runs: one server per state directory and node.
    _lock: File,
}

/// Takes the state directory's server lock, or says who has it.
pub fn lock_state_dir(config: &Config) -> Result<File, String> {
    let path = config
        .state_dir
        .join(format!("server-{}.lock", config.node));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another `wasmtx serve` for node {} is running on the state directory {} (it holds {}); stop it or give another --state-dir or node",
            config.node,
            config.state_dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

impl AppState {
    pub async fn open(host: Host, settings: ServerSettings, lock: File) -> Result<Self, String> {
        let config = host.config();
        let registry = Arc::new(
            Plugins::open(
                &config.state_dir.join("plugins"),
                host.cluster().map(|cluster| cluster.pool().clone()),
                host.sandbox(),
            )
            .await
            .map_err(|e| format!("cannot open the plugin registry: {e}"))?,
        );
        let history_path = config
            .state_dir
            .join(format!("server-{}.sqlite", config.node));
        let history = History::open(&history_path)
            .await
            .map_err(|e| format!("cannot open {}: {e}", history_path.display()))?;
        let metrics = Metrics::install(&config.node.to_string());
        for plugin in registry.list().await {
            metrics.plugin_published(&plugin.name);
        }
        Ok(AppState {
            auth: Arc::new(Auth::new(&settings.tokens)),
            slots: Arc::new(Semaphore::new(settings.concurrency as usize)),
            host,
            settings,
            registry,
            history,
            metrics,
            scripts: Mutex::new(HashMap::new()),
            warm: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            key_locks: Mutex::new(HashMap::new()),
            recovery_lock: tokio::sync::Mutex::new(()),
            tasks: TaskTracker::new(),
            ready: AtomicBool::new(false),
            not_ready_reason: Mutex::new("start-up recovery has not finished".into()),
            draining: AtomicBool::new(false),
            _lock: lock,
        })
    }

    /// 503 unless start-up recovery has finished and the server is not shutting down.
    pub fn ensure_ready(&self) -> Result<(), Problem> {
        match self.readiness() {
            Ok(()) => Ok(()),
            Err(reason) => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                format!("the server is not ready: {reason}"),
            )),
        }
    }

    pub fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("it is shutting down".into());
        }
        if !self.ready.load(Ordering::SeqCst) {
            return Err(self.not_ready_reason.lock().unwrap().clone());
        }
        if let Some(cluster) = self.host.cluster() {
            match cluster.lease().status() {
                LeaseStatus::Held(_) => {}
                LeaseStatus::Unconfirmed => {
                    return Err(format!(
                        "the {} has not confirmed node `{}`'s lease lately",
                        cluster.describe(),
                        cluster.node()
                    ));
                }
                LeaseStatus::Lost => {
                    return Err(format!("node `{}` lost its lease", cluster.node()));
                }
            }
        }
        Ok(())
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Not ready until [`AppState::set_ready`], for `reason`.
    pub fn set_not_ready(&self, reason: String) {
        self.set_not_ready_reason(reason);
        self.ready.store(false, Ordering::SeqCst);
    }

    pub fn set_not_ready_reason(&self, reason: String) {
        *self.not_ready_reason.lock().unwrap() = reason;
    }

    pub fn draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// A slot to run a transaction in, waiting up to the queue timeout; 429 after that.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, Problem> {
        let wait = self.settings.queue_timeout();
        let queued = Instant::now();
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.metrics.queued(queued.elapsed());
                Ok(permit)
            }
            _ => Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!(
                    "all {} transaction slots stayed busy for {} ms; retry later",
                    self.settings.concurrency, self.settings.queue_timeout_ms
                ),
            )),
        }
    }

    /// What is in doubt now (`filter`'s participant and age), leaving out what runs here now.
    pub async fn in_doubt(&self, mut filter: InDoubtFilter) -> InDoubtList {
        filter.running = self.running.lock().unwrap().keys().cloned().collect();
        self.host.in_doubt(&filter).await
    }

    /// Sets the gauges read at scrape time (slots, warm instances, decision store, lease).
    pub fn sample_metrics(&self) {
        self.metrics
            .sample(self.slots_in_use(), &self.warm_counts(), &self.host);
    }

    /// Slots in use now.
    pub fn slots_in_use(&self) -> usize {
        self.settings.concurrency as usize - self.slots.available_permits()
    }

    /// The loaded component for `resolved`, loading (from the compiled cache) the first time.
    pub fn script(&self, resolved: &Resolved) -> Result<ScriptLogic, Problem> {
        let script = self.loaded(resolved)?;
        let Some(settings) = self.settings.warm.get(&resolved.name) else {
            return Ok(script);
        };
        let warm = self
            .warm
            .lock()
            .unwrap()
            .entry((resolved.name.clone(), resolved.version.clone()))
            .or_insert_with(|| Arc::new(Warm::new(*settings)))
            .clone();
        Ok(script.warm(warm))
    }

    /// Per plugin run warm: transactions that got a fresh instance and those that reused
    /// one, summed over its versions.
    pub fn warm_counts(&self) -> Vec<(String, u64, u64)> {
        let mut by_plugin: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for ((name, _), warm) in self.warm.lock().unwrap().iter() {
            let (fresh, reused) = warm.counts();
            let entry = by_plugin.entry(name.clone()).or_default();
            entry.0 += fresh;
            entry.1 += reused;
        }
        by_plugin
            .into_iter()
            .map(|(name, (fresh, reused))| (name, fresh, reused))
            .collect()
    }

    /// The loaded component of `resolved`, compiled (or read from the cache) once.
    fn loaded(&self, resolved: &Resolved) -> Result<ScriptLogic, Problem> {
        if let Some(script) = self.scripts.lock().unwrap().get(&resolved.digest) {
            return Ok(script.clone());
        }
        let script = self
            .host
            .load_published_script(&resolved.path, &resolved.digest)
            .map_err(|e| {
                Problem::internal(format!(
                    "plugin {}@{} was accepted but cannot be loaded now: {e}",
                    resolved.name, resolved.version
                ))
            })?;
        self.metrics.cache_result(script.script.cache);
        self.scripts
            .lock()
            .unwrap()
            .insert(resolved.digest.clone(), script.clone());
        Ok(script)
    }

    /// Makes the decision log's DONE records durable and gives a cluster lease up (at
    /// shutdown).
    pub async fn flush(&self) {
        self.host.close().await;
    }
}

/// One request's turn with an idempotency key: requests with the same plugin and key run one
/// after the other. Dropping it ends the turn, and forgets the key's lock once nobody else
/// holds or waits for it — on every way out of the handler, a replay or an error included.
pub struct KeyTurn {
    state: Arc<AppState>,
    id: (String, String),
    lock: KeyLock,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyTurn {
    /// Waits for the key's turn.
    pub async fn take(state: &Arc<AppState>, plugin: &str, key: &str) -> KeyTurn {
        let id = (plugin.to_owned(), key.to_owned());
        let lock = state
            .key_locks
            .lock()
            .unwrap()
            .entry(id.clone())
            .or_default()
            .clone();
        let guard = Some(lock.clone().lock_owned().await);
        KeyTurn {
            state: state.clone(),
            id,
            lock,
            guard,
        }
    }
}

impl Drop for KeyTurn {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.state.key_locks.lock().unwrap();
        // The map's reference and this turn's: no one else holds or waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.id);
        }
    }
}
