//! A WASM script as the prepare logic of the coordinator's transactions.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Sandbox, Script, Warm};
use crate::coordinator::PrepareLogic;
use crate::report::TxError;
use crate::transaction::OpenTransaction;

/// A loaded script and the sandbox that runs it: each transaction gets a fresh instance,
/// or with a [`Warm`] claim, an instance an earlier transaction of the same claim left.
#[derive(Clone)]
pub struct ScriptLogic {
    pub sandbox: Arc<Sandbox>,
    pub script: Arc<Script>,
    pub warm: Option<Arc<Warm>>,
}

impl ScriptLogic {
    /// The same script, its transactions reusing instances under `warm`.
    pub fn warm(mut self, warm: Arc<Warm>) -> Self {
        self.warm = Some(warm);
        self
    }
}

#[async_trait]
impl PrepareLogic for ScriptLogic {
    async fn prepare(
        &self,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        match &self.warm {
            Some(warm) => self.sandbox.run_warm(&self.script, warm, tx, input).await,
            None => self.sandbox.run(&self.script, tx, input).await,
        }
    }
}
