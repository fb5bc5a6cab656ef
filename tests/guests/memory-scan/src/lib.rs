//! Isolation test guest, a plugin of its own: `scan NONCE MIB` answers how many of
//! memory-probe's marker blocks a fresh instance finds in its memory (grown to MIB MiB
//! first). Anything but 0 is another transaction's data.

#[path = "../../memory-probe/src/marker.rs"]
mod marker;

fn run(input: String) -> Result<String, String> {
    // The server hands the JSON input over as it is: a JSON string keeps its quotes.
    let mut words = input.trim_matches('"').split_whitespace();
    if words.next() != Some("scan") {
        return Err("this plugin only scans".into());
    }
    let nonce = marker::parse_nonce(words.next())?;
    let mib: usize = words.next().and_then(|w| w.parse().ok()).ok_or("missing MiB")?;
    Ok(marker::count(nonce, mib).to_string())
}

wasmtx_guest::export!(run);
