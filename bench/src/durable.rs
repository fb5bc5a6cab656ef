//! Durable writes per transaction, for `wasmtx-devbench --durable-writes`: the host's fsyncs
//! (the decision store's syncs), PostgreSQL's WAL flushes (`wal_sync` of `pg_stat_wal`) and
//! InnoDB's redo log writes (`Innodb_log_writes`; with `innodb_flush_log_at_trx_commit = 1`
//! each is flushed), counted over a pass of each variant on its own.
//!
//! The server counters are the whole server's, so nothing else should write to the same
//! servers meanwhile; each server is counted once however many participants it serves.
//! PostgreSQL backends report their counters when a transaction ends at most once a second,
//! and an idle backend within ten seconds: the pass waits that long before it reads them.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Connection;
use wasmtx::config::Config;
use wasmtx::decision_store::DecisionStore;
use wasmtx::participant::Location;

/// How long PostgreSQL may keep a backend's WAL counters before reporting them.
pub const POSTGRES_REPORT_DELAY: Duration = Duration::from_millis(10_500);

/// Counts at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    host_fsyncs: u64,
    postgres_wal_flushes: u64,
    innodb_log_writes: u64,
}

/// Durable writes per transaction of one variant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DurableWrites {
    /// Over how many transactions (units) they were counted.
    pub transactions: u64,
    pub host_fsyncs: f64,
    pub postgres_wal_flushes: f64,
    pub innodb_log_writes: f64,
    pub total: f64,
}

impl DurableWrites {
    /// What happened between `before` and `after`, over `transactions`.
    pub fn between(before: Counts, after: Counts, transactions: u64) -> Self {
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / transactions.max(1) as f64;
        let host_fsyncs = per(after.host_fsyncs, before.host_fsyncs);
        let postgres_wal_flushes = per(after.postgres_wal_flushes, before.postgres_wal_flushes);
        let innodb_log_writes = per(after.innodb_log_writes, before.innodb_log_writes);
        DurableWrites {
            transactions,
            host_fsyncs,
            postgres_wal_flushes,
            innodb_log_writes,
            total: host_fsyncs + postgres_wal_flushes + innodb_log_writes,
        }
    }
}

/// Reads the counters of the host's decision store and of every server the configuration
/// names.
pub struct DurableProbe {
    store: Option<Arc<dyn DecisionStore>>,
    postgres: Vec<String>,
    mysql: Vec<String>,
}

impl DurableProbe {
    pub fn new(config: &Config, store: Option<Arc<dyn DecisionStore>>) -> Self {
        let mut seen = Vec::new();
        let (mut postgres, mut mysql) = (Vec::new(), Vec::new());
        for spec in &config.participants {
            let (url, list) = match &spec.location {
                Location::Postgres { url } => (url, &mut postgres),
                Location::Mysql { url } => (url, &mut mysql),
                Location::Sqlite { .. } => continue,
            };
            let server = url::Url::parse(url)
                .map(|u| {
                    (
                        u.scheme().to_owned(),
                        u.host_str().map(str::to_owned),
                        u.port(),
                    )
                })
                .ok();
            if !seen.contains(&server) {
                seen.push(server);
                list.push(url.clone());
            }
        }
        DurableProbe {
            store,
            postgres,
            mysql,
        }
    }

    /// Whether a pass must wait for PostgreSQL's counters.
    pub fn has_postgres(&self) -> bool {
        !self.postgres.is_empty()
    }

    pub async fn sample(&self) -> Result<Counts, String> {
        let mut counts = Counts {
            host_fsyncs: self.store.as_ref().map_or(0, |s| s.stats().syncs),
            ..Counts::default()
        };
        for url in &self.postgres {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| format!("reading pg_stat_wal: {e}"))?;
            let syncs: i64 = sqlx::query_scalar("SELECT wal_sync FROM pg_stat_wal")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| format!("reading pg_stat_wal: {e}"))?;
            let _ = conn.close().await;
            counts.postgres_wal_flushes += syncs.max(0) as u64;
        }
        for url in &self.mysql {
            let mut conn = sqlx::MySqlConnection::connect(url)
                .await
                .map_err(|e| format!("reading Innodb_log_writes: {e}"))?;
            let row: (String, String) =
                sqlx::query_as("SHOW GLOBAL STATUS LIKE 'Innodb_log_writes'")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| format!("reading Innodb_log_writes: {e}"))?;
            let _ = conn.close().await;
            counts.innodb_log_writes += row.1.parse::<u64>().unwrap_or(0);
        }
        Ok(counts)
    }
}
