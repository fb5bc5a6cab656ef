//! A WASM script as the prepare logic of the coordinator's transactions.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Sandbox, Script};
use crate::coordinator::PrepareLogic;
use crate::report::TxError;
use crate::transaction::OpenTransaction;

/// A loaded script and the sandbox that runs it: each transaction gets a fresh instance.
#[derive(Clone)]
pub struct ScriptLogic {
    pub sandbox: Arc<Sandbox>,
    pub script: Arc<Script>,
}

#[async_trait]
impl PrepareLogic for ScriptLogic {
    async fn prepare(
        &self,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        self.sandbox.run(&self.script, tx, input).await
    }
}
