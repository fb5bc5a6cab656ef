//! Micro-benchmarks of the host-only path (`cargo bench -p wasmtx`):
//!
//! - `transaction`: instantiate a script from its `InstancePre`, run it — three `execute`
//!   calls against a participant that does no I/O — and drop the instance;
//! - `transfer`: the same for `examples/transfer`; `transfer, every statement waits once`
//!   with each statement yielding to the runtime first, as real I/O does — the cost of
//!   suspending and resuming the fiber;
//! - `transfer, native twin, …`: the same statements from `wasmtx bench`'s native closure,
//!   the baseline the sandbox's cost is read against; both again with cold caches;
//! - `transfer x16 concurrent`: sixteen of those at once, cycling through the pool's slots;
//! - `cache_load`: load a compiled component from the on-disk cache;
//! - `transfer, warm`: the WASM transfer on one warm instance that serves every run;
//! - `python transfer`, `quickjs transfer`: the transfer examples written in Python
//!   (componentize-py) and JavaScript (jco's QuickJS backend), hot on a fresh instance and
//!   on a warm one, and loading each compiled component from the cache (hashing its bytes,
//!   or by the digest a registry checked, as a server loads a published plugin). Each is
//!   skipped, saying why, when its toolchain is missing (`scripts/test.sh` installs both:
//!   `WASMTX_COMPONENTIZE_PY`, `npm`);
//! - `spidermonkey transfer`: the same JavaScript built with componentize-js instead, when
//!   `WASMTX_BENCH_SPIDERMONKEY` names that build (`scripts/build-spidermonkey-transfer.sh`).
//!
//! The participant here is a stand-in that answers every statement with "1 row": it
//! measures wasmtx's own cost, never a database's.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use sha2::Digest;
use wasmtx::coordinator::PrepareLogic;
use wasmtx::dialect::Dialect;
use wasmtx::gid::{BranchId, Gid, NodeId};
use wasmtx::limits::Limits;
use wasmtx::participant::{
    ParticipantError, Resolution, ServerBranch, ServerParticipant, StatementError,
    StatementTimeouts,
};
use wasmtx::report::TxError;
use wasmtx::script::{ContentKey, Sandbox, Warm, WarmSettings};
use wasmtx::transaction::OpenTransaction;
use wasmtx::value::{Column, ResultLimits, RowSet, Value};

#[path = "../../bench/src/native.rs"]
#[allow(dead_code)]
mod native;
use native::NativeTransfer;

/// A participant that does no I/O. With `waits`, every statement first yields to the
/// runtime once, as a statement waiting on a real database would, so the script's fiber is
/// suspended and resumed at every host call.
struct NoIo {
    waits: bool,
}

impl NoIo {
    async fn maybe_wait(&self) {
        if self.waits {
            tokio::task::yield_now().await;
        }
    }
}

#[async_trait]
impl ServerBranch for NoIo {
    async fn execute(&mut self, _sql: &str, _params: &[Value]) -> Result<u64, StatementError> {
        self.maybe_wait().await;
        Ok(1)
    }
    async fn query(
        &mut self,
        _sql: &str,
        _params: &[Value],
        _limits: ResultLimits,
    ) -> Result<RowSet, StatementError> {
        self.maybe_wait().await;
        // One account row, so the transfer example finds what it looks for.
        Ok(RowSet {
            columns: vec![Column {
                name: "balance".into(),
                type_name: "INT8".into(),
            }],
            rows: vec![vec![Value::Int64(1_000_000)]],
        })
    }
    async fn prepare(&mut self) -> Result<(), ParticipantError> {
        Ok(())
    }
    async fn commit_one_phase(&mut self) -> Result<(), ParticipantError> {
        Ok(())
    }
    async fn commit_prepared(&mut self) -> Result<Resolution, ParticipantError> {
        Ok(Resolution::Done)
    }
    async fn rollback(&mut self) -> Result<Resolution, ParticipantError> {
        Ok(Resolution::Done)
    }
}

/// The participant whose branches are [`NoIo`]s.
struct NoIoParticipant {
    name: &'static str,
}

#[async_trait]
impl ServerParticipant for NoIoParticipant {
    fn name(&self) -> &str {
        self.name
    }
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }
    async fn begin(
        &self,
        _b: &BranchId,
        _t: StatementTimeouts,
    ) -> Result<Box<dyn ServerBranch>, ParticipantError> {
        Ok(Box::new(NoIo { waits: false }))
    }
    async fn prepared_branches(&self, _prefix: &str) -> Result<Vec<BranchId>, ParticipantError> {
        Ok(Vec::new())
    }
    async fn commit_prepared(&self, _b: &BranchId) -> Result<Resolution, ParticipantError> {
        Ok(Resolution::Done)
    }
    async fn rollback_prepared(&self, _b: &BranchId) -> Result<Resolution, ParticipantError> {
        Ok(Resolution::Done)
    }
}

/// More than the machine's caches hold: writing it evicts everything else.
const EVICT_BYTES: usize = 32 << 20;

/// Writes every cache line of `buffer`, pushing the host's code and data out of the caches.
#[inline(never)]
fn evict_caches(buffer: &mut [u8]) {
    for line in buffer.chunks_mut(64) {
        line[0] = line[0].wrapping_add(1);
    }
    std::hint::black_box(buffer);
}

/// Runs `transfer` on `iters` fresh transactions, each after evicting the caches, and
/// returns the time the runs took (the evictions not counted).
async fn timed_after_eviction<Fut>(
    iters: u64,
    evict: &RefCell<Vec<u8>>,
    new_tx: impl Fn() -> OpenTransaction,
    transfer: impl Fn(OpenTransaction) -> Fut,
) -> Duration
where
    Fut: Future<Output = (OpenTransaction, Result<String, TxError>)>,
{
    let mut timed = Duration::ZERO;
    for _ in 0..iters {
        evict_caches(&mut evict.borrow_mut());
        let tx = new_tx();
        let started = Instant::now();
        let (_tx, result) = transfer(tx).await;
        timed += started.elapsed();
        result.expect("the transfer succeeds");
    }
    timed
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// No-I/O participants with these names.
fn no_io_participants(names: &[&'static str]) -> Vec<Arc<dyn ServerParticipant>> {
    names
        .iter()
        .map(|&name| Arc::new(NoIoParticipant { name }) as Arc<dyn ServerParticipant>)
        .collect()
}

/// An open transaction over `participants`, each with a no-I/O branch whose statements
/// wait once if `waits`.
fn open_transaction(
    node: &NodeId,
    participants: &[Arc<dyn ServerParticipant>],
    waits: bool,
) -> OpenTransaction {
    let limits = Limits::default();
    let gid = Gid::new(node, SystemTime::now() + limits.timeout());
    let mut tx = OpenTransaction::new(
        gid.clone(),
        Instant::now() + limits.timeout(),
        limits.result_limits(),
    );
    for (i, participant) in participants.iter().enumerate() {
        tx.push_server_branch(
            participant.clone(),
            gid.branch(i as u32),
            Box::new(NoIo { waits }),
        );
    }
    tx
}

fn benchmarks(c: &mut Criterion) {
    let wasm = wasmtx::guest_build::build_guest(
        &repo().join("tests/guests/three-executes"),
        true,
        Some(&repo().join("target/guests")),
    )
    .expect("building the benchmark guest");
    let cache_dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    // Room for one parked instance, for the warm variants.
    let sandbox =
        Sandbox::with_warm_instances(&limits, 1, 1, cache_dir.path().to_owned()).expect("engine");
    let script = sandbox.load(&wasm).expect("loading the benchmark guest");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let node = NodeId::new("bench").unwrap();
    let noio = no_io_participants(&["noio"]);
    let a_b = no_io_participants(&["a", "b"]);

    c.bench_function("transaction: instantiate + 3 execute + drop", |b| {
        b.to_async(&runtime).iter(|| async {
            let tx = open_transaction(&node, &noio, false);
            let (_tx, result) = sandbox.run(&script, tx, "").await;
            result.expect("the benchmark script succeeds");
        })
    });

    let transfer_wasm = wasmtx::guest_build::build_guest(
        &repo().join("examples/transfer"),
        true,
        Some(&repo().join("target/guests")),
    )
    .expect("building the transfer example");
    let transfer = sandbox
        .load(&transfer_wasm)
        .expect("loading the transfer example");
    let input = r#"{"from":{"participant":"a","account":"alice"},"to":{"participant":"b","account":"bob"},"amount":1}"#;
    c.bench_function("transfer: instantiate + examples/transfer + drop", |b| {
        b.to_async(&runtime).iter(|| async {
            let tx = open_transaction(&node, &a_b, false);
            let (_tx, result) = sandbox.run(&transfer, tx, input).await;
            result.expect("the transfer succeeds");
        })
    });
    c.bench_function("transfer, every statement waits once", |b| {
        b.to_async(&runtime).iter(|| async {
            let tx = open_transaction(&node, &a_b, true);
            let (_tx, result) = sandbox.run(&transfer, tx, input).await;
            result.expect("the transfer succeeds");
        })
    });

    // The same on a warm instance: one instance serves every transaction.
    let warm = Warm::new(WarmSettings {
        max_uses: u32::MAX,
        idle_secs: 3600,
    });
    c.bench_function("transfer, warm, every statement waits once", |b| {
        b.to_async(&runtime).iter(|| async {
            let tx = open_transaction(&node, &a_b, true);
            let (_tx, result) = sandbox.run_warm(&transfer, &warm, tx, input).await;
            result.expect("the transfer succeeds");
        })
    });

    // The same transfer as a native closure (`wasmtx-devbench --compare native`'s twin):
    // the difference to the line above is what the sandbox costs.
    c.bench_function("transfer, native twin, every statement waits once", |b| {
        b.to_async(&runtime).iter(|| async {
            let tx = open_transaction(&node, &a_b, true);
            let (_tx, result) = NativeTransfer.prepare(tx, input).await;
            result.expect("the transfer succeeds");
        })
    });

    // Between real transactions the databases run on the same cores and evict the host's
    // data and code from the caches: the same two, each started with cold caches (the
    // eviction itself is not timed).
    let evict = RefCell::new(vec![0u8; EVICT_BYTES]);
    let new_tx = || open_transaction(&node, &a_b, true);
    c.bench_function("transfer, caches cold", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            timed_after_eviction(iters, &evict, new_tx, |tx| {
                sandbox.run(&transfer, tx, input)
            })
        })
    });
    c.bench_function("transfer, native twin, caches cold", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            timed_after_eviction(iters, &evict, new_tx, |tx| {
                NativeTransfer.prepare(tx, input)
            })
        })
    });

    // Sixteen transfers at once through a sandbox sized for sixteen, as `wasmtx bench
    // --concurrency 16` runs them: instances cycle through sixteen pool slots.
    let sandbox16 = Sandbox::new(&limits, 16, cache_dir.path().to_owned()).expect("engine");
    let transfer16 = sandbox16
        .load(&transfer_wasm)
        .expect("loading the transfer example");
    c.bench_function("transfer x16 concurrent (time per batch of 16)", |b| {
        b.to_async(&runtime).iter(|| async {
            let runs = (0..16).map(|_| {
                let tx = open_transaction(&node, &a_b, true);
                sandbox16.run(&transfer16, tx, input)
            });
            for (_tx, result) in futures::future::join_all(runs).await {
                result.expect("the transfer succeeds");
            }
        })
    });

    let bytes = std::fs::read(&wasm).unwrap();
    c.bench_function("cache_load: compiled component from disk", |b| {
        b.iter(|| {
            sandbox
                .cache()
                .load(&sandbox.engine(), &bytes)
                .expect("cache hit")
        })
    });

    for (language, built) in [
        ("python", python_transfer()),
        ("quickjs", js_transfer()),
        ("spidermonkey", spidermonkey_transfer()),
    ] {
        let wasm = match built {
            Ok(wasm) => wasm,
            Err(why) => {
                eprintln!("skipping the {language} transfer: {why}");
                continue;
            }
        };
        // A sandbox of its own: an interpreter component sizes the instance pool up.
        let sandbox = Sandbox::with_warm_instances(&limits, 1, 1, cache_dir.path().to_owned())
            .expect("engine");
        let script = sandbox.load(&wasm).expect("loading the transfer");
        c.bench_function(
            &format!("{language} transfer: instantiate + run + drop"),
            |b| {
                b.to_async(&runtime).iter(|| async {
                    let tx = open_transaction(&node, &a_b, true);
                    let (_tx, result) = sandbox.run(&script, tx, input).await;
                    result.expect("the transfer succeeds");
                })
            },
        );
        let warm = Warm::new(WarmSettings {
            max_uses: u32::MAX,
            idle_secs: 3600,
        });
        c.bench_function(&format!("{language} transfer: warm instance, run"), |b| {
            b.to_async(&runtime).iter(|| async {
                let tx = open_transaction(&node, &a_b, true);
                let (_tx, result) = sandbox.run_warm(&script, &warm, tx, input).await;
                result.expect("the transfer succeeds");
            })
        });
        let bytes = std::fs::read(&wasm).unwrap();
        c.bench_function(&format!("{language} transfer: cache_load"), |b| {
            b.iter(|| {
                sandbox
                    .cache()
                    .load(&sandbox.engine(), &bytes)
                    .expect("cache hit")
            })
        });
        // As a server loads a published plugin: keyed by the digest the registry checked.
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        let key = ContentKey::Digest(&digest);
        let engine = sandbox.engine();
        sandbox
            .cache()
            .load_as(&engine, &bytes, key)
            .expect("compiles");
        c.bench_function(&format!("{language} transfer: cache_load by digest"), |b| {
            b.iter(|| {
                sandbox
                    .cache()
                    .load_as(&engine, &bytes, key)
                    .expect("cache hit")
            })
        });
    }
}

/// `examples/python-transfer`, built with componentize-py.
fn python_transfer() -> Result<PathBuf, String> {
    wasmtx::guest_build::componentize_py_version().map_err(|e| e.to_string())?;
    wasmtx::guest_build::build_guest(
        &repo().join("examples/python-transfer"),
        true,
        Some(&repo().join("target/guests-python")),
    )
    .map_err(|e| e.to_string())
}

/// `examples/js-transfer`, built with its pinned jco (`npm ci` first if needed).
fn js_transfer() -> Result<PathBuf, String> {
    let dir = repo().join("examples/js-transfer");
    let npm = |args: &[&str]| {
        std::process::Command::new("npm")
            .args(args)
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm: {e}"))
    };
    if !dir.join("node_modules").exists() {
        npm(&["ci", "--no-audit", "--no-fund"])?;
    }
    let out = npm(&["run", "build"])?;
    if !out.status.success() {
        return Err(format!(
            "npm run build: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir.join("build/js-transfer.wasm"))
}

/// `examples/js-transfer` built with componentize-js, if `WASMTX_BENCH_SPIDERMONKEY` names it.
fn spidermonkey_transfer() -> Result<PathBuf, String> {
    match std::env::var_os("WASMTX_BENCH_SPIDERMONKEY") {
        Some(path) => Ok(PathBuf::from(path)),
        None => Err(
            "WASMTX_BENCH_SPIDERMONKEY is not set (scripts/build-spidermonkey-transfer.sh builds it)"
                .into(),
        ),
    }
}

criterion_group! {
    name = host_path;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = benchmarks
}
criterion_main!(host_path);
