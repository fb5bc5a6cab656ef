//! A shared decision log in PostgreSQL, so that several hosts form one cluster: their
//! decisions live in one database (`store.rs`), each holds its node id with a lease
//! (`lease.rs`), and a survivor adopts a node whose lease has lapsed past a grace period and
//! runs its recovery (`adoption.rs`). The tables are in `schema.rs`; the settings
//! (`[decision_log]`, `[cluster]`) in `config/cluster.rs`.
//!
//! Safety does not rest on clocks: a COMMIT row is written only before the gid's deadline
//! and only under a live lease, both judged by PostgreSQL's clock inside the INSERT, and the
//! decision's primary key lets only one of a COMMIT and recovery's ABORT win. Leases keep a
//! paused or cut-off host from deciding new transactions and tell survivors what to adopt.

mod adoption;
mod lease;
mod schema;
mod store;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use thiserror::Error;
use tokio::task::JoinHandle;

use crate::config::{ClusterSettings, DecisionLogSettings};
pub use adoption::{Adopted, NodeRow};
pub use lease::{ClaimError, Lease, LeaseStatus};
pub use schema::SCHEMA;
pub use store::PgDecisionStore;

use crate::gid::NodeId;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("[decision_log] url {url}: {message}")]
    Url { url: String, message: String },
    #[error("cannot connect to the decision database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "cannot create the tables of the decision database {url} ({source}); let this user create schema `wasmtx`, or have an owner run the statements in README (\"Running a cluster\") first"
    )]
    Schema {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

/// This host's membership of a cluster: the decision database, its lease, its store.
pub struct Cluster {
    settings: ClusterSettings,
    description: String,
    pool: PgPool,
    lease: Arc<Lease>,
    store: Arc<PgDecisionStore>,
    heartbeat: JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Cluster {
    /// Connects to `[decision_log] url`, creates the tables if missing, claims `node`'s
    /// lease and starts renewing it. `None` when no URL is configured.
    pub async fn open(
        node: &NodeId,
        decision_log: &DecisionLogSettings,
        settings: &ClusterSettings,
    ) -> Result<Option<Arc<Cluster>>, ClusterError> {
        let Some(url) = decision_log.url.clone() else {
            return Ok(None);
        };
        let url_error = |message: String| ClusterError::Url {
            url: redact(&url),
            message,
        };
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| url_error(e.to_string()))?
            .options([("synchronous_commit", "on")])
            .disable_statement_logging();
        let description = format!(
            "decision log postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let pool = PgPoolOptions::new()
            // Lease, adoption, DONE marks, the registry and its change listener.
            .max_connections(6)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|source| ClusterError::Connect {
                url: redact(&url),
                source,
            })?;
        schema::ensure(&pool)
            .await
            .map_err(|source| ClusterError::Schema {
                url: redact(&url),
                source,
            })?;
        let settings = settings.clone();
        let lease = Arc::new(
            Lease::claim(
                pool.clone(),
                node.clone(),
                settings.lease_ttl(),
                settings.api_addr.clone(),
            )
            .await?,
        );
        let store = Arc::new(
            PgDecisionStore::start(
                &url,
                description.clone(),
                pool.clone(),
                lease.clone(),
                decision_log.batch_max,
                decision_log.retention(),
            )
            .map_err(|e| url_error(e.to_string()))?,
        );
        let heartbeat = tokio::spawn(renew_forever(lease.clone()));
        Ok(Some(Arc::new(Cluster {
            settings,
            description,
            pool,
            lease,
            store,
            heartbeat,
        })))
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    pub fn node(&self) -> &NodeId {
        self.lease.node()
    }

    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    pub fn store(&self) -> &Arc<PgDecisionStore> {
        &self.store
    }

    /// The decision database, which also holds the cluster's plugin registry.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Adopts every node whose lease lapsed more than the grace period ago and that no
    /// other live node is adopting (see `adoption.rs`).
    pub async fn adopt(&self) -> Result<Vec<Adopted>, sqlx::Error> {
        adoption::adopt(&self.pool, self.node(), &self.settings).await
    }

    /// Every node row, for `/v1/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, sqlx::Error> {
        adoption::nodes(&self.pool).await
    }

    /// Stops renewing and gives the lease up (clean shutdown).
    pub async fn close(&self) {
        self.heartbeat.abort();
        self.lease.release().await;
    }
}

/// Renews the lease every third of its TTL.
async fn renew_forever(lease: Arc<Lease>) {
    let mut tick = tokio::time::interval(lease.ttl() / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(err) = lease.renew().await {
            tracing::warn!(node = %lease.node(), "cannot renew the node's lease: {err}");
        }
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
