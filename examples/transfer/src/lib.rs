//! wasmtx example: moves an amount between two accounts held by two participants. The
//! debit and the credit commit together or not at all.

mod accounts;

use serde::Serialize;

use crate::accounts::Transfer;

/// The balances after the transfer.
#[derive(Serialize)]
struct Balances {
    from_balance: i64,
    to_balance: i64,
}

fn run(transfer: Transfer) -> Result<Balances, String> {
    let (from, to) = transfer.open()?;
    from.withdraw(transfer.amount)?;
    to.deposit(transfer.amount)?;
    let balances = Balances {
        from_balance: from.balance(false)?,
        to_balance: to.balance(false)?,
    };
    wasmtx_guest::info!("moved {} from {from} to {to}", transfer.amount);
    Ok(balances)
}

wasmtx_guest::export_json!(run);
