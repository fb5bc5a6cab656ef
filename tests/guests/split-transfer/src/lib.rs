//! Chaos guest (`scripts/chaos.sh`): moves `amount` to each of the `to` accounts from the
//! `from` account, which is debited `amount` times their number. With `from` on PostgreSQL
//! and `to` on MariaDB and SQLite, one transaction writes to all three kinds of database,
//! so a torn commit shows up as a credit on one side without its twin on the other.

// The transfer example's `accounts` module.
#[allow(dead_code)]
#[path = "../../../../examples/transfer/src/accounts.rs"]
mod accounts;

use serde::{Deserialize, Serialize};

use crate::accounts::{Account, AccountRef};

#[derive(Deserialize)]
struct Split {
    from: AccountRef,
    to: Vec<AccountRef>,
    amount: i64,
}

#[derive(Serialize)]
struct Moved {
    debited: i64,
}

fn run(split: Split) -> Result<Moved, String> {
    if split.amount <= 0 || split.to.is_empty() {
        return Err("need a positive amount and at least one `to` account".into());
    }
    let debit = split.amount * split.to.len() as i64;
    let from = Account::open(&split.from)?;
    from.withdraw(debit)?;
    for to in &split.to {
        Account::open(to)?.deposit(split.amount)?;
    }
    Ok(Moved { debited: debit })
}

wasmtx_guest::export_json!(run);
