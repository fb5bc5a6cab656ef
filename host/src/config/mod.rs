//! Host configuration: node id, where state and compiled scripts live, participants and
//! limits. Read from a TOML file (`--config`) and completed from the command line.
//!
//! ```toml
//! node = "node-1"                 # names this host's transactions (A-Z a-z 0-9 -, ≤ 16)
//! state_dir = "/var/lib/wasmtx"   # decision log and SQLite coordinator file
//! cache_dir = "/var/cache/wasmtx" # compiled components
//!
//! [participants]                  # in transaction order
//! bank_a = "sqlite://bank_a.db"
//! bank_b = "postgres://app@db.internal/bank"
//! # or, to commit it last in one phase with the decision inside it (also `?last_agent=true`):
//! # bank_b = { url = "postgres://app@db.internal/bank", last_agent = true }
//!
//! [limits]
//! timeout_secs = 30
//!
//! [server]                        # `wasmtx serve` (see config/server.rs)
//! listen = "127.0.0.1:8080"
//!
//! [decision_log]                  # a cluster's shared decisions (see config/cluster.rs)
//! url = "postgres://wasmtx@db.internal/wasmtx"
//! [cluster]
//! lease_ttl_ms = 15000
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

mod cluster;
mod server;

use crate::gid::NodeId;
use crate::limits::Limits;
use crate::participant::{ParticipantSpec, SpecError};
pub use cluster::{ClusterSettings, DecisionLogSettings};
pub use server::{Scope, ServerSettings, TokenSetting};

/// Node id used when none is configured.
pub const DEFAULT_NODE: &str = "local";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Participant(#[from] SpecError),
    #[error("participant `{0}` is given twice; each participant needs its own name")]
    DuplicateParticipant(String),
    #[error("{0}")]
    Invalid(String),
}

/// The file's shape; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    node: Option<String>,
    state_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    participants: toml::Table,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    server: ServerSettings,
    #[serde(default)]
    decision_log: DecisionLogSettings,
    #[serde(default)]
    cluster: ClusterSettings,
}

/// The complete, validated configuration of a host.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: NodeId,
    /// Decision log and the SQLite coordinator file.
    pub state_dir: PathBuf,
    /// Compiled components, keyed by content and engine.
    pub cache_dir: PathBuf,
    /// Participants in transaction order.
    pub participants: Vec<ParticipantSpec>,
    pub limits: Limits,
    /// `wasmtx serve`'s settings (`[server]`).
    pub server: ServerSettings,
    /// `[decision_log]`: with a URL, decisions and the node's lease live in PostgreSQL.
    pub decision_log: DecisionLogSettings,
    /// `[cluster]`: lease and takeover timings.
    pub cluster: ClusterSettings,
}

impl Config {
    /// Defaults with no participants: node `local`, state and cache in the user's
    /// directories (`$WASMTX_STATE_DIR` and `$WASMTX_CACHE_DIR` override them).
    pub fn defaults() -> Self {
        Config {
            node: NodeId::new(DEFAULT_NODE).expect("the default node id is valid"),
            state_dir: default_dir("WASMTX_STATE_DIR", "XDG_STATE_HOME", ".local/state"),
            cache_dir: default_dir("WASMTX_CACHE_DIR", "XDG_CACHE_HOME", ".cache"),
            participants: Vec::new(),
            limits: Limits::default(),
            server: ServerSettings::default(),
            decision_log: DecisionLogSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }

    /// Reads a configuration file. Relative paths in it are relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::defaults();
        if let Some(node) = file.node {
            config.node = NodeId::new(&node).map_err(|e| parse_error(e.to_string()))?;
        }
        if let Some(dir) = file.state_dir {
            config.state_dir = base.join(dir);
        }
        if let Some(dir) = file.cache_dir {
            config.cache_dir = base.join(dir);
        }
        for (name, value) in &file.participants {
            let spec = participant_entry(name, value).map_err(|e| match e {
                EntryError::Shape(message) => parse_error(message),
                EntryError::Spec(e) => ConfigError::Participant(e),
            })?;
            config.add_participant(spec, true)?;
        }
        config.limits = file.limits;
        file.server
            .validate()
            .map_err(|e| parse_error(format!("[server]: {e}")))?;
        config.server = file.server;
        config.server.anchor_paths(base);
        file.decision_log.validate().map_err(parse_error)?;
        file.cluster.validate().map_err(parse_error)?;
        config.decision_log = file.decision_log;
        config.cluster = file.cluster;
        config
            .limits
            .validate()
            .map_err(|e| parse_error(e.to_string()))?;
        Ok(config)
    }

    /// Adds a participant. A name already present is replaced when `replace` (the command
    /// line overrides the file), and refused otherwise.
    pub fn add_participant(
        &mut self,
        spec: ParticipantSpec,
        replace: bool,
    ) -> Result<(), ConfigError> {
        match self
            .participants
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(&spec.name))
        {
            Some(existing) if replace => *existing = spec,
            Some(_) => return Err(ConfigError::DuplicateParticipant(spec.name)),
            None => self.participants.push(spec),
        }
        Ok(())
    }

    /// Applies `-p NAME=URL` arguments: each overrides the file's participant of that name;
    /// a name given twice on the command line is an error.
    pub fn apply_participant_args(&mut self, args: &[String]) -> Result<(), ConfigError> {
        let mut seen: Vec<String> = Vec::new();
        for arg in args {
            let spec = ParticipantSpec::parse_arg(arg)?;
            if seen.iter().any(|n| n.eq_ignore_ascii_case(&spec.name)) {
                return Err(ConfigError::DuplicateParticipant(spec.name));
            }
            seen.push(spec.name.clone());
            self.add_participant(spec, true)?;
        }
        Ok(())
    }

    /// Where the decision log lives.
    pub fn decision_log_path(&self) -> PathBuf {
        self.state_dir.join(format!("decisions-{}.log", self.node))
    }

    /// The host-owned main database of SQLite groups (also holds last-resource decisions).
    pub fn sqlite_coordinator_path(&self) -> PathBuf {
        self.state_dir
            .join(format!("sqlite-coordinator-{}.db", self.node))
    }
}

enum EntryError {
    Shape(String),
    Spec(SpecError),
}

/// One `[participants]` entry: `name = "URL"` or `name = { url = "URL", last_agent = true }`.
fn participant_entry(name: &str, value: &toml::Value) -> Result<ParticipantSpec, EntryError> {
    let shape = || {
        EntryError::Shape(format!(
            "participants.{name} must be a URL string, e.g. \"sqlite://a.db\", or a table \
             {{ url = \"…\", last_agent = true }}"
        ))
    };
    match value {
        toml::Value::String(url) => ParticipantSpec::new(name, url).map_err(EntryError::Spec),
        toml::Value::Table(table) => {
            if let Some(key) = table
                .keys()
                .find(|k| !matches!(k.as_str(), "url" | "last_agent"))
            {
                return Err(EntryError::Shape(format!(
                    "participants.{name}: unknown key `{key}`; known: url, last_agent"
                )));
            }
            let url = table
                .get("url")
                .and_then(toml::Value::as_str)
                .ok_or_else(shape)?;
            let mut spec = ParticipantSpec::new(name, url).map_err(EntryError::Spec)?;
            match table.get("last_agent") {
                None => {}
                Some(toml::Value::Boolean(flag)) => {
                    spec.set_last_agent(*flag).map_err(EntryError::Spec)?
                }
                Some(_) => return Err(shape()),
            }
            Ok(spec)
        }
        _ => Err(shape()),
    }
}

fn default_dir(override_var: &str, xdg_var: &str, home_relative: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(override_var).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os(xdg_var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(home_relative)))
        .unwrap_or_else(std::env::temp_dir);
    base.join("wasmtx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_file_in_order() {
        let text = r#"
            node = "n-1"
            state_dir = "state"
            [participants]
            zeta = "sqlite://z.db"
            alpha = "postgres://root@127.0.0.1/test"
            [limits]
            timeout_secs = 5
            max_statements = 10
        "#;
        let config = Config::parse(text, Path::new("/etc/wasmtx/wasmtx.toml")).unwrap();
        assert_eq!(config.node.as_str(), "n-1");
        assert_eq!(config.state_dir, PathBuf::from("/etc/wasmtx/state"));
        let names: Vec<_> = config
            .participants
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["zeta", "alpha"]);
        assert_eq!(config.limits.max_statements, 10);
        assert_eq!(config.limits.memory_mib, Limits::default().memory_mib);
    }

    #[test]
    fn command_line_overrides_and_refuses_duplicates() {
        let mut config =
            Config::parse("[participants]\na = \"sqlite://a.db\"", Path::new("c.toml")).unwrap();
        config
            .apply_participant_args(&["a=sqlite://other.db".into(), "b=sqlite://b.db".into()])
            .unwrap();
        assert_eq!(config.participants.len(), 2);
        let err = config
            .apply_participant_args(&["c=sqlite://c".into(), "C=sqlite://d".into()])
            .unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateParticipant(_)), "{err}");
    }

    #[test]
    fn a_participant_table_can_name_the_last_agent() {
        let text = r#"
            [participants]
            a = { url = "postgres://root@127.0.0.1/test", last_agent = true }
            b = "mysql://root@127.0.0.1/test1"
        "#;
        let config = Config::parse(text, Path::new("c.toml")).unwrap();
        let flags: Vec<_> = config.participants.iter().map(|p| p.last_agent).collect();
        assert_eq!(flags, [true, false]);
        for bad in [
            "[participants]\na = { url = \"sqlite://a.db\", last_agent = true }",
            "[participants]\na = { url = \"mysql://h/t\", last_agent = \"yes\" }",
            "[participants]\na = { url = \"mysql://h/t\", lastagent = true }",
            "[participants]\na = { last_agent = true }",
        ] {
            assert!(Config::parse(bad, Path::new("c.toml")).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_errors() {
        for bad in [
            "nodes = \"x\"",
            "[limits]\ntimeout_secs = -1",
            "[limits]\nmemory = 3",
            "node = \"a b\"",
        ] {
            assert!(Config::parse(bad, Path::new("c.toml")).is_err(), "{bad}");
        }
    }
}
