//! The host-path micro-benchmark's script: three `execute` calls on the first participant
//! and an empty output, so the measurement is the host's own cost per transaction.

use wasmtx_guest::{params, participants};

fn run(_input: String) -> Result<String, String> {
    let participant = participants().into_iter().next().ok_or("no participant")?;
    for id in 1..=3 {
        participant.execute(
            "UPDATE accounts SET balance = balance + 1 WHERE id = ?",
            params![id],
        )?;
    }
    Ok(String::new())
}

wasmtx_guest::export!(run);
