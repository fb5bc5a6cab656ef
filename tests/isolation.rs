//! One transaction's data never reaches the next instance, even when the host's memory was
//! swapped out while the transaction ran.
//!
//! The sandbox's pool resets a freed instance's memory and tables before the next instance
//! gets them. These tests put that reset under memory pressure: a swap file is added (and
//! removed whatever happens), a transaction fills memory or a table, the process's
//! anonymous memory is paged out while the instance is still alive (as memory pressure
//! would, with `process_madvise(MADV_PAGEOUT)`), the instance ends, and a fresh instance
//! reads everything it can see. Adding swap changes the machine: this is its own test
//! binary, and its tests run one at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::serve::*;
use common::*;
use serde_json::{Value, json};

/// The tests of this binary change the machine (swap): one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// MiB of marker the probe plants, and how long it computes afterwards.
const PLANT_MIB: usize = 2;
const PLANT_MS: u64 = 3000;
/// How far a scanning instance grows its memory first: past where the planter's heap was.
const SCAN_MIB: usize = 8;

#[test]
fn a_fresh_instance_reads_nothing_of_the_previous_transaction_whose_memory_was_swapped_out() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_swap) = SwapFile::on() else { return };
    let dir = TestDir::new();
    let db = dir.path("a.db");
    create_sqlite(&db, "CREATE TABLE t (x INTEGER)");
    // One slot: every transaction reuses the memory the one before it had.
    let config = write_config(
        &dir,
        &[("a", format!("sqlite://{}", db.display()))],
        "[server]\nconcurrency = 1\n",
    );
    let server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(
        server
            .publish("probe", "1.0.0", &guest("tests/guests/memory-probe"))
            .0,
        201
    );
    assert_eq!(
        server
            .publish("scan", "1.0.0", &guest("tests/guests/memory-scan"))
            .0,
        201
    );

    // Another plugin first, then the same plugin: each after a transaction of its own that
    // planted, so the first scan's reads cannot have cleaned up for the second.
    for scanner in ["scan", "probe", "scan", "probe"] {
        let nonce = fresh_nonce();
        let swapped = plant_while_paging_out(&server, nonce);
        assert!(
            swapped >= 256 << 10,
            "the server's memory was not paged out while the marker was planted (VmSwap at most {swapped} bytes); the test would prove nothing"
        );
        let found = markers_seen(&server, scanner, &format!("scan {nonce:016x} {SCAN_MIB}"));
        assert_eq!(
            found,
            0,
            "a fresh instance of plugin {scanner:?} read {found} marker blocks ({} KiB) of the previous transaction's memory, which was swapped out when that transaction ended",
            found * 16 / 1024
        );
    }
}

#[test]
fn a_fresh_instance_finds_no_table_entry_of_the_previous_one_whose_table_was_swapped_out() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_swap) = SwapFile::on() else { return };
    // The sandbox's own engine and pool, as every script instance gets them.
    let engine = wasmtx::script::engine::ScriptEngine::new(
        &wasmtx::limits::Limits::default(),
        1,
        wasmtx::script::engine::BASE_BUDGET,
    )
    .expect("the script engine");
    // 8,192 funcref entries: 64 KiB of table, all within what the pool keeps resident.
    let module = wasmtime::Module::new(
        engine.engine(),
        wat::parse_str(
            r#"(module
                 (table $t 8192 funcref)
                 (func $f)
                 (elem declare func $f)
                 (func (export "fill") (table.fill $t (i32.const 0) (ref.func $f) (i32.const 8192)))
                 (func (export "count") (result i32) (local $i i32) (local $n i32)
                   (block $done
                     (loop $next
                       (br_if $done (i32.ge_u (local.get $i) (i32.const 8192)))
                       (if (i32.eqz (ref.is_null (table.get $t (local.get $i))))
                         (then (local.set $n (i32.add (local.get $n) (i32.const 1)))))
                       (local.set $i (i32.add (local.get $i) (i32.const 1)))
                       (br $next)))
                   (local.get $n)))"#,
        )
        .unwrap(),
    )
    .expect("the table module compiles");
    let runtime = runtime();
    for round in 0..3 {
        let mut store = wasmtime::Store::new(engine.engine(), ());
        store.set_epoch_deadline(1000);
        let instance = runtime
            .block_on(wasmtime::Instance::new_async(&mut store, &module, &[]))
            .expect("instantiating");
        let count = instance
            .get_typed_func::<(), i32>(&mut store, "count")
            .unwrap();
        let fill = instance
            .get_typed_func::<(), ()>(&mut store, "fill")
            .unwrap();
        let left = runtime.block_on(count.call_async(&mut store, ())).unwrap();
        assert_eq!(
            left, 0,
            "round {round}: a fresh instance's table holds {left} entries of the previous instance, whose table was swapped out when it ended"
        );
        runtime.block_on(fill.call_async(&mut store, ())).unwrap();
        let filled = runtime.block_on(count.call_async(&mut store, ())).unwrap();
        assert_eq!(filled, 8192, "the count does not see what fill wrote");
        let swapped = page_out(std::process::id());
        assert!(
            swapped >= 64 << 10,
            "this process's memory was not paged out (VmSwap {swapped} bytes); the test would prove nothing"
        );
        // The instance ends here, its table swapped out; the next round's instance takes
        // the same slot of the pool.
        drop(store);
    }
}

/// Invokes the probe to plant its marker and keeps paging the server's memory out until
/// the transaction ends; the most the server had in swap meanwhile, in bytes.
fn plant_while_paging_out(server: &ServerProcess, nonce: u64) -> u64 {
    let url = server.url.clone();
    let input = format!("plant {nonce:016x} {PLANT_MIB} {PLANT_MS}");
    let planting = std::thread::spawn(move || {
        http(
            &url,
            "POST",
            "/v1/plugins/probe/invoke",
            Some(INVOKER),
            Some(json!({ "input": input })),
        )
    });
    let pid = server.child.id();
    let mut most_swapped = 0;
    while !planting.is_finished() {
        most_swapped = most_swapped.max(page_out(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = planting.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let planted = count_of(&body);
    let blocks = (PLANT_MIB << 20) as u64 / 16;
    assert!(
        planted >= blocks,
        "the probe saw {planted} of the {blocks} marker blocks it planted: the scan is broken"
    );
    most_swapped
}

/// How many marker blocks a fresh instance of `plugin` finds, scanning with `input`.
fn markers_seen(server: &ServerProcess, plugin: &str, input: &str) -> u64 {
    let (status, body) = http(
        &server.url,
        "POST",
        &format!("/v1/plugins/{plugin}/invoke"),
        Some(INVOKER),
        Some(json!({ "input": input })),
    );
    assert_eq!(status, 200, "{body}");
    count_of(&body)
}

/// The count a probe answered: its output is a number (JSON) or a string of one.
fn count_of(body: &Value) -> u64 {
    match &body["output"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("no count in {body}"))
}

/// A nonce no earlier run planted.
fn fresh_nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Never 0, and not a value memory is likely to hold by chance.
    (nanos ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1
}

/// Asks the kernel to page out every private writable mapping of process `pid`, as memory
/// pressure would; how much of it is in swap afterwards (`VmSwap`), in bytes.
fn page_out(pid: u32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    // SAFETY: plain system calls on a process id and a descriptor this function owns.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if pidfd < 0 {
        return 0;
    }
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") || !perms.ends_with('p') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let range = libc::iovec {
            iov_base: start as *mut libc::c_void,
            iov_len: end - start,
        };
        // One mapping per call: a mapping the kernel refuses (locked, special) must not
        // stop the others. What it refuses stays resident, which is all it means.
        unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                pidfd,
                &range as *const libc::iovec,
                1usize,
                libc::MADV_PAGEOUT,
                0u32,
            );
        }
    }
    unsafe { libc::close(pidfd) };
    swapped_bytes(pid)
}

/// `VmSwap` of process `pid`, in bytes.
fn swapped_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmSwap:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A swap file turned on for the test and removed when dropped, whatever happened.
struct SwapFile {
    path: PathBuf,
}

impl SwapFile {
    /// Turns on a 1 GiB swap file. Outside CI, `None` (with the reason printed) where that
    /// is not possible; under `CI=true` a failure.
    fn on() -> Option<SwapFile> {
        let path = PathBuf::from("/var/tmp/wasmtx-isolation-test.swap");
        // A run killed before it could clean up leaves its file on: start afresh.
        if let Err(err) = Self::remove(&path) {
            panic!("{err}");
        }
        let steps: [&[&str]; 3] = [
            &["fallocate", "-l", "1G"],
            &["mkswap", "--quiet"],
            &["swapon"],
        ];
        for step in steps {
            let done = Command::new(step[0]).args(&step[1..]).arg(&path).output();
            if step[0] == "fallocate" {
                // mkswap and swapon refuse a file others can read.
                let _ = std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                );
            }
            let failure = match done {
                Ok(out) if out.status.success() => continue,
                Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                Err(err) => err.to_string(),
            };
            let _ = Self::remove(&path);
            let reason = format!(
                "`{} {}` failed: {} (adding swap needs root)",
                step.join(" "),
                path.display(),
                failure.trim()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("the isolation tests must run under CI: {reason}");
            }
            eprintln!("skipping: {reason}");
            return None;
        }
        Some(SwapFile { path })
    }

    /// Turns the file off if it is on, and deletes it.
    fn remove(path: &Path) -> Result<(), String> {
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        if swaps
            .lines()
            .any(|l| l.split_whitespace().next() == path.to_str())
        {
            let off = Command::new("swapoff").arg(path).status();
            if !off.is_ok_and(|s| s.success()) {
                return Err(format!(
                    "swapoff {} failed: turn it off and delete it by hand",
                    path.display()
                ));
            }
        }
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("deleting {}: {err}", path.display()))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        if let Err(err) = Self::remove(&self.path) {
            eprintln!("{err}");
        }
    }
}
