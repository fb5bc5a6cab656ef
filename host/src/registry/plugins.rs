//! The registry a server serves: its own directory, or, when the node belongs to a cluster,
//! the cluster's registry in PostgreSQL (`postgres.rs`) mirrored into that directory.
//!
//! In a cluster every write goes to PostgreSQL first and the mirror follows. Mirrors
//! refresh when a write is announced (`LISTEN`), at least every [`POLL`], before a read
//! route answers, and when an invocation names a plugin or version the mirror does not know
//! yet — so a version published on one node can be invoked on any other at once, while an
//! alias change or a withdrawal reaches the other nodes' invocations within the
//! announcement's delay (at most [`POLL`]). A component fetched by a mirror is compiled
//! into the local cache before it is first invoked. When PostgreSQL cannot be reached,
//! reads serve the last state mirrored and writes fail with a retryable error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;

use super::index::Index;
use super::postgres::{CHANGES, PgRegistry};
use super::{
    PluginDetail, PluginSummary, Published, Registry, RegistryError, Resolved, Upload, VersionInfo,
    alias_change, withdrawal,
};
use crate::script::Sandbox;

/// How often a mirror checks the shared registry's generation without an announcement.
pub const POLL: Duration = Duration::from_secs(1);

/// The plugins a server can invoke. `Send + Sync`.
pub struct Plugins {
    local: Arc<Registry>,
    /// Checks uploads and compiles what a mirror fetches.
    sandbox: Arc<Sandbox>,
    shared: Option<Shared>,
}

struct Shared {
    store: Arc<PgRegistry>,
    watcher: JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Plugins {
    /// Opens the registry under `dir`; with `cluster_db`, the cluster's registry: what
    /// `dir` held before is added to it (see [`PgRegistry::import`]), `dir` becomes its
    /// mirror, and a task keeps the mirror current.
    pub async fn open(
        dir: &Path,
        cluster_db: Option<PgPool>,
        sandbox: &Arc<Sandbox>,
    ) -> Result<Plugins, RegistryError> {
        let local = Arc::new(Registry::open(dir)?);
        let Some(pool) = cluster_db else {
            return Ok(Plugins {
                local,
                sandbox: sandbox.clone(),
                shared: None,
            });
        };
        let store = Arc::new(PgRegistry::new(pool));
        store.import(&local).await?;
        let fetched = store.refresh(&local).await?;
        compile(sandbox, &local, fetched).await;
        let watcher = tokio::spawn(watch(store.clone(), local.clone(), sandbox.clone()));
        Ok(Plugins {
            local,
            sandbox: sandbox.clone(),
            shared: Some(Shared { store, watcher }),
        })
    }

    /// Resolves `selector` of `name` (see [`Registry::resolve`]). In a cluster, a name or
    /// version the mirror does not know makes it refresh first.
    pub async fn resolve(
        &self,
        name: &str,
        selector: Option<&str>,
    ) -> Result<Resolved, RegistryError> {
        match self.local.resolve(name, selector) {
            Err(RegistryError::PluginNotFound { .. } | RegistryError::VersionNotFound { .. })
                if self.shared.is_some() =>
            {
                self.refresh().await;
                self.local.resolve(name, selector)
            }
            resolved => resolved,
        }
    }

    pub async fn list(&self) -> Vec<PluginSummary> {
        self.refresh().await;
        self.local.list()
    }

    pub async fn show(&self, name: &str) -> Result<PluginDetail, RegistryError> {
        self.refresh().await;
        self.local.show(name)
    }

    pub async fn version(&self, name: &str, version: &str) -> Result<VersionInfo, RegistryError> {
        self.refresh().await;
        self.local.version(name, version)
    }

    /// The local file of a component (see [`Registry::blob_path`]).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.local.blob_path(digest)
    }

    /// Checks and publishes a component (see [`Registry::publish`]); the check, which
    /// compiles it, runs off the async threads.
    pub async fn publish(
        &self,
        name: String,
        version: String,
        bytes: Vec<u8>,
        published_by: Option<String>,
    ) -> Result<Published, RegistryError> {
        let (local, sandbox) = (self.local.clone(), self.sandbox.clone());
        let Some(shared) = &self.shared else {
            return off_async(move || {
                local.publish(&sandbox, &name, &version, &bytes, published_by.as_deref())
            })
            .await;
        };
        // Check against the cluster's versions as they are now, not as last mirrored.
        self.refresh().await;
        let bytes = Arc::new(bytes);
        let upload = {
            let (checker, bytes) = (local.clone(), bytes.clone());
            off_async(move || {
                checker.check_upload(&sandbox, &name, &version, &bytes, published_by.as_deref())
            })
            .await?
        };
        let upload = match upload {
            Upload::Same(published) => return Ok(published),
            Upload::New(upload) => upload,
        };
        let published = shared
            .store
            .write(|index| upload.record(index), |_| Ok(bytes.to_vec()))
            .await?;
        if published.created {
            let digest = upload.entry.digest.clone();
            if let Err(e) = local.keep_blob(upload.staged, &digest) {
                tracing::warn!(
                    digest,
                    "published, but not kept here (the mirror fetches it): {e}"
                );
            }
        }
        self.refresh().await;
        Ok(published)
    }

    /// Points an alias at a version (see [`Registry::set_alias`]).
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<PluginDetail, RegistryError> {
        self.apply(alias_change(name, alias, version)?).await
    }

    /// Withdraws a version (see [`Registry::withdraw`]).
    pub async fn withdraw(&self, name: &str, version: &str) -> Result<VersionInfo, RegistryError> {
        self.apply(withdrawal(name, version)?).await
    }

    /// Applies a change that adds no version: to the local index, or to the cluster's and
    /// then the mirror.
    async fn apply<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<(T, bool), RegistryError>,
    ) -> Result<T, RegistryError> {
        match &self.shared {
            None => self.local.write(change),
            Some(shared) => {
                let result = shared.store.write(change, no_new_blobs).await?;
                self.refresh().await;
                Ok(result)
            }
        }
    }

    /// Brings the mirror up to the cluster's registry; a failure is logged and the last
    /// state mirrored is served.
    async fn refresh(&self) {
        if let Some(shared) = &self.shared {
            sync(&shared.store, &self.local, &self.sandbox).await;
        }
    }
}

/// Keeps a mirror current: refreshes on every announced write and every [`POLL`]. A lost
/// listening connection is re-opened; until then the poll alone keeps the mirror current.
async fn watch(store: Arc<PgRegistry>, local: Arc<Registry>, sandbox: Arc<Sandbox>) {
    let mut listener: Option<PgListener> = None;
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if listener.is_none() {
            listener = listen(store.pool()).await;
        }
        tokio::select! {
            _ = poll.tick() => {}
            announced = next_announcement(&mut listener) => {
                if !announced {
                    listener = None;
                }
            }
        }
        sync(&store, &local, &sandbox).await;
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let listening = async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANGES).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match listening.await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!("cannot listen for plugin registry changes (polling instead): {e}");
            None
        }
    }
}

/// Waits for a write to be announced: `false` when the listening connection was lost.
async fn next_announcement(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(listener) => matches!(listener.try_recv().await, Ok(Some(_))),
        None => std::future::pending().await,
    }
}

/// One refresh of the mirror, compiling what it fetched; a failure is logged.
async fn sync(store: &PgRegistry, local: &Arc<Registry>, sandbox: &Arc<Sandbox>) {
    match store.refresh(local).await {
        Ok(fetched) => compile(sandbox, local, fetched).await,
        Err(e) => tracing::warn!("the plugin registry mirror is not current: {e}"),
    }
}

/// Compiles fetched components into the local cache, off the async threads, so their first
/// invocation loads them from it.
async fn compile(sandbox: &Arc<Sandbox>, local: &Arc<Registry>, digests: Vec<String>) {
    if digests.is_empty() {
        return;
    }
    let (sandbox, local) = (sandbox.clone(), local.clone());
    let compiled = off_async(move || {
        for digest in digests {
            if let Err(e) = sandbox.load(&local.blob_path(&digest)) {
                tracing::warn!(
                    digest,
                    "a component fetched from the cluster does not load: {e}"
                );
            }
        }
        Ok(())
    });
    if let Err(e) = compiled.await {
        tracing::warn!("cannot compile fetched components: {e}");
    }
}

/// Runs blocking registry work (checks that compile, file syncs) on the blocking pool.
async fn off_async<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(RegistryError::io(
            "the plugin registry",
            "run a check in",
            std::io::Error::other(e),
        ))
    })
}

/// The blob source of a write that adds no version.
fn no_new_blobs(digest: &str) -> Result<Vec<u8>, RegistryError> {
    Err(RegistryError::io(
        format!("the component {digest}"),
        "share",
        std::io::Error::other("this change adds no version"),
    ))
}
