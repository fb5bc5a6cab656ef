//! Test guest: a hostile script. Its input `{"attack": "<name>", ...}` picks one way of
//! abusing the sandbox; `tests/sandbox.rs` runs every one and checks that the host refuses
//! it with a typed error, rolls everything back and keeps serving.
//!
//! Every attack first writes on both participants (`a`: alice − 1, `b`: bob + 1, on the
//! `accounts` table of the transfer example), so a commit that should not happen shows.
//! Attacks that get an error from the host ignore it where that is the more hostile move
//! (`statement` always does): the host must doom the transaction regardless.

mod wasi;

use std::hint::black_box;

use serde::Deserialize;
use wasmtx_guest::{Level, Participant, Value, params, participants};

/// One attack, with its parameters.
#[derive(Deserialize)]
#[serde(tag = "attack", rename_all = "kebab-case")]
enum Attack {
    /// Spins forever: only the deadline stops it.
    InfiniteLoop,
    /// Allocates 1 MiB chunks and keeps them, forever.
    MemoryBomb,
    /// Recurses without end, with tiny frames (the wasm stack) or 4 KiB frames (the Rust
    /// shadow stack in linear memory).
    Recursion { frame: Frame },
    /// Prints `lines` lines of `bytes` bytes to stdout, then aborts.
    StdoutFlood { lines: u32, bytes: usize },
    /// Prints `lines` lines of `bytes` bytes to stderr, then aborts.
    StderrFlood { lines: u32, bytes: usize },
    /// Logs `lines` lines of `bytes` bytes through the `log` import, then aborts.
    LogFlood { lines: u32, bytes: usize },
    /// Sends `count` statements, stopping at the first error.
    ManyStatements { count: u32 },
    /// Runs one statement (a query if `query`), IGNORES any error and votes commit.
    Statement {
        #[serde(default = "participant_a")]
        participant: String,
        sql: String,
        #[serde(default)]
        params: Vec<Param>,
        #[serde(default)]
        query: bool,
    },
    /// Calls `participants()` `count` times and keeps every handle.
    HandleFlood { count: u32 },
    /// Looks up a participant whose name is `bytes` bytes long.
    HugeName { bytes: usize },
    /// Votes commit with an output of `bytes` bytes.
    HugeOutput { bytes: usize },
    /// Reads each of `paths`, lists `/` and `.`, creates a file.
    WasiFile { paths: Vec<String> },
    /// Reads the environment.
    WasiEnv,
    /// Reads the command-line arguments.
    WasiArgs,
    /// Connects to `addr` over TCP and UDP, and listens.
    WasiSocket { addr: String },
    /// Resolves `host`.
    WasiDns { host: String },
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Frame {
    Small,
    Large,
}

/// A statement parameter as the input gives it: `"null"`, `{"int": 5}`, `{"text": "x"}`,
/// or a typed value in text form — `{"decimal": "12.50"}`, `{"date": "2024-02-30"}`,
/// `{"time": "25:00:00"}`, `{"uuid": "…"}`, `{"json": "…"}`, `{"timestamp": micros}` — which
/// is passed on unchecked, so the host has to validate it.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Param {
    Null,
    Int(i64),
    Text(String),
    Decimal(String),
    Date(String),
    Time(String),
    Uuid(String),
    Json(String),
    Timestamp(i64),
}

fn participant_a() -> String {
    "a".to_owned()
}

fn run(attack: Attack) -> Result<String, String> {
    write_something()?;
    match attack {
        Attack::InfiniteLoop => {
            let mut spins = 0u64;
            loop {
                spins = black_box(spins.wrapping_add(1));
            }
        }
        Attack::MemoryBomb => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        Attack::Recursion { frame } => {
            let depth = match frame {
                Frame::Small => dive(0),
                Frame::Large => dive_large(0),
            };
            Ok(format!("came back from depth {depth}"))
        }
        Attack::StdoutFlood { lines, bytes } => {
            let line = "o".repeat(bytes);
            for i in 0..lines {
                println!("{i} {line}");
            }
            Err(format!("flooded stdout with {lines} lines"))
        }
        Attack::StderrFlood { lines, bytes } => {
            let line = "e".repeat(bytes);
            for i in 0..lines {
                eprintln!("{i} {line}");
            }
            Err(format!("flooded stderr with {lines} lines"))
        }
        Attack::LogFlood { lines, bytes } => {
            let line = "l".repeat(bytes);
            for _ in 0..lines {
                wasmtx_guest::log(Level::Info, &line);
            }
            Err(format!("flooded the log with {lines} lines"))
        }
        Attack::ManyStatements { count } => {
            let a = Participant::named("a")?;
            for _ in 0..count {
                a.execute(
                    "UPDATE accounts SET balance = balance WHERE id = 'alice'",
                    params![],
                )?;
            }
            Ok(format!("sent {count} statements"))
        }
        Attack::Statement {
            participant,
            sql,
            params,
            query,
        } => {
            let target = Participant::named(&participant)?;
            let params = params
                .into_iter()
                .map(Param::into_value)
                .collect::<Result<Vec<_>, _>>()?;
            let result = if query {
                target
                    .query(&sql, &params)
                    .map(|rows| format!("{} rows", rows.len()))
            } else {
                target
                    .execute(&sql, &params)
                    .map(|n| format!("{n} rows changed"))
            };
            Ok(match result {
                Ok(done) => format!("the statement ran: {done}"),
                Err(e) => format!("ignored the error: {e}"),
            })
        }
        Attack::HandleFlood { count } => {
            let mut kept = Vec::new();
            for _ in 0..count {
                kept.extend(participants());
            }
            Ok(format!("holding {} handles", kept.len()))
        }
        Attack::HugeName { bytes } => match Participant::named(&"n".repeat(bytes)) {
            Ok(_) => Ok("found a participant with a huge name".to_owned()),
            Err(e) => Err(e.to_string()),
        },
        Attack::HugeOutput { bytes } => Ok("o".repeat(bytes)),
        Attack::WasiFile { paths } => wasi::files(&paths),
        Attack::WasiEnv => wasi::env(),
        Attack::WasiArgs => wasi::args(),
        Attack::WasiSocket { addr } => wasi::sockets(&addr),
        Attack::WasiDns { host } => wasi::dns(&host),
    }
}

/// The write every attack starts with, on both participants.
fn write_something() -> Result<(), wasmtx_guest::Error> {
    Participant::named("a")?.execute(
        "UPDATE accounts SET balance = balance - 1 WHERE id = 'alice'",
        params![],
    )?;
    Participant::named("b")?.execute(
        "UPDATE accounts SET balance = balance + 1 WHERE id = 'bob'",
        params![],
    )?;
    Ok(())
}

/// Recursion with frames on the wasm stack only.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    black_box(dive(depth + 1)).wrapping_add(1)
}

/// Recursion with a 4 KiB array in every frame, which lives on the shadow stack.
#[inline(never)]
fn dive_large(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    black_box(&mut frame);
    if black_box(depth) == u64::MAX {
        return u64::from(frame[0]);
    }
    black_box(dive_large(depth + 1)).wrapping_add(u64::from(frame[1]))
}

impl Param {
    fn into_value(self) -> Result<Value, String> {
        Ok(match self {
            Param::Null => Value::Null,
            Param::Int(i) => Value::from(i),
            Param::Text(s) => Value::from(s),
            Param::Decimal(s) => Value::decimal(s),
            Param::Date(s) => {
                let [year, month, day] = numbers(&s, '-')?;
                Value::date(year, to_u8(month)?, to_u8(day)?)
            }
            Param::Time(s) => {
                let [hour, minute, second] = numbers(&s, ':')?;
                Value::time(to_u8(hour)?, to_u8(minute)?, to_u8(second)?, 0)
            }
            Param::Uuid(s) => Value::uuid(s),
            Param::Json(s) => Value::json_text(s),
            Param::Timestamp(micros) => Value::timestamp(micros),
        })
    }
}

/// Three integers separated by `separator`, unchecked beyond that.
fn numbers(text: &str, separator: char) -> Result<[i32; 3], String> {
    let parts: Vec<i32> = text
        .split(separator)
        .map(|part| {
            part.parse()
                .map_err(|_| format!("`{text}`: `{part}` is not a number"))
        })
        .collect::<Result<_, _>>()?;
    parts
        .try_into()
        .map_err(|_| format!("`{text}` does not have three parts"))
}

fn to_u8(n: i32) -> Result<u8, String> {
    u8::try_from(n).map_err(|_| format!("{n} does not fit a u8"))
}

wasmtx_guest::export_json!(run);
