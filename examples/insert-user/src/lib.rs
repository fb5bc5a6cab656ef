//! wasmtx example: the original scenario. One user row is inserted into the `user` table of
//! every participant, atomically: either every database gets it or none does.

use serde::{Deserialize, Serialize};
use wasmtx_guest::{Participant, params};

/// The user to create.
#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
}

/// How many participants got the row.
#[derive(Serialize)]
struct Inserted {
    inserted: usize,
}

fn run(user: NewUser) -> Result<Inserted, String> {
    if user.username.is_empty() {
        return Err("username must not be empty".into());
    }
    let participants = wasmtx_guest::participants();
    if participants.is_empty() {
        return Err("no participants".into());
    }
    for participant in &participants {
        insert(participant, &user).map_err(|e| {
            format!(
                "insert into `user` on participant `{}` failed: {e}",
                participant.name()
            )
        })?;
    }
    wasmtx_guest::info!(
        "user `{}` inserted on {} participants",
        user.username,
        participants.len()
    );
    Ok(Inserted {
        inserted: participants.len(),
    })
}

/// Inserts `user` on `participant`, stamped with the database's own clock.
fn insert(participant: &Participant, user: &NewUser) -> Result<(), wasmtx_guest::Error> {
    let dialect = participant.dialect();
    let statement = format!(
        "INSERT INTO {} (username, password, created_at, updated_at) \
         VALUES ({}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        dialect.quote_ident("user"),
        dialect.placeholders(2),
    );
    participant.execute(&statement, params![&user.username, &user.password])?;
    Ok(())
}

wasmtx_guest::export_json!(run);
