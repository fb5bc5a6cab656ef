//! `wasmtx-devbench`: wasmtx's developer benchmark. It runs `wasmtx bench` with variants
//! that only the host's developers need, interleaved with the script's in one run:
//!
//! - `--compare native`: the script's native twin through the same coordinator (`native.rs`);
//! - `--compare plain`: the same statements as plain single-phase commits (`plain.rs`);
//! - `--compare raw`: the transfer on bare database connections, `raw-2pc` and `raw-plain`
//!   (`raw.rs`);
//! - `--durable-writes`: each variant's durable writes per transaction (`durable.rs`).

mod durable;
mod native;
mod plain;
mod raw;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use clap::builder::PossibleValue;
use clap::{CommandFactory, FromArgMatches, Parser};
use wasmtx::cli::bench::{
    BenchArgs, CoordinatedUnit, Extension, Ratio, Setup, Stop, Variant, VariantResult, WASM,
    WASM_WARM, compare_values, name_width, run_variants,
};
use wasmtx::report::{ErrorKind, TxError};

use durable::{DurableProbe, DurableWrites};
use native::{NativeInsertUser, NativeTransfer, Twin};
use plain::PlainUnit;
use raw::RawTransfer;

/// `wasmtx bench` with the developer's variants: native twins, plain single-phase commits,
/// bare connections and durable-write counts.
#[derive(Debug, Parser)]
#[command(name = "wasmtx-devbench", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
    /// After the timed run, count each variant's durable writes per transaction (host
    /// fsyncs, PostgreSQL WAL flushes, InnoDB log writes) over a pass of its own of
    /// --durable-sample transactions. The server counters are server-wide: run it while
    /// nothing else writes there. Waits about 10 s per variant for PostgreSQL's counters.
    #[arg(long)]
    durable_writes: bool,
    /// Transactions per variant in the --durable-writes pass.
    #[arg(long, default_value_t = 400, value_name = "N")]
    durable_sample: u64,
}

fn main() -> ExitCode {
    let command = Cli::command().mut_arg("compare", |arg| {
        arg.value_parser(compare_values(&DevVariants::compare_values()))
            .help(
                "Also run this variant, interleaved (repeatable). `native` and `plain` expect \
                 the input of examples/transfer or examples/insert-user, `raw` that of \
                 examples/transfer (its two sides on PostgreSQL or MySQL/MariaDB participants)",
            )
    });
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    wasmtx::tls::install_default_provider();
    wasmtx::cli::init_tracing("warn", false);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wasmtx-devbench: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let variants = DevVariants {
        durable_sample: cli.durable_writes.then_some(cli.durable_sample.max(1)),
    };
    runtime.block_on(wasmtx::cli::bench::bench_with(cli.bench, Some(&variants)))
}

/// The developer's variants and figures.
struct DevVariants {
    /// Transactions per variant to count durable writes over, if asked.
    durable_sample: Option<u64>,
}

impl DevVariants {
    fn compare_values() -> Vec<PossibleValue> {
        vec![
            PossibleValue::new("native").help(
                "The same work as examples/transfer or examples/insert-user (told apart by the input), as native Rust code through the same coordinator",
            ),
            PossibleValue::new("plain").help(
                "The same statements, from the native code, as plain single-phase commits: one transaction per participant, no two-phase commit",
            ),
            PossibleValue::new("raw").help(
                "examples/transfer's statements on bare database connections, nothing of the host in between: `raw-2pc` (two-phase commit as configured: last agent or decision log) and `raw-plain` (single-phase commits). What the databases allow: the ceiling of `native` and `plain`",
            ),
        ]
    }
}

/// The key of the durable writes in a variant's figures.
const DURABLE_WRITES: &str = "durable_writes";

#[async_trait]
impl Extension for DevVariants {
    fn variant_names(&self) -> &[&'static str] {
        &["native", "plain", "raw-2pc", "raw-plain"]
    }

    fn variants(&self, name: &str, setup: &Setup<'_>) -> Result<Vec<Variant>, TxError> {
        let coordinator = setup.coordinator;
        let variant = |name: &str, unit: Arc<dyn wasmtx::cli::bench::BenchUnit>| Variant {
            name: name.into(),
            unit,
        };
        Ok(match name {
            "native" => vec![variant(
                "native",
                Arc::new(CoordinatedUnit {
                    coordinator: coordinator.clone(),
                    logic: match Twin::detect(setup.first_input)? {
                        Twin::Transfer => Arc::new(NativeTransfer),
                        Twin::InsertUser => Arc::new(NativeInsertUser),
                    },
                }),
            )],
            "plain" => vec![variant(
                "plain",
                Arc::new(match Twin::detect(setup.first_input)? {
                    Twin::Transfer => PlainUnit::transfer(coordinator, setup.first_input)?,
                    Twin::InsertUser => {
                        PlainUnit::each_participant(coordinator, Arc::new(NativeInsertUser))
                    }
                }),
            )],
            "raw" => {
                let raw = |two_phase| {
                    RawTransfer::new(coordinator, setup.config, setup.first_input, two_phase)
                };
                vec![
                    variant("raw-2pc", Arc::new(raw(true)?)),
                    variant("raw-plain", Arc::new(raw(false)?)),
                ]
            }
            other => {
                return Err(TxError::new(
                    ErrorKind::Input,
                    format!("no variant named `{other}`"),
                ));
            }
        })
    }

    fn ratios(&self) -> Vec<Ratio> {
        vec![
            Ratio {
                key: "wasm_vs_native",
                of: WASM,
                to: "native",
                text: "wasm / native throughput",
            },
            Ratio {
                key: "wasm_warm_vs_native",
                of: WASM_WARM,
                to: "native",
                text: "wasm warm (--warm-uses) / native throughput",
            },
            Ratio {
                key: "two_phase_vs_plain",
                of: WASM,
                to: "plain",
                text: "two-phase (wasm) / plain single-phase throughput",
            },
            Ratio {
                key: "two_phase_native_vs_plain",
                of: "native",
                to: "plain",
                text: "two-phase (native) / plain single-phase throughput",
            },
            Ratio {
                key: "raw_two_phase_vs_plain",
                of: "raw-2pc",
                to: "raw-plain",
                text: "two-phase (raw) / plain single-phase (raw) throughput",
            },
            Ratio {
                key: "native_vs_raw",
                of: "native",
                to: "raw-2pc",
                text: "two-phase native (through the host) / raw throughput",
            },
        ]
    }

    async fn after_run(
        &self,
        setup: &Setup<'_>,
        variants: &[Variant],
        results: &mut [VariantResult],
    ) -> Result<(), TxError> {
        let Some(sample) = self.durable_sample else {
            return Ok(());
        };
        let probe = DurableProbe::new(setup.config, setup.coordinator.decision_store().cloned());
        for (variant, result) in variants.iter().zip(results.iter_mut()) {
            let writes =
                count_durable_writes(&probe, variant, setup.concurrency, sample, setup.input)
                    .await
                    .map_err(|e| TxError::new(ErrorKind::Participant, e))?;
            result.more.insert(
                DURABLE_WRITES.into(),
                serde_json::to_value(writes).expect("counts serialize"),
            );
        }
        Ok(())
    }

    fn print_more(&self, results: &[VariantResult]) {
        let counted: Vec<(&str, DurableWrites)> = results
            .iter()
            .filter_map(|v| {
                let writes = serde_json::from_value(v.more.get(DURABLE_WRITES)?.clone()).ok()?;
                Some((v.name.as_str(), writes))
            })
            .collect();
        if counted.is_empty() {
            return;
        }
        let width = name_width(results);
        println!(
            "durable writes per transaction: {:<width$} {:>8} {:>11} {:>10} {:>10} {:>7}",
            "variant", "tx", "host fsync", "PG WAL", "InnoDB log", "total"
        );
        for (name, d) in counted {
            println!(
                "                                {:<width$} {:>8} {:>11.2} {:>10.2} {:>10.2} {:>7.2}",
                name,
                d.transactions,
                d.host_fsyncs,
                d.postgres_wal_flushes,
                d.innodb_log_writes,
                d.total
            );
        }
    }
}

/// Runs `sample` units of `variant` alone and counts the durable writes they cost.
async fn count_durable_writes(
    probe: &DurableProbe,
    variant: &Variant,
    concurrency: usize,
    sample: u64,
    input: &str,
) -> Result<DurableWrites, String> {
    let settle = || async {
        if probe.has_postgres() {
            tokio::time::sleep(durable::POSTGRES_REPORT_DELAY).await;
        }
    };
    settle().await;
    let before = probe.sample().await?;
    let done = Arc::new(AtomicU64::new(0));
    let only = [variant.clone()];
    run_variants(&only, concurrency, Stop::Transactions(sample), input, &done).await;
    settle().await;
    let after = probe.sample().await?;
    Ok(DurableWrites::between(
        before,
        after,
        done.load(Ordering::Relaxed),
    ))
}
