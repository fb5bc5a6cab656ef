//! A wasmtime [`Engine`] configured for running many short-lived, untrusted script
//! instances: a pooling allocator sized from the expected concurrency, the memory limit and
//! what one script instance needs ([`InstanceNeeds`]), epoch interruption driven by a
//! 10 ms ticker thread, a capped wasm stack, and async host calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::InstanceNeeds;
use crate::limits::Limits;

/// How often the epoch advances; the granularity of CPU-time interruption.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What the pool holds per script instance before any script asks for more: enough for a
/// Rust guest component (main module, WASI adapter, shims).
pub const BASE_BUDGET: InstanceNeeds = InstanceNeeds {
    core_instances: 8,
    memories: 2,
    tables: 4,
    initial_memory_bytes: 0,
};

/// The engine plus the thread that drives its epochs; the thread stops when this drops.
pub struct ScriptEngine {
    engine: Engine,
    budget: InstanceNeeds,
    concurrency: u32,
    _ticker: EpochTicker,
}

impl ScriptEngine {
    /// An engine for at most `concurrency` instances alive at once, each using at most
    /// `budget` of the pool.
    pub fn new(limits: &Limits, concurrency: u32, budget: InstanceNeeds) -> wasmtime::Result<Self> {
        let concurrency = concurrency.max(1);
        // A freed instance's memory must be reset before the next script gets it. With the
        // PAGEMAP_SCAN ioctl (Linux ≥ 6.7) the pool resets only the pages the script dirtied
        // — in RAM or swapped out (vendor/README.md: wasmtime 48 as published skips swapped
        // ones) — in place, up to `keep_resident`: nothing is unmapped (an `madvise` would also cost
        // a TLB shootdown across the runtime's threads) and nothing faults back in on the
        // next use. Without it the first `keep_resident` bytes are reset with `memset`
        // whether used or not, so only a little is kept. What stays resident is at most
        // `keep_resident` per memory slot, of pages scripts touched. Measured per transfer
        // (benches/host_path.rs): 27.6 µs with 64 KiB and no scan, 16.9 µs with 4 MiB and
        // the scan; with no scan, 64 KiB beat 0, 128 KiB and 1 MiB (20.2 / 20.5 / 20.6 /
        // 27.9 µs for three statements).
        let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
        let keep_resident: usize = if pagemap { 4 << 20 } else { 64 << 10 };
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(concurrency)
            .total_core_instances(concurrency.saturating_mul(budget.core_instances))
            .total_memories(concurrency.saturating_mul(budget.memories))
            .total_tables(concurrency.saturating_mul(budget.tables))
            .total_stacks(concurrency)
            // A component needing more per instance is refused when it is compiled (see
            // `script::needs::counted_by_wasmtime`), not when an instance runs out.
            .max_core_instances_per_component(budget.core_instances)
            .max_memories_per_component(budget.memories)
            .max_tables_per_component(budget.tables)
            .max_memory_size(limits.memory_bytes())
            .linear_memory_keep_resident(keep_resident.min(limits.memory_bytes()))
            .table_keep_resident(64 << 10)
            .pagemap_scan(if pagemap { Enabled::Yes } else { Enabled::No });

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
            budget,
            concurrency,
            _ticker: ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What the pool holds for each script instance.
    pub fn budget(&self) -> &InstanceNeeds {
        &self.budget
    }

    /// Script instances the pool holds at once.
    pub fn concurrency(&self) -> u32 {
        self.concurrency
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
