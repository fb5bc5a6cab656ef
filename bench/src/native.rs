//! The native twins of `examples/transfer` and `examples/insert-user`, for `wasmtx-devbench
//! --compare`: the same statements, in the same order, issued by Rust code instead of a WASM
//! script. [`Twin::detect`] picks one by the shape of the input.
//!
//! - [`NativeTransfer`] is prepare logic for the coordinator, like the script;
//! - [`TransferPart`] is one participant's half of it, for the plain single-phase baseline
//!   (`--compare plain`), where each half commits on its own;
//! - [`NativeInsertUser`] inserts the user row on every participant of its transaction, so
//!   the same logic run once per participant is insert-user's plain baseline.

use async_trait::async_trait;
use serde::Deserialize;

use wasmtx::coordinator::PrepareLogic;
use wasmtx::dialect::Dialect;
use wasmtx::report::{ErrorKind, TxError};
use wasmtx::transaction::{MemberId, OpenTransaction};
use wasmtx::value::Value;

/// One side of a transfer, as in the example's input.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountRef {
    pub participant: String,
    pub account: String,
}

/// The example's input: `{"from": {...}, "to": {...}, "amount": N}`.
#[derive(Debug, Clone, Deserialize)]
pub struct TransferInput {
    pub from: AccountRef,
    pub to: AccountRef,
    pub amount: i64,
}

impl TransferInput {
    pub fn parse(input: &str) -> Result<Self, TxError> {
        serde_json::from_str(input)
            .map_err(|e| TxError::new(ErrorKind::Script, format!("invalid input JSON: {e}")))
    }
}

/// `examples/transfer`, natively.
pub struct NativeTransfer;

#[async_trait]
impl PrepareLogic for NativeTransfer {
    async fn prepare(
        &self,
        mut tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        let result = async {
            let transfer = TransferInput::parse(input)?;
            if transfer.amount <= 0 {
                return Err(script_error(format!(
                    "amount must be positive, got {}",
                    transfer.amount
                )));
            }
            let from = Account::open(&tx, &transfer.from)?;
            let to = Account::open(&tx, &transfer.to)?;
            from.withdraw(&mut tx, transfer.amount).await?;
            to.add(&mut tx, transfer.amount).await?;
            let from_balance = from.balance(&mut tx, false).await?;
            let to_balance = to.balance(&mut tx, false).await?;
            Ok(format!(
                r#"{{"from_balance":{from_balance},"to_balance":{to_balance}}}"#
            ))
        }
        .await;
        (tx, result)
    }
}

/// Which half of a transfer a plain single-phase transaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferPart {
    /// Lock, check and debit the source, then read it back.
    Debit,
    /// Credit the destination, then read it back.
    Credit,
}

#[async_trait]
impl PrepareLogic for TransferPart {
    async fn prepare(
        &self,
        mut tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        let result = async {
            let transfer = TransferInput::parse(input)?;
            let side = match self {
                TransferPart::Debit => &transfer.from,
                TransferPart::Credit => &transfer.to,
            };
            let account = Account::open(&tx, side)?;
            match self {
                TransferPart::Debit => account.withdraw(&mut tx, transfer.amount).await?,
                TransferPart::Credit => account.add(&mut tx, transfer.amount).await?,
            }
            Ok(account.balance(&mut tx, false).await?.to_string())
        }
        .await;
        (tx, result)
    }
}

struct Account {
    member: MemberId,
    dialect: Dialect,
    id: String,
}

impl Account {
    fn open(tx: &OpenTransaction, at: &AccountRef) -> Result<Self, TxError> {
        let member = tx
            .member(&at.participant)
            .ok_or_else(|| script_error(format!("no such participant: {}", at.participant)))?;
        Ok(Account {
            member,
            dialect: tx.dialect_of(member),
            id: at.account.clone(),
        })
    }

    async fn balance(&self, tx: &mut OpenTransaction, lock: bool) -> Result<i64, TxError> {
        let lock = if lock && self.dialect != Dialect::Sqlite {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!(
            "SELECT balance FROM accounts WHERE id = {}{lock}",
            self.dialect.placeholder(1)
        );
        let rows = tx
            .query(self.member, &sql, &[Value::Text(self.id.clone())])
            .await
            .map_err(|e| script_error(e.to_string()))?;
        match rows.rows.first().and_then(|row| row.first()) {
            Some(Value::Int64(balance)) => Ok(*balance),
            Some(Value::Decimal(text)) => text
                .parse()
                .map_err(|_| script_error(format!("balance `{text}` is not an integer"))),
            Some(other) => Err(script_error(format!(
                "balance is {}, expected int64",
                other.kind()
            ))),
            None => Err(script_error(format!("no account `{}`", self.id))),
        }
    }

    async fn withdraw(&self, tx: &mut OpenTransaction, amount: i64) -> Result<(), TxError> {
        let balance = self.balance(tx, true).await?;
        if balance < amount {
            return Err(script_error(format!(
                "insufficient funds: {} has {balance}, needs {amount}",
                self.id
            )));
        }
        self.add(tx, -amount).await
    }

    async fn add(&self, tx: &mut OpenTransaction, delta: i64) -> Result<(), TxError> {
        let sql = format!(
            "UPDATE accounts SET balance = balance + {} WHERE id = {}",
            self.dialect.placeholder(1),
            self.dialect.placeholder(2)
        );
        match tx
            .execute(
                self.member,
                &sql,
                &[Value::Int64(delta), Value::Text(self.id.clone())],
            )
            .await
        {
            Ok(1) => Ok(()),
            Ok(n) => Err(script_error(format!(
                "{n} rows changed for `{}`, expected 1",
                self.id
            ))),
            Err(e) => Err(script_error(e.to_string())),
        }
    }
}

/// Which example a benchmark's input is for, so which twin runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twin {
    Transfer,
    InsertUser,
}

impl Twin {
    /// The twin for an input of `examples/transfer` or `examples/insert-user`.
    pub fn detect(input: &str) -> Result<Self, TxError> {
        if TransferInput::parse(input).is_ok() {
            return Ok(Twin::Transfer);
        }
        if serde_json::from_str::<NewUser>(input).is_ok() {
            return Ok(Twin::InsertUser);
        }
        Err(TxError::new(
            ErrorKind::Input,
            "--compare native and plain need the input of examples/transfer \
             ({\"from\":…,\"to\":…,\"amount\":N}) or of examples/insert-user \
             ({\"username\":…,\"password\":…})",
        ))
    }
}

/// insert-user's input.
#[derive(Debug, Clone, Deserialize)]
struct NewUser {
    username: String,
    password: String,
}

/// `examples/insert-user`, natively: the user row on every participant of the transaction,
/// stamped with each database's clock.
pub struct NativeInsertUser;

#[async_trait]
impl PrepareLogic for NativeInsertUser {
    async fn prepare(
        &self,
        mut tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        let result = async {
            let user: NewUser = serde_json::from_str(input)
                .map_err(|e| script_error(format!("invalid input JSON: {e}")))?;
            if user.username.is_empty() {
                return Err(script_error("username must not be empty".into()));
            }
            let members: Vec<MemberId> = tx.members().collect();
            for &member in &members {
                let dialect = tx.dialect_of(member);
                let sql = format!(
                    "INSERT INTO {} (username, password, created_at, updated_at) \
                     VALUES ({}, {}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                    dialect.quote_ident("user"),
                    dialect.placeholder(1),
                    dialect.placeholder(2)
                );
                let params = [
                    Value::Text(user.username.clone()),
                    Value::Text(user.password.clone()),
                ];
                tx.execute(member, &sql, &params)
                    .await
                    .map_err(|e| script_error(e.to_string()))?;
            }
            Ok(format!(r#"{{"inserted":{}}}"#, members.len()))
        }
        .await;
        (tx, result)
    }
}

fn script_error(message: String) -> TxError {
    TxError::new(ErrorKind::Script, message)
}
