//! `--compare raw`: examples/transfer's statements and the commit protocol's own on bare
//! database connections, with nothing of the host in between (no coordinator, sandbox,
//! branch state machine or pool): what the two databases allow on this machine, so the
//! ceiling of `native` and `plain`.
//!
//! - `raw-2pc` commits as the host does with the same participants. With a last agent: the
//!   other side prepared, then the last agent's decision row and commit in one message, then
//!   phase 2, the row pruned through the participant's decision table. Without one: both
//!   sides prepared concurrently, COMMIT made durable in the host's decision log, both
//!   committed concurrently, then DONE.
//! - `raw-plain`: each side's single-phase transaction, the debit then the credit.
//!
//! The statements are the participants' own ([`ServerProtocol`]), except that a branch
//! begins without the host's statement and lock bounds. Gids are the host's, so `wasmtx
//! recover` finishes whatever an interrupted run leaves prepared. A unit that fails drops its
//! connections (the servers roll back what is open) and counts as an error.

use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Connection, Executor, MySqlConnection, PgConnection};

use wasmtx::config::Config;
use wasmtx::coordinator::Coordinator;
use wasmtx::decision_store::DecisionStore;
use wasmtx::decision_store::DecisionTable;
use wasmtx::gid::{BranchId, Gid};
use wasmtx::participant::Location;
use wasmtx::participant::protocol::{Finish, MysqlProtocol, PostgresProtocol, ServerProtocol, xid};
use wasmtx::report::{ErrorKind, TxError};

use crate::native::TransferInput;
use wasmtx::cli::bench::{BenchUnit, UnitOutcome};

/// One side of the transfer: which database, and its branch's index in a transaction.
#[derive(Clone)]
struct Side {
    location: Location,
    index: u32,
}

/// Which side commits last with the decision row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Agent {
    From,
    To,
}

/// How the two sides commit.
enum Protocol {
    Plain,
    DecisionLog(Arc<dyn DecisionStore>),
    LastAgent(Agent, Arc<dyn DecisionTable>),
}

/// `raw-2pc` or `raw-plain`: a transfer on bare connections.
pub struct RawTransfer {
    coordinator: Coordinator,
    from: Side,
    to: Side,
    protocol: Protocol,
    /// Connections (the debit's, the credit's) between units, most recent last.
    idle: Mutex<Vec<(Conn, Conn)>>,
}

impl RawTransfer {
    /// The variant for the participants `input` (examples/transfer's) names: two-phase
    /// commit as configured, or plain commits.
    pub fn new(
        coordinator: &Coordinator,
        config: &Config,
        input: &str,
        two_phase: bool,
    ) -> Result<Self, TxError> {
        let usage = |message: String| TxError::new(ErrorKind::Input, message);
        let transfer = TransferInput::parse(input).map_err(|e| usage(e.message))?;
        let (from, to) = (&transfer.from.participant, &transfer.to.participant);
        if from == to {
            return Err(usage(
                "--compare raw needs the transfer's two sides on two participants".into(),
            ));
        }
        let side = |name: &str| {
            let (index, spec) = config
                .participants
                .iter()
                .enumerate()
                .find(|(_, spec)| spec.name == name)
                .ok_or_else(|| usage(format!("no participant named `{name}`")))?;
            if let Location::Sqlite { .. } = spec.location {
                return Err(usage(format!(
                    "--compare raw needs PostgreSQL or MySQL/MariaDB participants; `{name}` is SQLite"
                )));
            }
            let side = Side {
                location: spec.location.clone(),
                index: index as u32,
            };
            Ok((side, spec.last_agent))
        };
        let ((from_side, from_agent), (to_side, to_agent)) = (side(from)?, side(to)?);
        let table_of = |name: &str| {
            coordinator
                .server_participants()
                .find(|p| p.name() == name)
                .and_then(|p| p.decision_table())
                .ok_or_else(|| usage(format!("last agent `{name}` has no decision table")))
        };
        let protocol = match (two_phase, from_agent, to_agent) {
            (false, _, _) => Protocol::Plain,
            (true, true, _) => Protocol::LastAgent(Agent::From, table_of(from)?),
            (true, false, true) => Protocol::LastAgent(Agent::To, table_of(to)?),
            (true, false, false) => Protocol::DecisionLog(
                coordinator
                    .decision_store()
                    .cloned()
                    .ok_or_else(|| usage("--compare raw needs the host's decision log".into()))?,
            ),
        };
        Ok(RawTransfer {
            coordinator: coordinator.clone(),
            from: from_side,
            to: to_side,
            protocol,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connections(&self) -> Result<(Conn, Conn), String> {
        let idle = self.idle.lock().expect("idle connections").pop();
        match idle {
            Some(pair) => Ok(pair),
            None => Ok((
                Conn::connect(&self.from.location).await?,
                Conn::connect(&self.to.location).await?,
            )),
        }
    }

    async fn transfer(&self, conns: &mut (Conn, Conn), input: &str) -> Result<(), String> {
        let transfer = TransferInput::parse(input).map_err(|e| e.message)?;
        let work = Work {
            from: &transfer.from.account,
            to: &transfer.to.account,
            amount: transfer.amount,
        };
        let (from, to) = (&mut conns.0, &mut conns.1);
        match &self.protocol {
            Protocol::Plain => self.plain(from, to, &work).await,
            Protocol::LastAgent(agent, table) => {
                let (gid, from_branch, to_branch) = self.open(from, to, &work).await?;
                let deadline_ms = gid
                    .deadline()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let ((last, last_branch), (other, other_branch)) = match agent {
                    Agent::From => ((from, &from_branch), (to, &to_branch)),
                    Agent::To => ((to, &to_branch), (from, &from_branch)),
                };
                other.run(other.prepare_sql(other_branch)).await?;
                last.run(last.commit_with_decision_sql(last_branch, deadline_ms))
                    .await?;
                other
                    .run(other.finish_prepared_sql(other_branch, Finish::Commit))
                    .await?;
                table.forget(&gid);
                Ok(())
            }
            Protocol::DecisionLog(store) => {
                let (gid, from_branch, to_branch) = self.open(from, to, &work).await?;
                tokio::try_join!(
                    from.run(from.prepare_sql(&from_branch)),
                    to.run(to.prepare_sql(&to_branch))
                )?;
                store
                    .record_commit(&gid, gid.deadline())
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::try_join!(
                    from.run(from.finish_prepared_sql(&from_branch, Finish::Commit)),
                    to.run(to.finish_prepared_sql(&to_branch, Finish::Commit))
                )?;
                store.record_done(&gid).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Begins a transaction's branch on both sides and runs the transfer's statements in
    /// them, in the script's order; returns its gid and the two branches.
    async fn open(
        &self,
        from: &mut Conn,
        to: &mut Conn,
        work: &Work<'_>,
    ) -> Result<(Gid, BranchId, BranchId), String> {
        let gid = self.coordinator.new_gid();
        let (from_branch, to_branch) = (gid.branch(self.from.index), gid.branch(self.to.index));
        tokio::try_join!(from.begin(&from_branch), to.begin(&to_branch))?;
        from.debit(work.from, work.amount).await?;
        to.add(work.to, work.amount).await?;
        from.balance(work.from, false).await?;
        to.balance(work.to, false).await?;
        Ok((gid, from_branch, to_branch))
    }

    /// The debit, then the credit, each a single-phase transaction of its own.
    async fn plain(&self, from: &mut Conn, to: &mut Conn, work: &Work<'_>) -> Result<(), String> {
        let from_branch = self.coordinator.new_gid().branch(self.from.index);
        from.begin(&from_branch).await?;
        from.debit(work.from, work.amount).await?;
        from.balance(work.from, false).await?;
        from.run(from.commit_one_phase_sql(&from_branch)).await?;
        let to_branch = self.coordinator.new_gid().branch(self.to.index);
        to.begin(&to_branch).await?;
        to.add(work.to, work.amount).await?;
        to.balance(work.to, false).await?;
        to.run(to.commit_one_phase_sql(&to_branch)).await
    }
}

/// One transfer's accounts and amount.
struct Work<'a> {
    from: &'a str,
    to: &'a str,
    amount: i64,
}

#[async_trait]
impl BenchUnit for RawTransfer {
    async fn run(&self, input: &str) -> UnitOutcome {
        let mut conns = match self.connections().await {
            Ok(conns) => conns,
            Err(err) => {
                tracing::warn!("raw transfer: cannot connect: {err}");
                return UnitOutcome::Error;
            }
        };
        match self.transfer(&mut conns, input).await {
            Ok(()) => {
                self.idle.lock().expect("idle connections").push(conns);
                UnitOutcome::Committed
            }
            Err(err) => {
                tracing::warn!("raw transfer failed (its connections are closed): {err}");
                UnitOutcome::Error
            }
        }
    }
}

/// A bare connection to one side's database.
enum Conn {
    Postgres(PgConnection),
    Mysql(MySqlConnection),
}

impl Conn {
    async fn connect(location: &Location) -> Result<Self, String> {
        let connected = match location {
            Location::Postgres { url } => PgConnection::connect(url).await.map(Conn::Postgres),
            Location::Mysql { url } => MySqlConnection::connect(url).await.map(Conn::Mysql),
            Location::Sqlite { .. } => unreachable!("refused in RawTransfer::new"),
        };
        connected.map_err(|e| format!("connect: {e}"))
    }

    /// Runs SQL text (the text protocol, every statement in it).
    async fn run(&mut self, sql: String) -> Result<(), String> {
        let done = match self {
            Conn::Postgres(conn) => conn.execute(AssertSqlSafe(sql)).await.map(drop),
            Conn::Mysql(conn) => conn.execute(AssertSqlSafe(sql)).await.map(drop),
        };
        done.map_err(|e| e.to_string())
    }

    async fn begin(&mut self, branch: &BranchId) -> Result<(), String> {
        let sql = match self {
            Conn::Postgres(_) => "BEGIN".to_owned(),
            Conn::Mysql(_) => format!("XA START {}", xid(branch)),
        };
        self.run(sql).await
    }

    fn prepare_sql(&self, branch: &BranchId) -> String {
        match self {
            Conn::Postgres(_) => PostgresProtocol::prepare_sql(branch),
            Conn::Mysql(_) => MysqlProtocol::prepare_sql(branch),
        }
    }

    fn commit_one_phase_sql(&self, branch: &BranchId) -> String {
        match self {
            Conn::Postgres(_) => PostgresProtocol::commit_one_phase_sql(branch),
            Conn::Mysql(_) => MysqlProtocol::commit_one_phase_sql(branch),
        }
    }

    fn finish_prepared_sql(&self, branch: &BranchId, finish: Finish) -> String {
        match self {
            Conn::Postgres(_) => PostgresProtocol::finish_prepared_sql(branch, finish),
            Conn::Mysql(_) => MysqlProtocol::finish_prepared_sql(branch, finish),
        }
    }

    fn commit_with_decision_sql(&self, branch: &BranchId, deadline_ms: i64) -> String {
        match self {
            Conn::Postgres(_) => PostgresProtocol::commit_with_decision_sql(branch, deadline_ms),
            Conn::Mysql(_) => MysqlProtocol::commit_with_decision_sql(branch, deadline_ms),
        }
    }

    /// The account's balance, locked for the transaction with `lock`.
    async fn balance(&mut self, id: &str, lock: bool) -> Result<i64, String> {
        let balance = match self {
            Conn::Postgres(conn) => {
                let sql = if lock {
                    "SELECT balance FROM accounts WHERE id = $1 FOR UPDATE"
                } else {
                    "SELECT balance FROM accounts WHERE id = $1"
                };
                sqlx::query_scalar(sql).bind(id).fetch_one(conn).await
            }
            Conn::Mysql(conn) => {
                let sql = if lock {
                    "SELECT balance FROM accounts WHERE id = ? FOR UPDATE"
                } else {
                    "SELECT balance FROM accounts WHERE id = ?"
                };
                sqlx::query_scalar(sql).bind(id).fetch_one(conn).await
            }
        };
        balance.map_err(|e| format!("balance of `{id}`: {e}"))
    }

    /// Locks and checks the source's balance, then takes `amount` off it.
    async fn debit(&mut self, id: &str, amount: i64) -> Result<(), String> {
        let balance = self.balance(id, true).await?;
        if balance < amount {
            return Err(format!(
                "insufficient funds: {id} has {balance}, needs {amount}"
            ));
        }
        self.add(id, -amount).await
    }

    async fn add(&mut self, id: &str, delta: i64) -> Result<(), String> {
        let changed = match self {
            Conn::Postgres(conn) => {
                sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
                    .bind(delta)
                    .bind(id)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected())
            }
            Conn::Mysql(conn) => {
                sqlx::query("UPDATE accounts SET balance = balance + ? WHERE id = ?")
                    .bind(delta)
                    .bind(id)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected())
            }
        };
        match changed.map_err(|e| format!("update of `{id}`: {e}"))? {
            1 => Ok(()),
            n => Err(format!("{n} rows changed for `{id}`, expected 1")),
        }
    }
}
