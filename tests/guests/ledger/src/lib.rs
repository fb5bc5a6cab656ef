//! Server chaos guest (`scripts/server-chaos.sh`): records the request's `id` as one row of
//! table `ledger` on every participant of its transaction. After the crashes, each id must
//! be on every participant of its request or on none (no partial transaction), at most once
//! on each (a repeated request never ran twice), and on all of them if its answer was 200.
//! `ledger` has no unique key on purpose: a second run would show as a second row.

use serde::{Deserialize, Serialize};
use wasmtx_guest::{params, participants};

#[derive(Deserialize)]
struct Request {
    id: String,
}

#[derive(Serialize)]
struct Recorded {
    id: String,
    participants: usize,
}

fn run(request: Request) -> Result<Recorded, String> {
    let all = participants();
    for participant in &all {
        let p = participant.dialect().placeholder(1);
        participant
            .execute(
                &format!("INSERT INTO ledger (id) VALUES ({p})"),
                params![request.id.as_str()],
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(Recorded {
        id: request.id,
        participants: all.len(),
    })
}

wasmtx_guest::export_json!(run);
