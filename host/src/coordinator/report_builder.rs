//! The per-participant part of a transaction's report, filled in as the protocol advances,
//! and the finished [`TxReport`].

use std::time::Instant;

use crate::gid::Gid;
use crate::participant::ParticipantSlot;
use crate::report::{BranchOutcome, Outcome, ParticipantReport, TxError, TxReport};
use crate::transaction::{MemberId, OpenTransaction};

/// Builds the report of one transaction. Participants are indexed by their position in the
/// coordinator's list, which is also their [`MemberId`] in the open transaction.
pub(super) struct ReportBuilder {
    gid: Gid,
    started: Instant,
    participants: Vec<ParticipantReport>,
}

impl ReportBuilder {
    pub(super) fn new(participants: &[ParticipantSlot], gid: Gid, started: Instant) -> Self {
        ReportBuilder {
            gid,
            started,
            participants: participants
                .iter()
                .map(|p| ParticipantReport {
                    name: p.name().to_owned(),
                    dialect: p.dialect(),
                    outcome: BranchOutcome::NotStarted,
                    note: None,
                })
                .collect(),
        }
    }

    /// Marks what began as rolled back unless later steps say otherwise.
    pub(super) fn began(&mut self, tx: &OpenTransaction) {
        for open in &tx.branches {
            self.set(open.member, BranchOutcome::RolledBack);
        }
        if tx.sqlite.is_some() {
            self.set_all(&tx.sqlite_members(), BranchOutcome::RolledBack);
        }
    }

    pub(super) fn set(&mut self, member: MemberId, outcome: BranchOutcome) {
        self.participants[member.index()].outcome = outcome;
    }

    pub(super) fn set_all(&mut self, members: &[MemberId], outcome: BranchOutcome) {
        for &member in members {
            self.set(member, outcome);
        }
    }

    pub(super) fn note(&mut self, member: MemberId, note: String) {
        self.note_at(member.index(), note);
    }

    /// A note for the participant at `position` (before the transaction is assembled).
    pub(super) fn note_at(&mut self, position: usize, note: String) {
        self.participants[position].note = Some(note);
    }

    pub(super) fn finish(
        self,
        outcome: Outcome,
        output: Option<String>,
        error: Option<TxError>,
    ) -> TxReport {
        TxReport {
            gid: self.gid.to_string(),
            outcome,
            output,
            error,
            participants: self.participants,
            elapsed_ms: self.started.elapsed().as_secs_f64() * 1000.0,
        }
    }
}
