//! The sandbox: loads script components and runs one fresh, isolated instance per
//! transaction.
//!
//! - `host.rs` implements the WIT imports (`sql`, `log`) and nothing else;
//! - `convert.rs` maps WIT values to host values and back;
//! - `policy.rs` decides which statements a script may send;
//! - `capture.rs` captures the script's stdout and stderr, capped.
//!
//! A script gets WASI with nothing granted (no files, environment, arguments, sockets or
//! name lookup), a memory and stack cap, a handle cap, and a deadline enforced three ways:
//! epoch interruption for guest CPU, a timeout around the whole run (a guest blocked in a
//! host call), and statement timeouts inside the databases.

mod capture;
mod convert;
mod host;
mod inspect;
mod logic;
pub mod policy;

use std::path::{Path, PathBuf};
use std::time::Instant;

use thiserror::Error;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::cache::{CacheState, ComponentCache};
use crate::engine::ScriptEngine;
use crate::limits::Limits;
use crate::report::{ErrorKind, TxError};
use crate::transaction::OpenTransaction;
use capture::CappedPipe;
pub use host::ParticipantHandle;
pub use inspect::{CompiledCache, Inspection};
pub use logic::ScriptLogic;

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
}

/// A loaded script, ready to instantiate many times.
pub struct Script {
    pre: bindings::ScriptPre<StoreState>,
    pub path: PathBuf,
    pub size: usize,
    pub cache: CacheState,
}

/// The engine, linker and cache shared by every transaction of a host.
pub struct Sandbox {
    engine: ScriptEngine,
    linker: Linker<StoreState>,
    cache: ComponentCache,
    limits: Limits,
}

impl Sandbox {
    /// A sandbox for at most `concurrency` scripts running at once.
    pub fn new(limits: &Limits, concurrency: u32, cache_dir: PathBuf) -> wasmtime::Result<Self> {
        let engine = ScriptEngine::new(limits, concurrency)?;
        let mut linker = Linker::new(engine.engine());
        // Rust guests import wasi:cli and wasi:io even when they use neither; link WASI
        // with nothing granted rather than trapping stubs.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Script::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        Ok(Sandbox {
            engine,
            linker,
            cache: ComponentCache::new(cache_dir),
            limits: limits.clone(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        self.engine.engine()
    }

    /// Reads, checks, compiles (or loads from the cache) and type-checks a script.
    pub fn load(&self, path: &Path) -> Result<Script, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let component = self.compile(path, &bytes)?;
        let (component, cache) = component;
        let instance_pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::WrongWorld {
                    path: path.to_owned(),
                    message: format!("{e:#}"),
                })?;
        let pre = bindings::ScriptPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })?;
        Ok(Script {
            pre,
            path: path.to_owned(),
            size: bytes.len(),
            cache,
        })
    }

    /// Checks the file's header and compiles it, via the cache.
    pub fn compile(&self, path: &Path, bytes: &[u8]) -> Result<(Component, CacheState), LoadError> {
        check_header(path, bytes)?;
        self.cache
            .load(self.engine(), bytes)
            .map_err(|e| LoadError::Invalid {
                path: path.to_owned(),
                message: format!("{e:#}"),
            })
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
        let remaining = tx.deadline.saturating_duration_since(Instant::now());
        let state = StoreState {
            wasi,
            table,
            limiter: MemoryLimiter {
                max_bytes: limits.memory_bytes(),
                denied: false,
            },
            host: host::HostState::new(limits),
            tx,
        };
        let mut store = Store::new(self.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_max_component_handles(limits.max_handles as usize);
        store.set_epoch_deadline(ScriptEngine::ticks_for(remaining));
        store.epoch_deadline_trap();

        let call = async {
            let instance = script.pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, input).await
        };
        let outcome = match tokio::time::timeout(remaining, call).await {
            Ok(Ok(Ok(output))) => self.check_output(output),
            Ok(Ok(Err(reason))) => Err(TxError::new(
                ErrorKind::Script,
                clip_owned(reason, limits.max_output_bytes),
            )),
            Ok(Err(err)) => Err(classify_failure(&err, store.data(), &stderr, limits)),
            Err(_elapsed) => Err(timeout_error(limits)),
        };
        let state = store.into_data();
        state.host.report_dropped(&state.tx.gid);
        log_captured(&state.tx.gid, "stdout", &stdout);
        log_captured(&state.tx.gid, "stderr", &stderr);
        (state.tx, outcome)
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
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    host: host::HostState,
    tx: OpenTransaction,
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

fn classify_failure(
    err: &wasmtime::Error,
    state: &StoreState,
    stderr: &CappedPipe,
    limits: &Limits,
) -> TxError {
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
            let (text, _) = stderr.contents();
            let message = match capture::panic_message(&text) {
                Some(panic) => format!("the script panicked: {panic}"),
                None => format!("the script trapped: {}", root_cause(err)),
            };
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

fn log_captured(gid: &crate::gid::Gid, stream: &str, pipe: &CappedPipe) {
    let (text, dropped) = pipe.contents();
    for line in text.lines().filter(|l| !l.is_empty()) {
        tracing::info!(target: "wasmtx::script", %gid, stream, "{line}");
    }
    if dropped > 0 {
        tracing::warn!(target: "wasmtx::script", %gid, stream, dropped, "script output past limits.max_stdio_bytes was dropped");
    }
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
