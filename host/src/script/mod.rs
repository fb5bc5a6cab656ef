//! The sandbox: loads script components and runs one fresh, isolated instance per
//! transaction — or, for a plugin an operator trusts with it, a warm one (`warm.rs`).
//!
//! - `engine.rs` is the one wasmtime engine configuration: the instance pool, the reset of
//!   what a freed instance leaves, epoch interruption;
//! - `cache.rs` keeps compiled components on disk;
//! - `host.rs` implements the WIT imports (`sql`, `log`) and nothing else;
//! - `convert.rs` maps WIT values to host values and back;
//! - `policy.rs` decides which statements a script may send;
//! - `capture.rs` captures the script's stdout and stderr, capped;
//! - `needs.rs` counts what one instance of a component takes from the instance pool;
//! - `refusal.rs` explains why a component cannot run here;
//! - `warm.rs` parks instances between the transactions of one plugin version, when asked.
//!
//! A script gets WASI with nothing granted (no files, environment, arguments, sockets or
//! name lookup), a memory and stack cap, a handle cap, and a deadline enforced three ways:
//! epoch interruption for guest CPU, a timeout around the whole run (a guest blocked in a
//! host call), and statement timeouts inside the databases.

pub mod cache;
mod capture;
mod convert;
pub mod engine;
mod host;
mod inspect;
mod logic;
mod needs;
pub mod policy;
mod refusal;
mod warm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use thiserror::Error;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::limits::Limits;
use crate::report::{ErrorKind, TxError};
use crate::transaction::OpenTransaction;
pub use cache::{CacheState, ComponentCache, ContentKey};
use capture::CappedPipe;
use engine::{BASE_BUDGET, ScriptEngine};
pub use host::ParticipantHandle;
pub use inspect::{CompiledCache, Inspection};
pub use logic::ScriptLogic;
pub use needs::InstanceNeeds;
pub use warm::{Warm, WarmSettings};

/// Bindings generated from `wit/` for the `script` world.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "script",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "wasmtx:script/sql.participant": super::ParticipantHandle },
    });
}

/// The world every script must implement.
pub const WORLD: &str = "wasmtx:script/script@0.1.0";

/// Why a script could not be loaded. Each message says what to do.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read script {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a WebAssembly file (it does not start with \\0asm)")]
    NotWasm { path: PathBuf },
    #[error(
        "{path} is a core WebAssembly module, not a component; build the script for wasm32-wasip2 (cargo build --target wasm32-wasip2) or wrap it with `wasm-tools component new`"
    )]
    CoreModule { path: PathBuf },
    #[error("{path} is not a valid component: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path} does not implement the world {WORLD}: {message}")]
    WrongWorld { path: PathBuf, message: String },
    /// A component this host will not run: it needs more of the pool or memory than the
    /// limits allow, imports what wasmtx does not provide, or uses the async ABI.
    #[error("{path} cannot run in wasmtx: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("cannot set up a script engine for {path}: {message}")]
    Engine { path: PathBuf, message: String },
}

/// A loaded script, ready to instantiate many times.
pub struct Script {
    pre: bindings::ScriptPre<StoreState>,
    /// The engine it was compiled for, whose pool its instances come from.
    sized: Arc<SizedEngine>,
    pub path: PathBuf,
    pub size: usize,
    pub cache: CacheState,
    /// What one instance takes from the pool.
    pub needs: InstanceNeeds,
}

/// An engine, its pool sized for a per-instance budget, and the linker bound to it.
struct SizedEngine {
    engine: ScriptEngine,
    linker: Linker<StoreState>,
}

impl SizedEngine {
    fn new(limits: &Limits, concurrency: u32, budget: InstanceNeeds) -> wasmtime::Result<Self> {
        let engine = ScriptEngine::new(limits, concurrency, budget)?;
        let mut linker = Linker::new(engine.engine());
        // Rust guests import wasi:cli and wasi:io even when they use neither; link WASI
        // with nothing granted rather than trapping stubs.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Script::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        Ok(SizedEngine { engine, linker })
    }
}

/// The engine, linker and cache shared by every transaction of a host.
///
/// The instance pool starts with [`BASE_BUDGET`] per script instance, which fits Rust
/// scripts. Loading a script that needs more (a Python or JavaScript engine component has
/// 10–20 core instances) sets up a new engine whose pool has room for it, up to
/// `limits.max_core_instances`, `max_memories` and `max_tables`; scripts loaded earlier
/// keep the engine they were compiled for. Every transaction gets a fresh instance, unless
/// it runs under a [`Warm`] claim ([`Sandbox::run_warm`]).
pub struct Sandbox {
    current: Mutex<Arc<SizedEngine>>,
    /// Instances the pool holds: those running at once, plus those parked warm.
    pool_size: u32,
    cache: ComponentCache,
    limits: Limits,
    parked: warm::Parked<Live>,
}

/// A live instance and its store, between transactions when parked.
struct Live {
    store: Store<StoreState>,
    instance: bindings::Script,
}

impl Sandbox {
    /// A sandbox for at most `concurrency` scripts running at once, each in a fresh instance.
    pub fn new(limits: &Limits, concurrency: u32, cache_dir: PathBuf) -> wasmtime::Result<Self> {
        Self::with_warm_instances(limits, concurrency, 0, cache_dir)
    }

    /// A sandbox for at most `concurrency` scripts running at once that also keeps up to
    /// `warm` instances parked between the transactions of plugins run warm.
    pub fn with_warm_instances(
        limits: &Limits,
        concurrency: u32,
        warm: u32,
        cache_dir: PathBuf,
    ) -> wasmtime::Result<Self> {
        let pool_size = concurrency.max(1).saturating_add(warm);
        let sized = SizedEngine::new(limits, pool_size, BASE_BUDGET)?;
        Ok(Sandbox {
            current: Mutex::new(Arc::new(sized)),
            pool_size,
            cache: ComponentCache::new(cache_dir),
            limits: limits.clone(),
            parked: warm::Parked::new(warm as usize),
        })
    }

    /// Instances parked warm now.
    pub fn parked_instances(&self) -> usize {
        self.parked.len()
    }

    /// Drops every parked warm instance (a plugin version withdrawn, or at shutdown).
    pub fn drop_parked(&self) {
        self.parked.clear();
    }

    fn current(&self) -> Arc<SizedEngine> {
        self.current.lock().expect("sandbox lock").clone()
    }

    /// The engine scripts are compiled for now: its pool is the largest so far.
    pub fn engine(&self) -> wasmtime::Engine {
        self.current().engine.engine().clone()
    }

    /// What the current pool holds per script instance.
    pub fn budget(&self) -> InstanceNeeds {
        *self.current().engine.budget()
    }

    /// Refuses a component whose instance needs more than the limits allow; the message
    /// names the number and the setting.
    fn check_needs(&self, path: &Path, needs: &InstanceNeeds) -> Result<(), LoadError> {
        let limits = &self.limits;
        let over = [
            (
                "core instances",
                needs.core_instances,
                "max_core_instances",
                limits.max_core_instances,
            ),
            (
                "linear memories",
                needs.memories,
                "max_memories",
                limits.max_memories,
            ),
            ("tables", needs.tables, "max_tables", limits.max_tables),
        ]
        .into_iter()
        .find(|(_, need, _, max)| need > max);
        if let Some((what, need, key, max)) = over {
            return Err(LoadError::Refused {
                path: path.to_owned(),
                reason: format!(
                    "one instance of it needs {need} {what}, more than limits.{key} ({max}) allows; raise limits.{key} in the configuration's [limits] to run it"
                ),
            });
        }
        if needs.initial_memory_bytes > limits.memory_bytes() as u64 {
            return Err(LoadError::Refused {
                path: path.to_owned(),
                reason: format!(
                    "it starts with a linear memory of {:.1} MiB, more than limits.memory_mib ({} MiB); raise limits.memory_mib (or --memory-mib) to run it",
                    needs.initial_memory_bytes as f64 / (1 << 20) as f64,
                    limits.memory_mib
                ),
            });
        }
        Ok(())
    }

    /// The engine to compile a script needing `needs` for: the current one if its pool has
    /// room, else a new one whose pool has room for it and for every earlier script (later
    /// loads use it; scripts loaded earlier keep theirs).
    fn engine_for(
        &self,
        path: &Path,
        needs: &InstanceNeeds,
    ) -> Result<Arc<SizedEngine>, LoadError> {
        self.check_needs(path, needs)?;
        let mut current = self.current.lock().expect("sandbox lock");
        if needs.fits(current.engine.budget()) {
            return Ok(current.clone());
        }
        let budget = current.engine.budget().max(*needs);
        let grown = SizedEngine::new(&self.limits, self.pool_size, budget).map_err(|e| {
            LoadError::Engine {
                path: path.to_owned(),
                message: format!("{e:#}"),
            }
        })?;
        tracing::debug!(
            core_instances = budget.core_instances,
            memories = budget.memories,
            tables = budget.tables,
            "instance pool grown for {}",
            path.display()
        );
        *current = Arc::new(grown);
        Ok(current.clone())
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    /// Reads, checks, compiles (or loads from the cache) and type-checks a script, growing
    /// the instance pool if it needs more than the pool holds (see [`Sandbox`]).
    pub fn load(&self, path: &Path) -> Result<Script, LoadError> {
        self.load_as(path, ContentKey::Hash)
    }

    /// [`Sandbox::load`] of a published component, whose bytes the registry checked against
    /// `digest` (`sha256:<hex>`): its compiled form is cached under the digest, so loading
    /// hashes nothing again.
    pub fn load_published(&self, path: &Path, digest: &str) -> Result<Script, LoadError> {
        self.load_as(path, ContentKey::Digest(digest))
    }

    fn load_as(&self, path: &Path, key: ContentKey) -> Result<Script, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut needs = self.needs(path, &bytes)?;
        let (sized, component, cache) = self.compile_for(path, &bytes, key, &mut needs)?;
        let wrong_world = |e: wasmtime::Error| {
            refusal::unprovided_import(path, &component, sized.engine.engine()).unwrap_or_else(
                || LoadError::WrongWorld {
                    path: path.to_owned(),
                    message: format!("{e:#}"),
                },
            )
        };
        let instance_pre = sized
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = bindings::ScriptPre::new(instance_pre).map_err(wrong_world)?;
        Ok(Script {
            pre,
            sized: sized.clone(),
            path: path.to_owned(),
            size: bytes.len(),
            cache,
            needs,
        })
    }

    /// Compiles `bytes` for an engine whose pool holds `needs` per instance. When wasmtime
    /// counts more core instances than the binary shows (adapters it adds), `needs` is
    /// corrected and the pool grown once more.
    fn compile_for(
        &self,
        path: &Path,
        bytes: &[u8],
        key: ContentKey,
        needs: &mut InstanceNeeds,
    ) -> Result<(Arc<SizedEngine>, Component, CacheState), LoadError> {
        let sized = self.engine_for(path, needs)?;
        match self.cache.load_as(sized.engine.engine(), bytes, key) {
            Ok((component, cache)) => Ok((sized, component, cache)),
            Err(err) => match needs::counted_by_wasmtime(&err) {
                Some(counted) if counted > needs.core_instances => {
                    needs.core_instances = counted;
                    let sized = self.engine_for(path, needs)?;
                    let (component, cache) = self.compile_on(&sized, path, bytes, key)?;
                    Ok((sized, component, cache))
                }
                _ => Err(refusal::compile_error(path, &err)),
            },
        }
    }

    /// What one instance of the component in `bytes` takes from the pool.
    fn needs(&self, path: &Path, bytes: &[u8]) -> Result<InstanceNeeds, LoadError> {
        check_header(path, bytes)?;
        needs::count(bytes).map_err(|message| LoadError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    fn compile_on(
        &self,
        sized: &SizedEngine,
        path: &Path,
        bytes: &[u8],
        key: ContentKey,
    ) -> Result<(Component, CacheState), LoadError> {
        check_header(path, bytes)?;
        self.cache
            .load_as(sized.engine.engine(), bytes, key)
            .map_err(|e| refusal::compile_error(path, &e))
    }

    /// Runs the script's `run` on a fresh instance bound to `tx`. `Ok` is the script's
    /// vote to commit with its output; any failure is typed. The transaction comes back in
    /// every case, doomed if a statement failed.
    pub async fn run(
        &self,
        script: &Script,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        self.run_on(script, None, tx, input).await
    }

    /// [`Sandbox::run`] on an instance parked by an earlier transaction under the same
    /// `warm` claim when one waits, else on a fresh one; afterwards the instance is parked
    /// again if the run ended cleanly (see `warm.rs` for what carries over and what not).
    pub async fn run_warm(
        &self,
        script: &Script,
        warm: &Warm,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        self.run_on(script, Some(warm), tx, input).await
    }

    async fn run_on(
        &self,
        script: &Script,
        warm: Option<&Warm>,
        tx: OpenTransaction,
        input: &str,
    ) -> (OpenTransaction, Result<String, TxError>) {
        let limits = &self.limits;
        let parked = warm.and_then(|warm| self.parked.take(warm));
        if let Some(warm) = warm {
            warm.count(parked.is_some());
        }
        let (mut store, parked_instance, uses) = match parked {
            Some((live, uses)) => (live.store, Some(live.instance), uses),
            None => (self.new_store(script), None, 0),
        };
        let remaining = tx.deadline.saturating_duration_since(Instant::now());
        store.data_mut().bind(tx, limits);
        store.set_epoch_deadline(ScriptEngine::ticks_for(remaining));

        let call = async {
            let instance =
                match parked_instance {
                    Some(instance) => instance,
                    None => {
                        script.pre.instantiate_async(&mut store).await.map_err(
                            |e| match pool_full(&e, &script.sized.engine) {
                                Some(full) => full,
                                None => Failure::Wasm(e),
                            },
                        )?
                    }
                };
            match instance.call_run(&mut store, input).await {
                Ok(vote) => Ok((instance, vote)),
                Err(err) => Err(Failure::Wasm(err)),
            }
        };
        let (outcome, survivor) = match tokio::time::timeout(remaining, call).await {
            Ok(Ok((instance, Ok(output)))) => (self.check_output(output), Some(instance)),
            Ok(Ok((instance, Err(reason)))) => (
                Err(TxError::new(
                    ErrorKind::Script,
                    clip_owned(reason, limits.max_output_bytes),
                )),
                Some(instance),
            ),
            Ok(Err(Failure::PoolFull(error))) => (Err(error), None),
            Ok(Err(Failure::Wasm(err))) => {
                (Err(classify_failure(&err, store.data(), limits)), None)
            }
            Err(_elapsed) => (Err(timeout_error(limits)), None),
        };
        let (tx, clean) = store.data_mut().unbind();
        // Parked again only after a run the script finished itself with no limit hit (an
        // output over its limit is one): never after a trap, a timeout or the memory limit.
        let reusable = clean && !matches!(&outcome, Err(e) if e.kind == ErrorKind::Limit);
        if let (Some(warm), Some(instance), true) = (warm, survivor, reusable) {
            self.parked.park(warm, Live { store, instance }, uses + 1);
        }
        (tx, outcome)
    }

    /// A store for a new instance of `script`, bound to no transaction yet.
    fn new_store(&self, script: &Script) -> Store<StoreState> {
        let limits = &self.limits;
        let stdout = CappedPipe::new(limits.max_stdio_bytes);
        let stderr = CappedPipe::new(limits.max_stdio_bytes);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_handles as usize);
        let state = StoreState {
            wasi,
            table,
            limiter: MemoryLimiter {
                max_bytes: limits.memory_bytes(),
                denied: false,
            },
            stdout,
            stderr,
            run: 0,
            host: host::HostState::new(limits),
            tx: None,
        };
        let mut store = Store::new(script.sized.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_max_component_handles(limits.max_handles as usize);
        store.epoch_deadline_trap();
        store
    }

    fn check_output(&self, output: String) -> Result<String, TxError> {
        if output.len() > self.limits.max_output_bytes {
            return Err(TxError::new(
                ErrorKind::Limit,
                format!(
                    "the script's output is {} bytes, more than limits.max_output_bytes ({})",
                    output.len(),
                    self.limits.max_output_bytes
                ),
            ));
        }
        Ok(output)
    }
}

/// Why a run failed before the script's vote.
enum Failure {
    /// No free slot in the instance pool: a configuration matter, not the script's doing.
    PoolFull(TxError),
    /// The instance trapped or failed to instantiate.
    Wasm(wasmtime::Error),
}

/// A full instance pool as a `limit` error naming what ran out, if that is what `err` is.
fn pool_full(err: &wasmtime::Error, engine: &ScriptEngine) -> Option<Failure> {
    let full = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<wasmtime::PoolConcurrencyLimitError>())?;
    let budget = engine.budget();
    Some(Failure::PoolFull(
        TxError::new(
            ErrorKind::Limit,
            format!(
                "no free instance in the sandbox's pool ({full}); it holds {} script instances of {} core instances, {} memories and {} tables each",
                engine.concurrency(),
                budget.core_instances,
                budget.memories,
                budget.tables
            ),
        )
        .with_hint(
            "more scripts ran at once than the host was sized for: lower the load or raise the host's concurrency",
        ),
    ))
}

/// Refuses what is not a component before the compiler sees it, with a precise message.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    // Bytes 4..8: version and layer. Core modules are layer 0, components layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Per-store data: WASI, the handle table, limits and the transaction the script drives.
/// What is per transaction (`host`, `tx`, the memory-limit flag, the captured output) is
/// set anew by [`StoreState::bind`] for every transaction a warm instance serves.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stdout: CappedPipe,
    stderr: CappedPipe,
    /// Counts the transactions this store served; a participant handle carries the count
    /// of the transaction it was made in.
    run: u64,
    host: host::HostState,
    /// The transaction the script drives; none between transactions.
    tx: Option<OpenTransaction>,
}

impl StoreState {
    /// Binds the next transaction: fresh budgets, counters and captured output.
    fn bind(&mut self, tx: OpenTransaction, limits: &Limits) {
        self.run += 1;
        self.host = host::HostState::new(limits);
        self.limiter.denied = false;
        self.stdout.clear();
        self.stderr.clear();
        self.tx = Some(tx);
    }

    /// Ends the bound transaction: logs what the script printed and dropped, and gives the
    /// transaction back, with whether the run stayed within every limit — the memory
    /// limit, the handle, statement, result, log and output budgets — and its deadline.
    fn unbind(&mut self) -> (OpenTransaction, bool) {
        let tx = self
            .tx
            .take()
            .expect("a transaction is bound while the script runs");
        self.host.report_dropped(&tx.gid);
        let printed_past_cap = log_captured(&tx.gid, "stdout", &self.stdout)
            | log_captured(&tx.gid, "stderr", &self.stderr);
        let doomed_by_limit = tx
            .doomed()
            .is_some_and(|e| matches!(e.kind, ErrorKind::Limit | ErrorKind::Timeout));
        let clean = !self.host.crossed_a_limit()
            && !self.limiter.denied
            && !printed_past_cap
            && !doomed_by_limit;
        (tx, clean)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers a refusal, so the failure reads as a memory limit.
struct MemoryLimiter {
    max_bytes: usize,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.denied = true;
            wasmtime::bail!("memory limit reached");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn classify_failure(err: &wasmtime::Error, state: &StoreState, limits: &Limits) -> TxError {
    if state.limiter.denied {
        return TxError::new(
            ErrorKind::Memory,
            format!(
                "the script reached its memory limit of {} MiB (limits.memory_mib)",
                limits.memory_mib
            ),
        );
    }
    if let Some(limit) = state.host.limit_hit() {
        return TxError::new(ErrorKind::Limit, limit.to_owned());
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => timeout_error(limits),
        Some(Trap::StackOverflow) => TxError::new(
            ErrorKind::Trap,
            format!(
                "the script overflowed its stack of {} KiB (limits.stack_kib)",
                limits.stack_kib
            ),
        ),
        _ => {
            let (text, _) = state.stderr.contents();
            // What the script printed before a panic: a guest runtime (componentize-py)
            // panics after printing the exception's traceback.
            let printed = capture::before_panic(&text);
            let what = match capture::panic_message(&text) {
                Some(panic) => format!("the script panicked: {panic}"),
                None => format!("the script trapped: {}", root_cause(err)),
            };
            let mut message = what;
            // The JavaScript SDK logs an uncaught exception, then traps.
            if let Some(logged) = state.host.last_error_log() {
                message.push_str(&format!("; its last error log: {logged}"));
            }
            if let Some(tail) = capture::stderr_tail(printed) {
                message.push_str(&format!("; its stderr ends with:\n{tail}"));
            }
            TxError::new(ErrorKind::Trap, message)
        }
    }
}

fn timeout_error(limits: &Limits) -> TxError {
    TxError::new(
        ErrorKind::Timeout,
        format!(
            "the transaction's deadline of {} s passed while the script ran (limits.timeout_secs)",
            limits.timeout_secs
        ),
    )
}

fn root_cause(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    }
}

/// Logs what the script wrote to `stream`; whether some of it was dropped past the cap.
fn log_captured(gid: &crate::gid::Gid, stream: &str, pipe: &CappedPipe) -> bool {
    let (text, dropped) = pipe.contents();
    for line in text.lines().filter(|l| !l.is_empty()) {
        tracing::info!(target: "wasmtx::script", %gid, stream, "{line}");
    }
    if dropped > 0 {
        tracing::warn!(target: "wasmtx::script", %gid, stream, dropped, "script output past limits.max_stdio_bytes was dropped");
    }
    dropped > 0
}

/// `s` cut to at most `max` bytes on a character boundary.
fn clip_owned(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
