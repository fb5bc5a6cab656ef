//! `wasmtx serve`'s settings, the `[server]` section of the configuration file.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! tls_cert = "server.pem"       # TLS (1.2 and 1.3): certificate chain and key, PEM;
//! tls_key = "server.key"        #   reloaded when they change and on SIGHUP
//! tls_client_ca = "clients.pem" # optional: ask for client certificates signed by this CA
//! concurrency = 16              # transactions at once (sizes the sandbox's instance pool)
//! max_connections = 16          # connections per PostgreSQL/MySQL participant
//! queue_timeout_ms = 2000       # wait for a free slot this long, then 429
//! max_timeout_ms = 60000        # the largest `timeout_ms` an invoke may ask for
//! max_upload_bytes = 33554432   # plugin uploads (32 MiB)
//! max_input_bytes = 1048576     # invoke bodies (1 MiB)
//! recovery_interval_ms = 10000  # periodic recovery; failing gids back off up to 60 s
//! history_retention_hours = 168 # finished transactions kept for status and history (a
//!                               #   fraction is allowed: 0.25 is 15 minutes)
//! allow_superuser = []          # participants allowed to connect as a superuser role
//!
//! [server.warm.transfer]        # opt-in: plugin `transfer` reuses instances (any version,
//! max_uses = 1000               #   each its own): transactions per instance
//! idle_secs = 60                #   dropped after this long unused
//!
//! [[server.tokens]]             # bearer tokens; none → loopback only, no authentication
//! name = "ops"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! scopes = ["admin", "invoke", "read"]
//!
//! [[server.tokens]]             # or a client certificate (needs tls_client_ca), or both
//! name = "batch"
//! client_cert_sha256 = "…"      # SHA-256 of the certificate's DER
//! scopes = ["invoke"]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::script::WarmSettings;

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

/// One configured credential and its scopes: a bearer token (only the SHA-256 of the secret
/// is kept), a client certificate (its SHA-256 fingerprint), or both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSetting {
    /// Who holds it; recorded with what it did (e.g. a force-resolve).
    pub name: String,
    /// Lowercase hex SHA-256 of the bearer token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: Option<String>,
    /// Lowercase hex SHA-256 of a client certificate (DER) that authenticates as this
    /// holder without a bearer token (`openssl x509 -in client.pem -outform der | sha256sum`);
    /// needs `tls_client_ca`, which the certificate must be signed by.
    pub client_cert_sha256: Option<String>,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: String,
    /// Serve HTTPS with this certificate chain (PEM), and `tls_key`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Ask TLS clients for a certificate signed by this CA (PEM); a client without one may
    /// still connect.
    pub tls_client_ca: Option<PathBuf>,
    pub concurrency: u32,
    pub max_connections: u32,
    pub queue_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub max_upload_bytes: usize,
    pub max_input_bytes: usize,
    pub recovery_interval_ms: u64,
    pub history_retention_hours: f64,
    pub allow_superuser: Vec<String>,
    pub tokens: Vec<TokenSetting>,
    /// Plugins (by name) whose instances serve several transactions: trusted plugins only
    /// (README, "Warm instances").
    pub warm: BTreeMap<String, WarmSettings>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            concurrency: 16,
            max_connections: 16,
            queue_timeout_ms: 2_000,
            max_timeout_ms: 60_000,
            max_upload_bytes: 32 << 20,
            max_input_bytes: 1 << 20,
            recovery_interval_ms: 10_000,
            history_retention_hours: 168.0,
            allow_superuser: Vec::new(),
            tokens: Vec::new(),
            warm: BTreeMap::new(),
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
        let hours = self.history_retention_hours;
        if !(hours.is_finite() && hours * 3600.0 >= 1.0 && hours <= 1e6) {
            return Err(format!(
                "history_retention_hours must be from 1 second (0.0003) to 1000000 hours, not {hours}"
            ));
        }
        if self.concurrency > 1024 {
            return Err("concurrency must be at most 1024".into());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("tls_cert needs tls_key, the certificate's key".into()),
            (None, Some(_)) => {
                return Err("tls_key needs tls_cert, the certificate it is the key of".into());
            }
            (None, None) if self.tls_client_ca.is_some() => {
                return Err("tls_client_ca needs TLS: give tls_cert and tls_key".into());
            }
            _ => {}
        }
        for (plugin, warm) in &self.warm {
            warm.validate().map_err(|e| format!("warm.{plugin}: {e}"))?;
        }
        let is_sha256 = |text: &str| {
            text.len() == 64
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        for token in &self.tokens {
            if token.sha256.as_deref().is_some_and(|h| !is_sha256(h)) {
                return Err(format!(
                    "token `{}`: sha256 must be 64 lowercase hex digits, the SHA-256 of the token (printf %s \"$TOKEN\" | sha256sum)",
                    token.name
                ));
            }
            match token.client_cert_sha256.as_deref() {
                Some(h) if !is_sha256(h) => {
                    return Err(format!(
                        "token `{}`: client_cert_sha256 must be 64 lowercase hex digits, the SHA-256 of the certificate in DER (openssl x509 -in client.pem -outform der | sha256sum)",
                        token.name
                    ));
                }
                Some(_) if self.tls_client_ca.is_none() => {
                    return Err(format!(
                        "token `{}`: client_cert_sha256 needs tls_client_ca, the CA that signs client certificates (and TLS)",
                        token.name
                    ));
                }
                None if token.sha256.is_none() => {
                    return Err(format!(
                        "token `{}` has neither sha256 (a bearer token) nor client_cert_sha256 (a client certificate)",
                        token.name
                    ));
                }
                _ => {}
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

    /// Relative TLS file names, relative to `base` (the configuration file's folder).
    pub fn anchor_paths(&mut self, base: &Path) {
        for path in [
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.tls_client_ca,
        ]
        .into_iter()
        .flatten()
        {
            *path = base.join(&*path);
        }
    }

    /// The TLS files, when TLS is configured.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    pub fn recovery_interval(&self) -> Duration {
        Duration::from_millis(self.recovery_interval_ms)
    }

    pub fn history_retention(&self) -> Duration {
        Duration::from_secs_f64(self.history_retention_hours * 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: TokenSetting, client_ca: bool) -> Result<(), String> {
        ServerSettings {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("c.key".into()),
            tls_client_ca: client_ca.then(|| "ca.pem".into()),
            tokens: vec![token],
            ..Default::default()
        }
        .validate()
    }

    #[test]
    fn a_token_needs_a_bearer_hash_or_a_certificate_fingerprint_and_the_certificate_a_ca() {
        let hash = "a".repeat(64);
        let token = |sha256: Option<&str>, cert: Option<&str>| TokenSetting {
            name: "t".into(),
            sha256: sha256.map(str::to_owned),
            client_cert_sha256: cert.map(str::to_owned),
            scopes: vec![Scope::Read],
        };
        assert!(with_token(token(Some(&hash), None), false).is_ok());
        assert!(with_token(token(None, Some(&hash)), true).is_ok());
        assert!(with_token(token(Some(&hash), Some(&hash)), true).is_ok());
        let neither = with_token(token(None, None), true).unwrap_err();
        assert!(neither.contains("neither sha256"), "{neither}");
        let no_ca = with_token(token(None, Some(&hash)), false).unwrap_err();
        assert!(no_ca.contains("needs tls_client_ca"), "{no_ca}");
        let short = with_token(token(None, Some("abc")), true).unwrap_err();
        assert!(short.contains("client_cert_sha256 must be 64"), "{short}");
    }
}
