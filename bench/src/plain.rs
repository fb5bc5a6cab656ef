//! The plain single-phase baseline (`--compare plain`): the same work as single-participant
//! transactions through the coordinator, one after the other.

use std::sync::Arc;

use async_trait::async_trait;
use wasmtx::cli::bench::{BenchUnit, CoordinatedUnit, UnitOutcome};
use wasmtx::coordinator::{Coordinator, PrepareLogic};
use wasmtx::report::{ErrorKind, TxError};

use crate::native::{self, TransferPart};

/// The plain single-phase baseline: the same work as single-participant transactions, one
/// after the other (each commits in one phase, no decision), stopping at the first that does
/// not commit.
pub struct PlainUnit {
    pub parts: Vec<CoordinatedUnit>,
}

impl PlainUnit {
    /// The transfer's two sides from `input`: the debit, then the credit.
    pub fn transfer(coordinator: &Coordinator, input: &str) -> Result<Self, TxError> {
        // Here the input is the command's, not a transaction's: a bad one is a usage error.
        let transfer = native::TransferInput::parse(input)
            .map_err(|e| TxError::new(ErrorKind::Input, e.message))?;
        let side = |name: &str, part: TransferPart| {
            let coordinator = coordinator.subset(&[name]).map_err(|name| {
                TxError::new(ErrorKind::Input, format!("no participant named `{name}`"))
            })?;
            Ok::<_, TxError>(CoordinatedUnit {
                coordinator,
                logic: Arc::new(part),
            })
        };
        Ok(PlainUnit {
            parts: vec![
                side(&transfer.from.participant, TransferPart::Debit)?,
                side(&transfer.to.participant, TransferPart::Credit)?,
            ],
        })
    }

    /// `logic` once per participant, each time with that participant alone (for logic that
    /// does the same on every participant, like insert-user).
    pub fn each_participant(coordinator: &Coordinator, logic: Arc<dyn PrepareLogic>) -> Self {
        let parts = coordinator
            .participants()
            .iter()
            .map(|p| CoordinatedUnit {
                coordinator: coordinator
                    .subset(&[p.name()])
                    .expect("a participant of this coordinator"),
                logic: logic.clone(),
            })
            .collect();
        PlainUnit { parts }
    }
}

#[async_trait]
impl BenchUnit for PlainUnit {
    async fn run(&self, input: &str) -> UnitOutcome {
        for part in &self.parts {
            match part.run(input).await {
                UnitOutcome::Committed => {}
                other => return other,
            }
        }
        UnitOutcome::Committed
    }
}
