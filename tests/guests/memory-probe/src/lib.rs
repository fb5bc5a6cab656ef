//! Isolation test guest. `plant NONCE MIB MS` fills MIB MiB of its heap with marker blocks,
//! counts the markers it sees in its own memory (proof that the scan finds them), then
//! computes for MS milliseconds without touching them (time for the host's memory to be
//! paged out) and answers the count. `scan NONCE MIB` answers how many markers a fresh instance finds in its
//! memory (grown to MIB MiB first): anything but 0 is another transaction's data.

mod marker;

use std::time::{Duration, Instant};

fn run(input: String) -> Result<String, String> {
    // The server hands the JSON input over as it is: a JSON string keeps its quotes.
    let mut words = input.trim_matches('"').split_whitespace();
    let mode = words.next().ok_or("empty input")?;
    let nonce = marker::parse_nonce(words.next())?;
    let mib: usize = words.next().and_then(|w| w.parse().ok()).ok_or("missing MiB")?;
    match mode {
        "plant" => {
            let ms: u64 = words.next().and_then(|w| w.parse().ok()).ok_or("missing ms")?;
            let block = Block(nonce, marker::partner(nonce));
            let heap = vec![block; mib * (1 << 20) / marker::BLOCK];
            // The blocks stay in memory after the run: nothing frees or clears them.
            let heap = heap.leak();
            // Counted now: a count after the pause would page them back in.
            let seen = marker::count(nonce, 0);
            let started = Instant::now();
            let mut spin = 0u64;
            while started.elapsed() < Duration::from_millis(ms) {
                spin = std::hint::black_box(spin.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            std::hint::black_box(&heap);
            Ok(seen.to_string())
        }
        "scan" => Ok(marker::count(nonce, mib).to_string()),
        other => Err(format!("unknown mode {other:?}")),
    }
}

/// One marker block, aligned as the scan reads it.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Block(u64, u64);

wasmtx_guest::export!(run);
