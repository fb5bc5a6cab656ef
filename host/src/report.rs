//! What a global transaction ended as: the outcome, the typed error if any, and each
//! participant's part. The CLI prints it; `--json` serializes it as is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dialect::Dialect;
use crate::participant::ParticipantError;

/// How the global transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every participant committed.
    Committed,
    /// Every participant rolled back (or never began).
    Aborted,
    /// The COMMIT decision is durable but some branch is not yet committed; `wasmtx recover`
    /// finishes it.
    InDoubt,
}

/// The class of a failure, for programs that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The script returned `Err`.
    Script,
    /// The script trapped: a panic, `unreachable`, a stack overflow, a host-raised trap.
    Trap,
    /// The transaction's deadline passed.
    Timeout,
    /// The script hit its memory limit.
    Memory,
    /// A statement, row, byte, handle or output limit was reached.
    Limit,
    /// The statement policy refused a statement.
    Forbidden,
    /// A database failed a statement, or a parameter did not fit it.
    Database,
    /// A participant failed to connect, begin, prepare or commit.
    Participant,
    /// Bad input: script file, configuration, participant URL, JSON input.
    Input,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Script => "script",
            ErrorKind::Trap => "trap",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Memory => "memory",
            ErrorKind::Limit => "limit",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Database => "database",
            ErrorKind::Participant => "participant",
            ErrorKind::Input => "input",
        }
    }
}

/// A typed failure: what happened, and apart from it, what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxError {
    pub kind: ErrorKind,
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl TxError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        TxError {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with advice for the user.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A participant's failure, `consequence` added to what happened (e.g. `; nothing was
    /// committed`), its hint kept apart.
    pub fn participant(err: &ParticipantError, consequence: &str) -> Self {
        TxError {
            kind: ErrorKind::Participant,
            message: format!("{}{consequence}", err.what_happened()),
            hint: err.hint.clone(),
        }
    }
}

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// What happened to one participant's branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BranchOutcome {
    Committed,
    RolledBack,
    /// Prepared, decision COMMIT, commit not yet confirmed: recovery will commit it.
    Pending,
    /// Never opened (the transaction failed before reaching it).
    NotStarted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipantReport {
    pub name: String,
    pub dialect: Dialect,
    pub outcome: BranchOutcome,
    /// What went wrong on this participant, or how a pending branch was resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A step of the protocol, timed in a transaction's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Opening a branch on every participant.
    Begin,
    /// The prepare logic: instantiating the script and running it.
    Script,
    /// Phase 1: PREPARE on every server branch.
    Prepare,
    /// Recording the decision (the decision store, a last agent's or an SQLite group's
    /// commit).
    Decide,
    /// Phase 2, or the one-phase commit of a single resource.
    Commit,
    /// Rolling back after an abort.
    Rollback,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Begin => "begin",
            Phase::Script => "script",
            Phase::Prepare => "prepare",
            Phase::Decide => "decide",
            Phase::Commit => "commit",
            Phase::Rollback => "rollback",
        }
    }
}

/// The full account of one global transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxReport {
    pub gid: String,
    pub outcome: Outcome,
    /// The script's output when it voted commit.
    pub output: Option<String>,
    pub error: Option<TxError>,
    pub participants: Vec<ParticipantReport>,
    pub elapsed_ms: f64,
    /// Where the time went: milliseconds per phase the transaction reached.
    #[serde(default)]
    pub phases_ms: BTreeMap<Phase, f64>,
}
