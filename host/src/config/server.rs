//! `wasmtx serve`'s settings, the `[server]` section of the configuration file.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! concurrency = 16              # transactions at once (sizes the sandbox's instance pool)
//! max_connections = 16          # connections per PostgreSQL/MySQL participant
//! queue_timeout_ms = 2000       # wait for a free slot this long, then 429
//! max_timeout_ms = 60000        # the largest `timeout_ms` an invoke may ask for
//! max_upload_bytes = 33554432   # plugin uploads (32 MiB)
//! max_input_bytes = 1048576     # invoke bodies (1 MiB)
//! recovery_interval_ms = 10000  # periodic recovery; failing gids back off up to 60 s
//! history_retention_hours = 168 # finished transactions kept for status and history
//! allow_superuser = []          # participants allowed to connect as a superuser role
//!
//! [[server.tokens]]             # bearer tokens; none → loopback only, no authentication
//! name = "ops"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! scopes = ["admin", "invoke", "read"]
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The registry (publish, alias, withdraw), force-resolve, retry and recovery.
    Admin,
    /// Invoking plugins.
    Invoke,
    /// Listing plugins, transaction status, history, the in-doubt list.
    Read,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Admin => "admin",
            Scope::Invoke => "invoke",
            Scope::Read => "read",
        })
    }
}

/// One configured token: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSetting {
    /// Who holds it; recorded with what it did (e.g. a force-resolve).
    pub name: String,
    /// Lowercase hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: String,
    pub concurrency: u32,
    pub max_connections: u32,
    pub queue_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub max_upload_bytes: usize,
    pub max_input_bytes: usize,
    pub recovery_interval_ms: u64,
    pub history_retention_hours: u64,
    pub allow_superuser: Vec<String>,
    pub tokens: Vec<TokenSetting>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".into(),
            concurrency: 16,
            max_connections: 16,
            queue_timeout_ms: 2_000,
            max_timeout_ms: 60_000,
            max_upload_bytes: 32 << 20,
            max_input_bytes: 1 << 20,
            recovery_interval_ms: 10_000,
            history_retention_hours: 168,
            allow_superuser: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

impl ServerSettings {
    /// Checks every value; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("concurrency", self.concurrency as u64),
            ("max_connections", self.max_connections as u64),
            ("max_timeout_ms", self.max_timeout_ms),
            ("max_upload_bytes", self.max_upload_bytes as u64),
            ("max_input_bytes", self.max_input_bytes as u64),
            ("recovery_interval_ms", self.recovery_interval_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{key} must be at least 1"));
        }
        if self.concurrency > 1024 {
            return Err("concurrency must be at most 1024".into());
        }
        for token in &self.tokens {
            let hex_ok = token.sha256.len() == 64
                && token
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(format!(
                    "token `{}`: sha256 must be 64 lowercase hex digits, the SHA-256 of the token (printf %s \"$TOKEN\" | sha256sum)",
                    token.name
                ));
            }
            if token.scopes.is_empty() {
                return Err(format!(
                    "token `{}` has no scopes; give some of \"admin\", \"invoke\", \"read\"",
                    token.name
                ));
            }
        }
        Ok(())
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    pub fn recovery_interval(&self) -> Duration {
        Duration::from_millis(self.recovery_interval_ms)
    }

    pub fn history_retention(&self) -> Duration {
        Duration::from_secs(self.history_retention_hours * 3600)
    }
}
