//! Warm-instance test guest. Every run counts itself in a static, so the answer says how
//! many transactions this instance has served: always 1 on a fresh instance. The input
//! (a JSON string, quotes included) picks what else the run does:
//!
//! - `count`: nothing else;
//! - `trap`: panics after counting;
//! - `statements N`: sends N statements to its first participant, stopping at an error,
//!   and votes commit whatever happened (the host must abort on a limit all the same);
//! - `memory`: allocates until the memory limit stops it;
//! - `spin`: computes until the deadline stops it;
//! - `keep`: keeps a participant handle in a static for the next run;
//! - `use-kept`: sends a query through the handle an earlier run kept.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtx_guest::{Participant, participants};

static RUNS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static KEPT: RefCell<Option<Participant>> = const { RefCell::new(None) };
}

fn run(input: String) -> Result<String, String> {
    let runs = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    let mut words = input.trim_matches('"').split_whitespace();
    match words.next() {
        Some("count") => {}
        Some("trap") => panic!("asked to trap after run {runs}"),
        Some("statements") => {
            let count: u32 = words.next().and_then(|w| w.parse().ok()).ok_or("missing N")?;
            let first = participants().into_iter().next().ok_or("no participant")?;
            for _ in 0..count {
                if first.query("SELECT 1", vec![]).is_err() {
                    break;
                }
            }
        }
        Some("memory") => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                kept.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&kept);
            }
        }
        Some("spin") => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        Some("keep") => {
            let first = participants().into_iter().next().ok_or("no participant")?;
            KEPT.with(|kept| *kept.borrow_mut() = Some(first));
        }
        Some("use-kept") => {
            let used = KEPT.with(|kept| {
                kept.borrow()
                    .as_ref()
                    .map(|p| p.query("SELECT 1", vec![]).is_ok())
            });
            return Ok(format!("{runs} {used:?}"));
        }
        other => return Err(format!("unknown input {other:?}")),
    }
    Ok(runs.to_string())
}

wasmtx_guest::export!(run);
