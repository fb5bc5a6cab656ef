//! The host side of the WIT imports `wasmtx:script/sql` and `wasmtx:script/log`.
//!
//! Every statement passes, in order: the statement budget, the statement policy, parameter
//! conversion, then the transaction. Any refusal or failure dooms the transaction (the
//! script still sees the error first, so it can explain it).

use wasmtime::component::Resource;

use super::StoreState;
use super::bindings::wasmtx::script::{log, sql, types};
use super::convert;
use super::policy;
use crate::gid::Gid;
use crate::limits::Limits;
use crate::participant::StatementError;
use crate::transaction::{MemberId, OpenTransaction, statement_error_to_tx};

/// What a `participant` resource refers to: a participant of the running transaction, by
/// index. A view, not an owner: the transaction stays with the host, and any number of
/// handles may name the same participant. It is good for the transaction it was made in
/// only (`run`): a warm instance that kept one traps when it uses it in a later one.
#[derive(Debug, Clone, Copy)]
pub struct ParticipantHandle {
    member: MemberId,
    run: u64,
}

/// Counters and budgets of one run.
pub(super) struct HostState {
    statements: u32,
    max_statements: u32,
    log_lines: u32,
    log_bytes: usize,
    max_log_lines: u32,
    max_log_bytes: usize,
    dropped_log_lines: u64,
    limit_hit: Option<String>,
    /// The last error-level log line (clipped), which a trap's error quotes: an SDK logs an
    /// uncaught exception this way before trapping.
    last_error_log: Option<String>,
}

/// How much of the last error-level log line a trap's error quotes.
const QUOTED_ERROR_LOG_BYTES: usize = 4096;

impl HostState {
    pub(super) fn new(limits: &Limits) -> Self {
        HostState {
            statements: 0,
            max_statements: limits.max_statements,
            log_lines: 0,
            log_bytes: 0,
            max_log_lines: limits.max_log_lines,
            max_log_bytes: limits.max_log_bytes,
            dropped_log_lines: 0,
            limit_hit: None,
            last_error_log: None,
        }
    }

    /// The host-side limit that made the run trap, if one did.
    pub(super) fn limit_hit(&self) -> Option<&str> {
        self.limit_hit.as_deref()
    }

    /// Whether the run reached a host-side limit: a trap's limit, or log lines dropped.
    pub(super) fn crossed_a_limit(&self) -> bool {
        self.limit_hit.is_some() || self.dropped_log_lines > 0
    }

    /// The last error-level log line of the run, kept even when it was past the log limits.
    pub(super) fn last_error_log(&self) -> Option<&str> {
        self.last_error_log.as_deref()
    }

    pub(super) fn report_dropped(&self, gid: &Gid) {
        if self.dropped_log_lines > 0 {
            tracing::warn!(target: "wasmtx::script", %gid, dropped = self.dropped_log_lines,
                "script log lines past limits.max_log_lines / max_log_bytes were dropped");
        }
    }
}

impl StoreState {
    /// Wraps a new handle, turning a full table into a limit error the run reports.
    fn new_handle(&mut self, member: MemberId) -> wasmtime::Result<Resource<ParticipantHandle>> {
        let run = self.run;
        match self.table.push(ParticipantHandle { member, run }) {
            Ok(handle) => Ok(handle),
            Err(err) => {
                self.host.limit_hit = Some(format!(
                    "the script holds more participant handles than limits.max_handles allows ({err})"
                ));
                Err(err.into())
            }
        }
    }

    /// The budget, policy and conversion checks shared by `execute` and `query`.
    async fn admit(
        &mut self,
        member: MemberId,
        statement: &str,
        params: Vec<types::Value>,
    ) -> Result<Vec<crate::value::Value>, StatementError> {
        self.host.statements += 1;
        if self.host.statements > self.host.max_statements {
            return Err(StatementError::LimitExceeded(format!(
                "more than {} statements in one transaction (limits.max_statements)",
                self.host.max_statements
            )));
        }
        let dialect = self.tx_ref().dialect_of(member);
        policy::check_memoized(dialect, statement)
            .await
            .map_err(|refusal| StatementError::Forbidden(refusal.to_string()))?;
        convert::params_from_wit(params)
    }

    /// Dooms the transaction for a refusal the transaction itself did not see.
    fn refuse<T>(&mut self, member: MemberId, err: StatementError) -> Result<T, types::Error> {
        let name = self.tx_ref().name_of(member).to_owned();
        self.tx().doom(statement_error_to_tx(&name, &err));
        Err(convert::error_to_wit(err))
    }

    fn member_of(&self, handle: &Resource<ParticipantHandle>) -> wasmtime::Result<MemberId> {
        let handle = self.table.get(handle)?;
        if handle.run != self.run {
            wasmtime::bail!(
                "the script used a participant handle from an earlier transaction of its warm instance; get handles anew in every run"
            );
        }
        Ok(handle.member)
    }

    /// The transaction the script drives: one is bound whenever guest code runs (the
    /// sandbox binds it before instantiating or calling the instance).
    fn tx(&mut self) -> &mut OpenTransaction {
        self.tx
            .as_mut()
            .expect("a transaction is bound whenever the script runs")
    }

    fn tx_ref(&self) -> &OpenTransaction {
        self.tx
            .as_ref()
            .expect("a transaction is bound whenever the script runs")
    }
}

impl types::Host for StoreState {}

impl sql::Host for StoreState {
    async fn participants(&mut self) -> wasmtime::Result<Vec<Resource<ParticipantHandle>>> {
        let members = self.tx_ref().members();
        members.map(|member| self.new_handle(member)).collect()
    }
}

impl sql::HostParticipant for StoreState {
    async fn name(&mut self, handle: Resource<ParticipantHandle>) -> wasmtime::Result<String> {
        let member = self.member_of(&handle)?;
        Ok(self.tx_ref().name_of(member).to_owned())
    }

    async fn dialect(
        &mut self,
        handle: Resource<ParticipantHandle>,
    ) -> wasmtime::Result<types::Dialect> {
        let member = self.member_of(&handle)?;
        Ok(convert::dialect_to_wit(self.tx_ref().dialect_of(member)))
    }

    async fn execute(
        &mut self,
        handle: Resource<ParticipantHandle>,
        statement: String,
        params: Vec<types::Value>,
    ) -> wasmtime::Result<Result<u64, types::Error>> {
        let member = self.member_of(&handle)?;
        let params = match self.admit(member, &statement, params).await {
            Ok(params) => params,
            Err(err) => return Ok(self.refuse(member, err)),
        };
        Ok(self
            .tx()
            .execute(member, &statement, &params)
            .await
            .map_err(convert::error_to_wit))
    }

    async fn query(
        &mut self,
        handle: Resource<ParticipantHandle>,
        statement: String,
        params: Vec<types::Value>,
    ) -> wasmtime::Result<Result<types::RowSet, types::Error>> {
        let member = self.member_of(&handle)?;
        let params = match self.admit(member, &statement, params).await {
            Ok(params) => params,
            Err(err) => return Ok(self.refuse(member, err)),
        };
        Ok(self
            .tx()
            .query(member, &statement, &params)
            .await
            .map(convert::row_set_to_wit)
            .map_err(convert::error_to_wit))
    }

    async fn named(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<ParticipantHandle>, types::Error>> {
        match self.tx_ref().member(&name) {
            Some(member) => Ok(Ok(self.new_handle(member)?)),
            None => {
                let tx = self.tx_ref();
                let known: Vec<&str> = tx.members().map(|m| tx.name_of(m)).collect();
                let shown: String = name.chars().take(64).collect();
                Ok(Err(types::Error::NoSuchParticipant(format!(
                    "no participant named `{shown}` (participants: {})",
                    known.join(", ")
                ))))
            }
        }
    }

    async fn drop(&mut self, handle: Resource<ParticipantHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl log::Host for StoreState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let host = &mut self.host;
        if matches!(level, log::Level::Error) {
            host.last_error_log = Some(super::clip_owned(message.clone(), QUOTED_ERROR_LOG_BYTES));
        }
        if host.log_lines >= host.max_log_lines
            || host.log_bytes + message.len() > host.max_log_bytes
        {
            host.dropped_log_lines += 1;
            return Ok(());
        }
        host.log_lines += 1;
        host.log_bytes += message.len();
        let gid = &self.tx_ref().gid;
        match level {
            log::Level::Trace => tracing::trace!(target: "wasmtx::script", %gid, "{message}"),
            log::Level::Debug => tracing::debug!(target: "wasmtx::script", %gid, "{message}"),
            log::Level::Info => tracing::info!(target: "wasmtx::script", %gid, "{message}"),
            log::Level::Warn => tracing::warn!(target: "wasmtx::script", %gid, "{message}"),
            log::Level::Error => tracing::error!(target: "wasmtx::script", %gid, "{message}"),
        }
        Ok(())
    }
}
