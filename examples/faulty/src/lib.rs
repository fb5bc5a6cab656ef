//! wasmtx example: a script that fails on purpose after a partial write, for the demo's
//! failure steps. It debits `from`, then either panics (`"fault": "panic"`) or runs a
//! statement the database rejects, ignores the error and returns `Ok`
//! (`"fault": "bad-sql"`). Either way the host must roll the debit back.

// The transfer example's `accounts` module; this script uses only part of it.
#[allow(dead_code)]
#[path = "../../transfer/src/accounts.rs"]
mod accounts;

use serde::{Deserialize, Serialize};
use wasmtx_guest::params;

use crate::accounts::{Account, Transfer};

/// How to fail after the debit.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Fault {
    /// Panic: the guest traps.
    Panic,
    /// Fail a statement in the database, ignore the error and vote commit anyway.
    BadSql,
}

/// A transfer request plus the fault to inject.
#[derive(Deserialize)]
struct Input {
    fault: Fault,
    #[serde(flatten)]
    transfer: Transfer,
}

/// What `bad-sql` returns: the error it ignored.
#[derive(Serialize)]
struct Ignored {
    ignored_error: String,
}

fn run(input: Input) -> Result<Ignored, String> {
    let amount = input.transfer.amount;
    let (from, to) = input.transfer.open()?;
    from.withdraw(amount)?;
    match input.fault {
        Fault::Panic => {
            panic!("faulty script: deliberate panic after debiting {amount} from {from}")
        }
        Fault::BadSql => fail_credit(&to, amount),
    }
}

/// Runs a credit on `to` that the database rejects, logs the error and carries on.
fn fail_credit(to: &Account, amount: i64) -> Result<Ignored, String> {
    let participant = &to.participant;
    let statement = format!(
        "UPDATE accounts SET balance = balance + {} WHERE no_such_column = 1",
        participant.dialect().placeholder(1)
    );
    match participant.execute(&statement, params![amount]) {
        Err(e) => {
            wasmtx_guest::warn!("faulty script: ignoring a failed credit of {to}: {e}");
            Ok(Ignored {
                ignored_error: e.to_string(),
            })
        }
        Ok(n) => Err(format!(
            "faulty script: the bad statement unexpectedly changed {n} rows"
        )),
    }
}

wasmtx_guest::export_json!(run);
