//! The `[decision_log]` and `[cluster]` sections of the configuration: where a cluster's
//! shared decisions live and how long a node's lease lasts.
//!
//! ```toml
//! [decision_log]
//! url = "postgres://wasmtx@db.internal/wasmtx"  # absent: the local file log (one node)
//! batch_max = 256                   # COMMITs per INSERT (group commit)
//! retention_hours = 168             # finished decisions kept for status lookups
//!
//! [cluster]
//! lease_ttl_ms = 15000              # a node's lease; renewed every third of it
//! takeover_grace_ms = 10000         # a survivor adopts a node silent for ttl + grace
//! api_addr = "http://10.0.0.5:8080" # shown in /v1/nodes (optional)
//! ```

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionLogSettings {
    /// A PostgreSQL URL: decisions, node leases and adoption live there, shared by every
    /// node that names the same database.
    pub url: Option<String>,
    pub batch_max: usize,
    pub retention_hours: u64,
}

impl Default for DecisionLogSettings {
    fn default() -> Self {
        DecisionLogSettings {
            url: None,
            batch_max: 256,
            retention_hours: 168,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    pub lease_ttl_ms: u64,
    pub takeover_grace_ms: u64,
    pub api_addr: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            lease_ttl_ms: 15_000,
            takeover_grace_ms: 10_000,
            api_addr: None,
        }
    }
}

impl DecisionLogSettings {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "[decision_log] url must be a postgres:// URL (the shared decision log lives in PostgreSQL), not {url:?}; leave it out for the local file log"
            ));
        }
        if !(1..=4096).contains(&self.batch_max) {
            return Err(format!(
                "[decision_log] batch_max must be 1..=4096, not {}",
                self.batch_max
            ));
        }
        if self.retention_hours == 0 {
            return Err("[decision_log] retention_hours must be at least 1".into());
        }
        Ok(())
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours * 3600)
    }
}

impl ClusterSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1_000..=600_000).contains(&self.lease_ttl_ms) {
            return Err(format!(
                "[cluster] lease_ttl_ms must be 1000..=600000, not {}",
                self.lease_ttl_ms
            ));
        }
        if self.takeover_grace_ms > 3_600_000 {
            return Err(format!(
                "[cluster] takeover_grace_ms must be at most 3600000, not {}",
                self.takeover_grace_ms
            ));
        }
        Ok(())
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    pub fn takeover_grace(&self) -> Duration {
        Duration::from_millis(self.takeover_grace_ms)
    }
}
