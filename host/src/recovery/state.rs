//! What state a global transaction is in, as one word: what a report ended as, what the
//! history recorded, or what the databases and decision sources say of a gid now.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::report::{Outcome, TxReport};

/// A transaction's state. Serialized as the status words of the HTTP API and the history
/// (`running`, `committed`, `committing`, `in-doubt`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TxState {
    /// Running on this host now.
    Running,
    Committed,
    /// COMMIT recorded, some branch still prepared (recovery commits it).
    Committing,
    /// Prepared, undecided, deadline not passed; or a COMMIT whose write got no answer, so
    /// whether it was recorded is unknown. Never rolled back on that account.
    InDoubt,
    /// Prepared, undecided, past its deadline: recovery rolls it back.
    Aborting,
    Aborted,
    /// Force-resolved against its decision or the presumed abort: committed.
    HeuristicCommit,
    /// Force-resolved against its decision: rolled back.
    HeuristicRollback,
    /// Nothing known of it.
    Unknown,
}

impl TxState {
    /// The status word (`in-doubt`, `heuristic-commit`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TxState::Running => "running",
            TxState::Committed => "committed",
            TxState::Committing => "committing",
            TxState::InDoubt => "in-doubt",
            TxState::Aborting => "aborting",
            TxState::Aborted => "aborted",
            TxState::HeuristicCommit => "heuristic-commit",
            TxState::HeuristicRollback => "heuristic-rollback",
            TxState::Unknown => "unknown",
        }
    }

    /// The state a status word names; `Unknown` for any other word.
    pub fn from_word(word: &str) -> TxState {
        serde_json::from_value(serde_json::Value::String(word.to_owned()))
            .unwrap_or(TxState::Unknown)
    }

    /// The state of a transaction that ended with `report`.
    pub fn of_report(report: &TxReport) -> TxState {
        match report.outcome {
            Outcome::Committed => TxState::Committed,
            // The output is kept only once the COMMIT is durable (phase 2 under way); without
            // it the decision itself is unknown (its write got no answer).
            Outcome::InDoubt if report.output.is_some() => TxState::Committing,
            Outcome::InDoubt => TxState::InDoubt,
            Outcome::Aborted => TxState::Aborted,
        }
    }

    /// Whether nothing is left to do: committed, aborted, or resolved heuristically.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TxState::Committed
                | TxState::Aborted
                | TxState::HeuristicCommit
                | TxState::HeuristicRollback
        )
    }

    /// What the databases and decision sources say: `prepared` whether a branch is
    /// prepared, `committed` whether a COMMIT is recorded, `expired` whether the deadline
    /// plus recovery's margin has passed, `recorded` whether the caller has a record of the
    /// transaction (without one, nothing prepared and nothing decided is `Unknown`).
    pub fn derive(prepared: bool, committed: bool, expired: bool, recorded: bool) -> TxState {
        match (prepared, committed, expired) {
            (true, true, _) => TxState::Committing,
            (true, false, false) => TxState::InDoubt,
            (true, false, true) => TxState::Aborting,
            (false, true, _) => TxState::Committed,
            (false, false, true) => TxState::Aborted,
            (false, false, false) if recorded => TxState::InDoubt,
            (false, false, false) => TxState::Unknown,
        }
    }
}

impl std::fmt::Display for TxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [TxState; 9] = [
        TxState::Running,
        TxState::Committed,
        TxState::Committing,
        TxState::InDoubt,
        TxState::Aborting,
        TxState::Aborted,
        TxState::HeuristicCommit,
        TxState::HeuristicRollback,
        TxState::Unknown,
    ];

    #[test]
    fn states_serialize_as_their_status_words_and_read_back() {
        for state in ALL {
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, serde_json::Value::String(state.as_str().into()));
            assert_eq!(TxState::from_word(state.as_str()), state);
        }
        assert_eq!(TxState::from_word("no-such-word"), TxState::Unknown);
    }

    #[test]
    fn the_state_of_a_gid_follows_its_branches_decision_and_deadline() {
        use TxState::*;
        let cases = [
            ((true, true, false, false), Committing),
            ((true, true, true, true), Committing),
            ((true, false, false, false), InDoubt),
            ((true, false, true, false), Aborting),
            ((false, true, false, false), Committed),
            ((false, false, true, false), Aborted),
            ((false, false, false, true), InDoubt),
            ((false, false, false, false), Unknown),
        ];
        for ((prepared, committed, expired, recorded), state) in cases {
            assert_eq!(
                TxState::derive(prepared, committed, expired, recorded),
                state,
                "{prepared} {committed} {expired} {recorded}"
            );
        }
    }
}
