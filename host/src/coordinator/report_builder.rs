//! The per-participant part of a transaction's report, filled in as the protocol advances,
//! the time spent in each phase, and the finished [`TxReport`].

use std::collections::BTreeMap;
use std::time::Instant;

use crate::gid::Gid;
use crate::participant::ParticipantSlot;
use crate::report::{BranchOutcome, Outcome, ParticipantReport, Phase, TxError, TxReport};
use crate::transaction::{MemberId, OpenTransaction};

/// Builds the report of one transaction. Participants are indexed by their position in the
/// coordinator's list, which is also their [`MemberId`] in the open transaction.
pub(super) struct ReportBuilder {
    gid: Gid,
    started: Instant,
    participants: Vec<ParticipantReport>,
    /// The phase under way and since when; it starts with [`Phase::Begin`].
    phase: (Phase, Instant),
    phases_ms: BTreeMap<Phase, f64>,
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
            phase: (Phase::Begin, started),
            phases_ms: BTreeMap::new(),
        }
    }

    /// Ends the phase under way (its time is added to that phase's total) and starts `next`.
    pub(super) fn enter(&mut self, next: Phase) {
        let now = self.end_phase();
        self.phase = (next, now);
    }

    fn end_phase(&mut self) -> Instant {
        let now = Instant::now();
        let (phase, since) = self.phase;
        *self.phases_ms.entry(phase).or_default() += (now - since).as_secs_f64() * 1000.0;
        now
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
        mut self,
        outcome: Outcome,
        output: Option<String>,
        error: Option<TxError>,
    ) -> TxReport {
        self.end_phase();
        TxReport {
            gid: self.gid.to_string(),
            outcome,
            output,
            error,
            participants: self.participants,
            elapsed_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            phases_ms: self.phases_ms,
        }
    }
}
