//! Why a registry operation failed, each with a stable kebab-case code an HTTP front can map
//! to a status and a problem type.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::script::LoadError;

/// Why a registry operation failed. Each message says what to do.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("invalid plugin name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid version {version:?}: {reason}")]
    InvalidVersion { version: String, reason: String },
    #[error("invalid alias {alias:?}: {reason}")]
    InvalidAlias { alias: String, reason: String },
    #[error("no plugin named {name:?} is published; publish it first")]
    PluginNotFound { name: String },
    #[error(
        "plugin {name:?} has no version {selector:?}; list its versions to see what is published"
    )]
    VersionNotFound { name: String, selector: String },
    #[error("{name}@{version} is withdrawn: it can no longer be invoked; pick another version")]
    Withdrawn { name: String, version: String },
    #[error(
        "{name}@{version} is already published with other bytes ({existing_digest}); versions are immutable, publish a new version"
    )]
    VersionExists {
        name: String,
        version: String,
        existing_digest: String,
    },
    #[error("the component was refused: {0}")]
    Rejected(LoadError),
    #[error("the shared plugin registry in PostgreSQL cannot {action}: {source}; retry")]
    Database {
        action: &'static str,
        source: sqlx::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

impl RegistryError {
    /// A stable kebab-case code for machines: the `code` of a problem document.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::InvalidName { .. } => "invalid-name",
            RegistryError::InvalidVersion { .. } => "invalid-version",
            RegistryError::InvalidAlias { .. } => "invalid-alias",
            RegistryError::PluginNotFound { .. } => "plugin-not-found",
            RegistryError::VersionNotFound { .. } => "version-not-found",
            RegistryError::Withdrawn { .. } => "plugin-withdrawn",
            RegistryError::VersionExists { .. } => "version-exists",
            RegistryError::Rejected(LoadError::NotWasm { .. }) => "not-wasm",
            RegistryError::Rejected(LoadError::CoreModule { .. }) => "core-module",
            RegistryError::Rejected(LoadError::WrongWorld { .. }) => "wrong-world",
            RegistryError::Rejected(LoadError::Invalid { .. }) => "invalid-component",
            RegistryError::Rejected(LoadError::Refused { .. }) => "component-refused",
            RegistryError::Rejected(LoadError::Engine { .. }) => "engine-unavailable",
            RegistryError::Rejected(LoadError::Read { .. }) | RegistryError::Io { .. } => {
                "registry-io"
            }
            RegistryError::Database { .. } => "registry-unavailable",
        }
    }

    pub(super) fn database(action: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| RegistryError::Database { action, source }
    }

    pub(super) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        RegistryError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}

/// A load error about a staged upload, re-labelled with what the user called it
/// (`name@version`) instead of the staging file's name.
pub(super) fn relabel(error: LoadError, label: &str) -> LoadError {
    let path = PathBuf::from(label);
    match error {
        LoadError::Read { source, .. } => LoadError::Read { path, source },
        LoadError::NotWasm { .. } => LoadError::NotWasm { path },
        LoadError::CoreModule { .. } => LoadError::CoreModule { path },
        LoadError::Invalid { message, .. } => LoadError::Invalid { path, message },
        LoadError::WrongWorld { message, .. } => LoadError::WrongWorld { path, message },
        LoadError::Refused { reason, .. } => LoadError::Refused { path, reason },
        LoadError::Engine { message, .. } => LoadError::Engine { path, message },
    }
}
