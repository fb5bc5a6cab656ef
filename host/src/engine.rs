//! The one wasmtime [`Engine`] of a host, configured for running many short-lived,
//! untrusted script instances: pooling allocator sized from the expected concurrency and
//! the memory limit, epoch interruption driven by a 10 ms ticker thread, a capped wasm
//! stack, and async host calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::limits::Limits;

/// How often the epoch advances; the granularity of CPU-time interruption.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances and memories a typical Rust guest component needs per instance (main
/// module, WASI adapter, shims), used to size the pool.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;

/// The engine plus the thread that drives its epochs; the thread stops when this drops.
pub struct ScriptEngine {
    engine: Engine,
    _ticker: EpochTicker,
}

impl ScriptEngine {
    /// An engine for at most `concurrency` instances alive at once.
    pub fn new(limits: &Limits, concurrency: u32) -> wasmtime::Result<Self> {
        let concurrency = concurrency.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(concurrency)
            .total_core_instances(concurrency * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(concurrency * MEMORIES_PER_COMPONENT)
            .total_tables(concurrency * TABLES_PER_COMPONENT)
            .total_stacks(concurrency)
            .max_memory_size(limits.memory_bytes())
            // Keep (and zero) the first pages of each freed memory instead of unmapping
            // them. Measured per transaction (benches/host_path.rs): 1 MiB 27.9 µs (the
            // memset dominates), 128 KiB 20.6 µs, 64 KiB 20.2 µs, none 20.5 µs.
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(64 << 10);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes())
            // The fiber stack must hold the wasm stack plus host frames.
            .async_stack_size(limits.stack_bytes() + (1 << 20))
            // Scripts use no component-model concurrency; leaving it off keeps calls fast.
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(ScriptEngine {
            engine,
            _ticker: ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Epoch ticks that cover `duration`, rounded up.
    pub fn ticks_for(duration: Duration) -> u64 {
        (duration.as_micros() / EPOCH_TICK.as_micros()) as u64 + 1
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmtx-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
