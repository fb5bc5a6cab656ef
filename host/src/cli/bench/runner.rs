//! The benchmark runner: many transactions through the coordinator from concurrent workers, timed,
//! with latency percentiles. Several variants of the same work (the WASM script, the same
//! logic in another language or over HTTP) run interleaved in rounds within one run, so
//! they see the same machine and the same database state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

use wasmtx::coordinator::{Coordinator, PrepareLogic};
use wasmtx::report::{ErrorKind, Outcome};

use super::usage::CpuSample;

/// Rounds the variants are interleaved in (each round rotates which variant goes first).
pub const ROUNDS: u32 = 10;

/// One unit of benchmarked work: a transaction (or, for the plain baseline, the same
/// statements as separate single-phase transactions).
#[async_trait]
pub trait BenchUnit: Send + Sync {
    async fn run(&self, input: &str) -> UnitOutcome;
}

/// How one unit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitOutcome {
    Committed,
    /// The logic voted abort (e.g. insufficient funds): a normal business outcome.
    Aborted,
    /// Anything else: traps, timeouts, database or participant failures, in-doubt.
    Error,
}

/// A transaction through the coordinator with the given prepare logic.
pub struct CoordinatedUnit {
    pub coordinator: Coordinator,
    pub logic: Arc<dyn PrepareLogic>,
}

#[async_trait]
impl BenchUnit for CoordinatedUnit {
    async fn run(&self, input: &str) -> UnitOutcome {
        let report = self.coordinator.run(self.logic.as_ref(), input).await;
        match (report.outcome, report.error.map(|e| e.kind)) {
            (Outcome::Committed, _) => UnitOutcome::Committed,
            (Outcome::Aborted, Some(ErrorKind::Script)) => UnitOutcome::Aborted,
            _ => UnitOutcome::Error,
        }
    }
}

/// A named variant of the work.
#[derive(Clone)]
pub struct Variant {
    pub name: String,
    pub unit: Arc<dyn BenchUnit>,
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many units per variant.
    Transactions(u64),
    /// After this long per variant.
    Duration(Duration),
}

/// What one variant measured.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub name: String,
    pub transactions: u64,
    pub commits: u64,
    pub aborts: u64,
    pub errors: u64,
    /// Time spent running this variant (setup excluded).
    pub seconds: f64,
    pub tx_per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// This process's CPU time per transaction while the variant ran (Linux).
    pub host_cpu_us_per_tx: Option<f64>,
    /// The whole machine's busy CPU time per transaction while the variant ran: the
    /// databases' share included, since they run on the same machine (Linux).
    pub machine_cpu_us_per_tx: Option<f64>,
    /// How busy the machine's cores were while the variant ran, in percent (Linux).
    pub machine_busy_percent: Option<f64>,
    /// Context switches on the whole machine per transaction (this process and the
    /// databases alike).
    pub machine_switches_per_tx: Option<f64>,
    /// For a script run warm (`--warm-uses`): how its timed transactions got their instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmUse>,
    /// Figures an extension measured after the run (the developer benchmark's durable
    /// writes), by name.
    #[serde(flatten)]
    pub more: serde_json::Map<String, serde_json::Value>,
}

/// How a warm variant's timed transactions got their script instances.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WarmUse {
    /// Transactions one instance may serve.
    pub max_uses: u32,
    /// Transactions that got a new instance.
    pub fresh: u64,
    /// Transactions that reused one an earlier transaction left.
    pub reused: u64,
}

/// Runs every variant in [`ROUNDS`] interleaved rounds with `concurrency` workers each.
/// `input` may contain `{worker}` (the worker's number) and `{seq}` (the unit's number).
/// `done` counts the units finished so far across all variants, for a progress display.
pub async fn run(
    variants: &[Variant],
    concurrency: usize,
    stop: Stop,
    input: &str,
    done: &Arc<AtomicU64>,
) -> Vec<VariantResult> {
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    let mut counts = vec![[0u64; 3]; variants.len()];
    let mut elapsed = vec![Duration::ZERO; variants.len()];
    // None once any sample fails: a partial sum would be wrong.
    let mut cpu = vec![Some(CpuSample::default()); variants.len()];
    let seq = Arc::new(AtomicU64::new(0));
    for round in 0..ROUNDS {
        // Each round starts with the next variant, so none always runs first.
        for offset in 0..variants.len() {
            let v = (round as usize + offset) % variants.len();
            let variant = &variants[v];
            let round_stop = match stop {
                Stop::Transactions(n) => {
                    let share =
                        n / u64::from(ROUNDS) + u64::from(u64::from(round) < n % u64::from(ROUNDS));
                    RoundStop::Count(share)
                }
                Stop::Duration(d) => RoundStop::Until(d / ROUNDS),
            };
            let cpu_before = CpuSample::now();
            let started = Instant::now();
            let (lat, cnt) = run_round(variant, concurrency, round_stop, input, &seq, done).await;
            elapsed[v] += started.elapsed();
            cpu[v] = match (cpu[v], cpu_before, CpuSample::now()) {
                (Some(mut sum), Some(before), Some(after)) => {
                    sum.add(&after.since(&before));
                    Some(sum)
                }
                _ => None,
            };
            latencies[v].extend(lat);
            for (total, n) in counts[v].iter_mut().zip(cnt) {
                *total += n;
            }
        }
    }
    variants
        .iter()
        .enumerate()
        .map(|(v, variant)| {
            let lat = &mut latencies[v];
            lat.sort_unstable();
            let transactions = lat.len() as u64;
            let seconds = elapsed[v].as_secs_f64();
            let per_tx = |d: Duration| {
                (transactions > 0).then(|| d.as_secs_f64() * 1e6 / transactions as f64)
            };
            let cpu = cpu[v];
            VariantResult {
                name: variant.name.clone(),
                transactions,
                commits: counts[v][0],
                aborts: counts[v][1],
                errors: counts[v][2],
                seconds,
                tx_per_sec: if seconds > 0.0 {
                    transactions as f64 / seconds
                } else {
                    0.0
                },
                p50_ms: percentile(lat, 0.50),
                p95_ms: percentile(lat, 0.95),
                p99_ms: percentile(lat, 0.99),
                host_cpu_us_per_tx: cpu.and_then(|c| per_tx(c.process)),
                machine_cpu_us_per_tx: cpu.and_then(|c| per_tx(c.machine_busy)),
                machine_busy_percent: cpu
                    .filter(|c| !c.machine_total.is_zero())
                    .map(|c| 100.0 * c.machine_busy.as_secs_f64() / c.machine_total.as_secs_f64()),
                machine_switches_per_tx: cpu
                    .filter(|_| transactions > 0)
                    .map(|c| c.machine_switches as f64 / transactions as f64),
                warm: None,
                more: serde_json::Map::new(),
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
enum RoundStop {
    Count(u64),
    Until(Duration),
}

async fn run_round(
    variant: &Variant,
    concurrency: usize,
    stop: RoundStop,
    input: &str,
    seq: &Arc<AtomicU64>,
    done: &Arc<AtomicU64>,
) -> (Vec<Duration>, [u64; 3]) {
    let claimed = Arc::new(AtomicU64::new(0));
    let until = match stop {
        RoundStop::Until(d) => Some(Instant::now() + d),
        RoundStop::Count(_) => None,
    };
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let unit = variant.unit.clone();
            let template = input.replace("{worker}", &worker.to_string());
            let (claimed, seq, done) = (claimed.clone(), seq.clone(), done.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut counts = [0u64; 3];
                loop {
                    let more = match (stop, until) {
                        (RoundStop::Count(n), _) => claimed.fetch_add(1, Ordering::Relaxed) < n,
                        (_, Some(until)) => Instant::now() < until,
                        _ => false,
                    };
                    if !more {
                        break;
                    }
                    let input =
                        template.replace("{seq}", &seq.fetch_add(1, Ordering::Relaxed).to_string());
                    let started = Instant::now();
                    let outcome = unit.run(&input).await;
                    latencies.push(started.elapsed());
                    counts[outcome as usize] += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (latencies, counts)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut counts = [0u64; 3];
    for finished in futures::future::join_all(workers).await {
        let (lat, cnt) = finished.expect("a benchmark worker panicked");
        all.extend(lat);
        for (total, n) in counts.iter_mut().zip(cnt) {
            *total += n;
        }
    }
    (all, counts)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}
