//! The `accounts` table the transfer examples work on: `accounts(id, balance)` on each
//! participant. Shared by `transfer` and `faulty` (which includes this file by path).

use std::fmt;

use serde::Deserialize;
use wasmtx_guest::{Dialect, Participant, params};

/// One account on one participant, as the input names it.
#[derive(Deserialize)]
pub struct AccountRef {
    pub participant: String,
    pub account: String,
}

/// A request to move `amount` from one account to another.
#[derive(Deserialize)]
pub struct Transfer {
    pub from: AccountRef,
    pub to: AccountRef,
    pub amount: i64,
}

impl Transfer {
    /// Checks the amount and opens both accounts' participants.
    pub fn open(&self) -> Result<(Account, Account), String> {
        if self.amount <= 0 {
            return Err(format!("amount must be positive, got {}", self.amount));
        }
        Ok((Account::open(&self.from)?, Account::open(&self.to)?))
    }
}

/// An account, with a handle on its participant's open transaction.
pub struct Account {
    /// The participant holding the account.
    pub participant: Participant,
    id: String,
}

impl Account {
    /// The account `at` names; fails if its participant does not exist.
    pub fn open(at: &AccountRef) -> Result<Account, String> {
        let participant = Participant::named(&at.participant)?;
        Ok(Account {
            participant,
            id: at.account.clone(),
        })
    }

    /// The current balance. With `lock`, the row is locked until the global transaction
    /// ends (`FOR UPDATE` on PostgreSQL and MySQL; SQLite locks the whole database anyway).
    pub fn balance(&self, lock: bool) -> Result<i64, String> {
        let dialect = self.participant.dialect();
        let lock = if lock && dialect != Dialect::Sqlite {
            " FOR UPDATE"
        } else {
            ""
        };
        let statement = format!(
            "SELECT balance FROM accounts WHERE id = {}{lock}",
            dialect.placeholder(1)
        );
        let rows = self
            .participant
            .query(&statement, params![&self.id])
            .map_err(|e| format!("{self}: {e}"))?;
        let row = rows.first().ok_or_else(|| self.missing())?;
        row.get("balance").map_err(|e| format!("{self}: {e}"))
    }

    /// Takes `amount` out, refusing to overdraw.
    pub fn withdraw(&self, amount: i64) -> Result<(), String> {
        let balance = self.balance(true)?;
        if balance < amount {
            return Err(format!(
                "insufficient funds: {self} has {balance}, needs {amount}"
            ));
        }
        self.add(-amount)
    }

    /// Puts `amount` in.
    pub fn deposit(&self, amount: i64) -> Result<(), String> {
        self.add(amount)
    }

    /// Adds `delta` to the balance; exactly one row must change.
    fn add(&self, delta: i64) -> Result<(), String> {
        let dialect = self.participant.dialect();
        let statement = format!(
            "UPDATE accounts SET balance = balance + {} WHERE id = {}",
            dialect.placeholder(1),
            dialect.placeholder(2)
        );
        match self
            .participant
            .execute(&statement, params![delta, &self.id])
        {
            Ok(1) => Ok(()),
            Ok(0) => Err(self.missing()),
            Ok(n) => Err(format!("{self}: {n} rows changed, expected 1")),
            Err(e) => Err(format!("{self}: {e}")),
        }
    }

    fn missing(&self) -> String {
        format!(
            "no account `{}` on participant `{}`",
            self.id,
            self.participant.name()
        )
    }
}

/// `alice on a`.
impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.id, self.participant.name())
    }
}
