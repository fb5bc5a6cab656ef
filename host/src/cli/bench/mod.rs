//! `wasmtx bench`: throughput and latency of a script's transactions, optionally against
//! its native twin, plain single-phase commits and the same work on bare connections,
//! interleaved in one run, and with `--durable-writes` the durable writes each variant costs
//! per transaction.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;
use wasmtx::report::TxError;
use wasmtx::{Host, HostOptions};

use super::run::{check_json, input_text};
use super::{HostArgs, input_error, output, resolve_script};
use durable::{DurableProbe, DurableWrites};
use http::HttpInvokeUnit;
use native::{NativeInsertUser, NativeTransfer, Twin};
use raw::RawTransfer;
use runner::{CoordinatedUnit, PlainUnit, Stop, Variant, VariantResult};

mod durable;
mod http;
mod native;
mod raw;
mod runner;
mod usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Compare {
    /// The same work as `examples/transfer` or `examples/insert-user` (told apart by the
    /// input), as native Rust code through the same coordinator.
    Native,
    /// The same statements, from the native code, as plain single-phase commits: one
    /// transaction per participant, no two-phase commit.
    Plain,
    /// The same script invoked over HTTP on a running `wasmtx serve` (give --server and
    /// --plugin; the server should have the same participants).
    Http,
    /// As `http`, each invoke with an `Idempotency-Key` of its own: what a client calling
    /// the way it should (safe to repeat) pays over an unkeyed invoke.
    HttpKeyed,
    /// examples/transfer's statements on bare database connections, nothing of the host in
    /// between: `raw-2pc` (two-phase commit as configured: last agent or decision log) and
    /// `raw-plain` (single-phase commits). What the databases allow: the ceiling of
    /// `native` and `plain`.
    Raw,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The script: a .wasm component, or a guest crate or Python script directory (built
    /// first).
    #[arg(value_name = "SCRIPT")]
    script: PathBuf,
    #[command(flatten)]
    host: HostArgs,
    /// Concurrent transactions.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,
    /// Transactions per variant (the default when neither this nor --duration is given: 2000).
    #[arg(long, value_name = "M", conflicts_with = "duration")]
    transactions: Option<u64>,
    /// Seconds per variant, instead of a count.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// The script's input (JSON, or @FILE). `{worker}` is replaced by the worker's number
    /// and `{seq}` by the transaction's, so workers can use their own rows.
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    input: String,
    /// Also run this variant, interleaved (repeatable). `native` and `plain` expect the
    /// input of examples/transfer or examples/insert-user, `raw` that of examples/transfer
    /// (its two sides on PostgreSQL or MySQL/MariaDB participants).
    #[arg(long, value_enum, value_name = "VARIANT")]
    compare: Vec<Compare>,
    /// Also run this script (a .wasm component or a script directory) as a variant of its
    /// own, interleaved, with the same input (repeatable), e.g. the same logic in another
    /// language. The variant is named after the file or directory.
    #[arg(long, value_name = "SCRIPT")]
    also: Vec<PathBuf>,
    /// After the timed run, count each variant's durable writes per transaction (host
    /// fsyncs, PostgreSQL WAL flushes, InnoDB log writes) over a pass of its own of
    /// --durable-sample transactions. The server counters are server-wide: run it while
    /// nothing else writes there. Waits about 10 s per variant for PostgreSQL's counters.
    #[arg(long)]
    durable_writes: bool,
    /// Transactions per variant in the --durable-writes pass.
    #[arg(long, default_value_t = 400, value_name = "N")]
    durable_sample: u64,
    /// Untimed transactions per variant before timing starts (warms pools and caches).
    #[arg(long, default_value_t = 50, value_name = "K")]
    warmup: u64,
    /// For `--compare http` and `http-keyed`: the server's base URL. Repeat it (or separate with commas) to
    /// spread the invokes over the nodes of a cluster in turn.
    #[arg(long, value_name = "URL", env = "WASMTX_SERVER", value_delimiter = ',')]
    server: Vec<String>,
    /// For `--compare http` and `http-keyed`: the published plugin to invoke, NAME or NAME@VERSION.
    #[arg(long, value_name = "NAME")]
    plugin: Option<String>,
    /// For `--compare http` and `http-keyed`: a token with the `invoke` scope.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WASMTX_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn bench(args: BenchArgs) -> ExitCode {
    match measure(&args).await {
        Ok(result) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&result).expect("reports serialize")
                );
            } else {
                print_text(&result);
            }
            ExitCode::SUCCESS
        }
        Err(error) => output::print_failure(&error, args.json),
    }
}

async fn measure(args: &BenchArgs) -> Result<BenchReport, TxError> {
    if args.concurrency == 0 || args.concurrency > 1024 {
        return Err(input_error("--concurrency must be between 1 and 1024"));
    }
    let stop = match (args.transactions, args.duration) {
        (_, Some(s)) if s.is_finite() && s > 0.0 => Stop::Duration(Duration::from_secs_f64(s)),
        (_, Some(_)) => {
            return Err(input_error(
                "--duration must be a positive number of seconds",
            ));
        }
        (Some(0), _) => return Err(input_error("--transactions must be at least 1")),
        (Some(m), None) => Stop::Transactions(m),
        (None, None) => Stop::Transactions(2000),
    };
    let config = args.host.config_with_participants()?;
    let probe_config = config.clone();
    // The input is a template: it must be JSON once its placeholders are filled in.
    let input = input_text(&args.input)?;
    let first_input = input.replace("{worker}", "0").replace("{seq}", "0");
    check_json(&first_input)?;
    let script_path = resolve_script(&args.script, args.json)?;
    let concurrency = args.concurrency as u32;
    let host = Host::builder(
        config,
        HostOptions {
            concurrency,
            max_connections: concurrency + 2,
            ..HostOptions::default()
        },
    )?;
    let logic = host.load_script(&script_path).map_err(input_error)?;
    let host = host.connect().await?;
    output::warn_superusers(&host).await;
    let coordinator = host.coordinator();

    let mut variants = vec![Variant {
        name: "wasm".into(),
        unit: Arc::new(CoordinatedUnit {
            coordinator: coordinator.clone(),
            logic: Arc::new(logic),
        }),
    }];
    for path in &args.also {
        let logic = host
            .load_script(&resolve_script(path, args.json)?)
            .map_err(input_error)?;
        variants.push(Variant {
            name: variant_name(path, &variants),
            unit: Arc::new(CoordinatedUnit {
                coordinator: coordinator.clone(),
                logic: Arc::new(logic),
            }),
        });
    }
    for compare in &args.compare {
        let twin = || Twin::detect(&first_input);
        let added = match compare {
            Compare::Native => vec![Variant {
                name: "native".into(),
                unit: Arc::new(CoordinatedUnit {
                    coordinator: coordinator.clone(),
                    logic: match twin()? {
                        Twin::Transfer => Arc::new(NativeTransfer),
                        Twin::InsertUser => Arc::new(NativeInsertUser),
                    },
                }),
            }],
            Compare::Plain => vec![Variant {
                name: "plain".into(),
                unit: Arc::new(match twin()? {
                    Twin::Transfer => PlainUnit::transfer(coordinator, &first_input)?,
                    Twin::InsertUser => {
                        PlainUnit::each_participant(coordinator, Arc::new(NativeInsertUser))
                    }
                }),
            }],
            Compare::Http | Compare::HttpKeyed => {
                let (false, Some(plugin)) = (args.server.is_empty(), &args.plugin) else {
                    return Err(input_error(
                        "--compare http and http-keyed need --server URL and --plugin NAME (published on that server)",
                    ));
                };
                let keyed = *compare == Compare::HttpKeyed;
                vec![Variant {
                    name: if keyed { "http-keyed" } else { "http" }.into(),
                    unit: Arc::new(HttpInvokeUnit::new(
                        &args.server,
                        plugin,
                        args.token.clone(),
                        keyed,
                    )),
                }]
            }
            Compare::Raw => {
                let raw = |two_phase| {
                    RawTransfer::new(coordinator, &probe_config, &first_input, two_phase)
                };
                vec![
                    Variant {
                        name: "raw-2pc".into(),
                        unit: Arc::new(raw(true)?),
                    },
                    Variant {
                        name: "raw-plain".into(),
                        unit: Arc::new(raw(false)?),
                    },
                ]
            }
        };
        variants.extend(added);
    }

    // Warm-up: pools, caches, first-touch allocations. Not timed.
    let warm = Arc::new(AtomicU64::new(0));
    runner::run(
        &variants,
        args.concurrency,
        Stop::Transactions(args.warmup.max(1)),
        &input,
        &warm,
    )
    .await;

    let rss_before = usage::resident_kib();
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(stop, variants.len(), args.json);
    let ticker = bar.clone().map(|bar| {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let mut results = runner::run(&variants, args.concurrency, stop, &input, &done).await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let rss_after = usage::resident_kib();
    if args.durable_writes {
        let probe = DurableProbe::new(&probe_config, coordinator.decision_store().cloned());
        for (variant, result) in variants.iter().zip(results.iter_mut()) {
            let sample = args.durable_sample.max(1);
            let writes = count_durable_writes(&probe, variant, args.concurrency, sample, &input)
                .await
                .map_err(|e| TxError::new(wasmtx::ErrorKind::Participant, e))?;
            result.durable_writes = Some(writes);
        }
    }
    host.close().await;

    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.tx_per_sec)
    };
    let ratio = |of: &str, to: &str| match (rate(of), rate(to)) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let others_vs_wasm = variants
        .iter()
        .skip(1)
        .take(args.also.len())
        .filter_map(|v| Some((v.name.clone(), ratio(&v.name, "wasm")?)))
        .collect();
    Ok(BenchReport {
        concurrency: args.concurrency,
        others_vs_wasm,
        wasm_vs_native: ratio("wasm", "native"),
        two_phase_vs_plain: ratio("wasm", "plain"),
        two_phase_native_vs_plain: ratio("native", "plain"),
        http_vs_wasm: ratio("http", "wasm"),
        http_keyed_vs_http: ratio("http-keyed", "http"),
        raw_two_phase_vs_plain: ratio("raw-2pc", "raw-plain"),
        native_vs_raw: ratio("native", "raw-2pc"),
        variants: results,
        rss_kib_before: rss_before,
        rss_kib_after: rss_after,
    })
}

/// A `--also` script's variant name: its file's stem or its directory's name, made unique
/// among the variants so far and the names `--compare` uses.
fn variant_name(path: &std::path::Path, variants: &[Variant]) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "script".to_owned(), |s| s.to_string_lossy().into_owned());
    let taken = |name: &str| {
        [
            "wasm",
            "native",
            "plain",
            "http",
            "http-keyed",
            "raw-2pc",
            "raw-plain",
        ]
        .contains(&name)
            || variants.iter().any(|v| v.name == name)
    };
    let mut name = stem.clone();
    let mut n = 2;
    while taken(&name) {
        name = format!("{stem}-{n}");
        n += 1;
    }
    name
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
    runner::run(&only, concurrency, Stop::Transactions(sample), input, &done).await;
    settle().await;
    let after = probe.sample().await?;
    Ok(DurableWrites::between(
        before,
        after,
        done.load(Ordering::Relaxed),
    ))
}

/// What `wasmtx bench` measured; `--json` prints it as is.
#[derive(Debug, Serialize)]
struct BenchReport {
    concurrency: usize,
    variants: Vec<VariantResult>,
    /// Throughput of the script against its native twin.
    wasm_vs_native: Option<f64>,
    /// Two-phase commit against plain commits of the same statements, with the script.
    two_phase_vs_plain: Option<f64>,
    /// The same with the native closure (the same logic as `plain`, so only the protocol
    /// differs: the cost of two-phase commit itself).
    two_phase_native_vs_plain: Option<f64>,
    /// The script invoked over HTTP on a server against the same script in process.
    http_vs_wasm: Option<f64>,
    /// Invokes with an `Idempotency-Key` against the same invokes without.
    http_keyed_vs_http: Option<f64>,
    /// Two-phase commit against plain commits on bare connections: the databases' own ratio.
    raw_two_phase_vs_plain: Option<f64>,
    /// The native closure through the host against the same two-phase commit on bare
    /// connections: what the host costs.
    native_vs_raw: Option<f64>,
    /// Each `--also` script's throughput against the first script's (`wasm`).
    others_vs_wasm: std::collections::BTreeMap<String, f64>,
    rss_kib_before: Option<u64>,
    rss_kib_after: Option<u64>,
}

fn progress_bar(stop: Stop, variants: usize, json: bool) -> Option<indicatif::ProgressBar> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match stop {
        Stop::Transactions(m) => indicatif::ProgressBar::new(m * variants as u64),
        Stop::Duration(_) => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} transactions  {per_sec}  {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// A measured figure rounded to a whole number, or `-` where it could not be measured.
fn shown(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}{unit}"))
}

fn print_text(result: &BenchReport) {
    println!("concurrency {}", result.concurrency);
    let width = result
        .variants
        .iter()
        .map(|v| v.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "{:<width$} {:>8} {:>8} {:>7} {:>7} {:>10} {:>9} {:>9} {:>9} {:>12} {:>14} {:>6} {:>9}",
        "variant",
        "tx",
        "commits",
        "aborts",
        "errors",
        "tx/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "host µs/tx",
        "machine µs/tx",
        "busy",
        "switches"
    );
    for v in &result.variants {
        println!(
            "{:<width$} {:>8} {:>8} {:>7} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>12} {:>14} {:>6} {:>9}",
            v.name,
            v.transactions,
            v.commits,
            v.aborts,
            v.errors,
            v.tx_per_sec,
            v.p50_ms,
            v.p95_ms,
            v.p99_ms,
            shown(v.host_cpu_us_per_tx, ""),
            shown(v.machine_cpu_us_per_tx, ""),
            shown(v.machine_busy_percent, "%"),
            shown(v.machine_switches_per_tx, "")
        );
    }
    if let Some(r) = result.wasm_vs_native {
        println!("wasm / native throughput: {r:.3}");
    }
    if let Some(r) = result.two_phase_vs_plain {
        println!("two-phase (wasm) / plain single-phase throughput: {r:.3}");
    }
    if let Some(r) = result.two_phase_native_vs_plain {
        println!("two-phase (native) / plain single-phase throughput: {r:.3}");
    }
    if let Some(r) = result.raw_two_phase_vs_plain {
        println!("two-phase (raw) / plain single-phase (raw) throughput: {r:.3}");
    }
    if let Some(r) = result.native_vs_raw {
        println!("two-phase native (through the host) / raw throughput: {r:.3}");
    }
    if let Some(r) = result.http_vs_wasm {
        println!("http (wasmtx serve) / in-process throughput: {r:.3}");
    }
    if let Some(r) = result.http_keyed_vs_http {
        println!("http keyed / unkeyed throughput: {r:.3}");
    }
    for (name, r) in &result.others_vs_wasm {
        println!("{name} / wasm throughput: {r:.3}");
    }
    if result.variants.iter().any(|v| v.durable_writes.is_some()) {
        println!(
            "durable writes per transaction: {:<width$} {:>8} {:>11} {:>10} {:>10} {:>7}",
            "variant", "tx", "host fsync", "PG WAL", "InnoDB log", "total"
        );
        for v in &result.variants {
            if let Some(d) = v.durable_writes {
                println!(
                    "                                {:<width$} {:>8} {:>11.2} {:>10.2} {:>10.2} {:>7.2}",
                    v.name,
                    d.transactions,
                    d.host_fsyncs,
                    d.postgres_wal_flushes,
                    d.innodb_log_writes,
                    d.total
                );
            }
        }
    }
    if let (Some(before), Some(after)) = (result.rss_kib_before, result.rss_kib_after) {
        println!("resident memory: {before} KiB before timing, {after} KiB after");
    }
}
