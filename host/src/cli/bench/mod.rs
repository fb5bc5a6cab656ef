//! `wasmtx bench`: throughput and latency of a script's transactions, optionally against
//! other scripts, each script's warm twin (`--warm-uses`) and the same script invoked on a
//! running server, interleaved in one run.
//! An [`Extension`] adds variants and figures of its own (the developer benchmark, `bench/`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use wasmtx::report::TxError;
use wasmtx::script::{ScriptLogic, Warm, WarmSettings};
use wasmtx::{Host, HostOptions};

use super::run::{check_json, input_text};
use super::{HostArgs, input_error, output, resolve_script, warm};
use http::HttpInvokeUnit;
pub use runner::{
    BenchUnit, CoordinatedUnit, Stop, UnitOutcome, Variant, VariantResult, WarmUse,
    run as run_variants,
};

mod http;
mod runner;
mod usage;

/// What `--compare http` adds: the same script invoked on a running `wasmtx serve`.
const HTTP: &str = "http";
/// What `--compare http-keyed` adds: the same invokes, each with an `Idempotency-Key`.
const HTTP_KEYED: &str = "http-keyed";
/// The first script's variant, the one the others are compared with.
pub const WASM: &str = "wasm";
/// What `--warm-uses` appends to a script's variant name for its warm twin.
const WARM_SUFFIX: &str = "-warm";
/// The first script's warm twin.
pub const WASM_WARM: &str = "wasm-warm";

/// Variants and figures a front adds to `wasmtx bench`: more `--compare` values (the
/// developer benchmark's native twins and bare connections) and figures measured after the
/// timed run (its durable-write counts).
#[async_trait::async_trait]
pub trait Extension: Sync {
    /// Every variant name it can add (so an `--also` script is named apart from them).
    fn variant_names(&self) -> &[&'static str];
    /// The variants `--compare NAME` adds, for one of the values it gave `--compare`.
    fn variants(&self, name: &str, setup: &Setup<'_>) -> Result<Vec<Variant>, TxError>;
    /// Ratios between variants' throughputs to report, where both ran.
    fn ratios(&self) -> Vec<Ratio>;
    /// After the timed run (the host still open): more figures per variant, in `more`.
    async fn after_run(
        &self,
        setup: &Setup<'_>,
        variants: &[Variant],
        results: &mut [VariantResult],
    ) -> Result<(), TxError>;
    /// Prints its figures after the report's own.
    fn print_more(&self, results: &[VariantResult]);
}

/// What a run's variants are made from.
pub struct Setup<'a> {
    pub coordinator: &'a wasmtx::Coordinator,
    pub config: &'a wasmtx::Config,
    /// The input with `{worker}` and `{seq}` filled in for worker 0's first transaction.
    pub first_input: &'a str,
    /// The input template.
    pub input: &'a str,
    pub concurrency: usize,
}

/// The throughput of one variant against another's: `key` in the JSON report, `text` in the
/// printed one.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    pub key: &'static str,
    pub of: &'static str,
    pub to: &'static str,
    pub text: &'static str,
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
    /// Also run this variant, interleaved (repeatable).
    #[arg(long, value_name = "VARIANT", value_parser = compare_values(&[]))]
    compare: Vec<String>,
    /// Also run this script (a .wasm component or a script directory) as a variant of its
    /// own, interleaved, with the same input (repeatable), e.g. the same logic in another
    /// language. The variant is named after the file or directory.
    #[arg(long, value_name = "SCRIPT")]
    also: Vec<PathBuf>,
    #[arg(long, value_name = "N", value_parser = warm::parse_uses, help = warm::BENCH_HELP)]
    warm_uses: Option<WarmSettings>,
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

/// The `--compare` values: `http` and `http-keyed`, then the extension's.
pub fn compare_values(
    more: &[clap::builder::PossibleValue],
) -> clap::builder::PossibleValuesParser {
    let http = clap::builder::PossibleValue::new(HTTP).help(
        "The same script invoked over HTTP on a running `wasmtx serve` (give --server and --plugin; the server should have the same participants)",
    );
    let keyed = clap::builder::PossibleValue::new(HTTP_KEYED).help(
        "As `http`, each invoke with an Idempotency-Key of its own: what a client calling the way it should (safe to repeat) pays over an unkeyed invoke",
    );
    clap::builder::PossibleValuesParser::new([http, keyed].into_iter().chain(more.iter().cloned()))
}

pub async fn bench(args: BenchArgs) -> ExitCode {
    bench_with(args, None).await
}

/// `wasmtx bench` with an extension's variants and figures.
pub async fn bench_with(args: BenchArgs, extension: Option<&dyn Extension>) -> ExitCode {
    match measure(&args, extension).await {
        Ok(result) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&result).expect("reports serialize")
                );
            } else {
                print_text(&result);
                if let Some(extension) = extension {
                    extension.print_more(&result.variants);
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => output::print_failure(&error, args.json),
    }
}

async fn measure(
    args: &BenchArgs,
    extension: Option<&dyn Extension>,
) -> Result<BenchReport, TxError> {
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
    let setup_config = config.clone();
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
        }
        .with_warm_room(args.warm_uses.is_some()),
    )?;
    let logic = host.load_script(&script_path).map_err(input_error)?;
    let host = host.connect().await?;
    output::warn_superusers(&host).await;
    let coordinator = host.coordinator();

    // An `--also` script is named apart from the first script, its twin and `--compare`'s.
    let mut reserved = vec![WASM, WASM_WARM, HTTP, HTTP_KEYED];
    reserved.extend(extension.map_or(&[][..], |e| e.variant_names()));
    let mut scripts = Scripts::new(coordinator, args.warm_uses);
    scripts.add(WASM.into(), logic);
    for path in &args.also {
        let logic = host
            .load_script(&resolve_script(path, args.json)?)
            .map_err(input_error)?;
        let stem = path
            .file_stem()
            .map_or_else(|| "script".to_owned(), |s| s.to_string_lossy().into_owned());
        scripts.add(unique_name(&stem, &scripts.variants, &reserved), logic);
    }
    let Scripts {
        mut variants,
        warm: warm_claims,
        ..
    } = scripts;
    let script_variants: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
    let setup = Setup {
        coordinator,
        config: &setup_config,
        first_input: &first_input,
        input: &input,
        concurrency: args.concurrency,
    };
    for compare in &args.compare {
        if compare == HTTP || compare == HTTP_KEYED {
            let (false, Some(plugin)) = (args.server.is_empty(), &args.plugin) else {
                return Err(input_error(format!(
                    "--compare {compare} needs --server URL and --plugin NAME (published on that server)"
                )));
            };
            variants.push(Variant {
                name: compare.clone(),
                unit: Arc::new(HttpInvokeUnit::new(
                    &args.server,
                    plugin,
                    args.token.clone(),
                    compare == HTTP_KEYED,
                )),
            });
        } else if let Some(extension) = extension {
            variants.extend(extension.variants(compare, &setup)?);
        }
    }

    // Warm-up: pools, caches, first-touch allocations. Not timed.
    let warmed = Arc::new(AtomicU64::new(0));
    runner::run(
        &variants,
        args.concurrency,
        Stop::Transactions(args.warmup.max(1)),
        &input,
        &warmed,
    )
    .await;
    let warm_before: Vec<(u64, u64)> = warm_claims.iter().map(|(_, w)| w.counts()).collect();

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
    for ((name, claim), (fresh_before, reused_before)) in warm_claims.iter().zip(warm_before) {
        let (fresh, reused) = claim.counts();
        if let Some(result) = results.iter_mut().find(|r| &r.name == name) {
            result.warm = Some(WarmUse {
                max_uses: claim.settings().max_uses,
                fresh: fresh - fresh_before,
                reused: reused - reused_before,
            });
        }
    }
    if let Some(extension) = extension {
        extension.after_run(&setup, &variants, &mut results).await?;
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
    let others_vs_wasm = script_variants
        .iter()
        .skip(1)
        .filter_map(|name| Some((name.clone(), ratio(name, WASM)?)))
        .collect();
    let mut ratios = extension.map_or(vec![], |e| e.ratios());
    ratios.push(Ratio {
        key: "http_vs_wasm",
        of: HTTP,
        to: WASM,
        text: "http (wasmtx serve) / in-process throughput",
    });
    ratios.push(Ratio {
        key: "http_keyed_vs_http",
        of: HTTP_KEYED,
        to: HTTP,
        text: "http keyed / unkeyed throughput",
    });
    let ratios = ratios
        .into_iter()
        .filter_map(|r| Some((r, ratio(r.of, r.to)?)))
        .collect();
    Ok(BenchReport {
        concurrency: args.concurrency,
        others_vs_wasm,
        ratios,
        variants: results,
        rss_kib_before: rss_before,
        rss_kib_after: rss_after,
    })
}

/// The scripts' variants: each script fresh and, with `--warm-uses`, its warm twin right
/// after it, under a claim of its own.
struct Scripts<'a> {
    coordinator: &'a wasmtx::Coordinator,
    settings: Option<WarmSettings>,
    variants: Vec<Variant>,
    /// The warm twins' names and claims.
    warm: Vec<(String, Arc<Warm>)>,
}

impl<'a> Scripts<'a> {
    fn new(coordinator: &'a wasmtx::Coordinator, settings: Option<WarmSettings>) -> Self {
        Scripts {
            coordinator,
            settings,
            variants: Vec::new(),
            warm: Vec::new(),
        }
    }

    /// Adds the script as variant `name`, and its warm twin if asked.
    fn add(&mut self, name: String, logic: ScriptLogic) {
        if let Some(settings) = self.settings {
            let (warm_logic, claim) = warm::warm_logic(logic.clone(), settings);
            self.push(name.clone(), logic);
            let warm_name = unique_name(&format!("{name}{WARM_SUFFIX}"), &self.variants, &[]);
            self.warm.push((warm_name.clone(), claim));
            self.push(warm_name, warm_logic);
        } else {
            self.push(name, logic);
        }
    }

    fn push(&mut self, name: String, logic: ScriptLogic) {
        self.variants.push(Variant {
            name,
            unit: Arc::new(CoordinatedUnit {
                coordinator: self.coordinator.clone(),
                logic: Arc::new(logic),
            }),
        });
    }
}

/// `stem` (a `--also` script's file stem or directory name, or a warm twin's name), made
/// unique among the variants so far and the `reserved` names.
fn unique_name(stem: &str, variants: &[Variant], reserved: &[&str]) -> String {
    let taken = |name: &str| reserved.contains(&name) || variants.iter().any(|v| v.name == name);
    let mut name = stem.to_owned();
    let mut n = 2;
    while taken(&name) {
        name = format!("{stem}-{n}");
        n += 1;
    }
    name
}

/// What `wasmtx bench` measured; `--json` prints it as is.
#[derive(Debug, Serialize)]
struct BenchReport {
    concurrency: usize,
    variants: Vec<VariantResult>,
    /// Throughputs of one variant against another's, by [`Ratio::key`], where both ran.
    #[serde(flatten, serialize_with = "ratio_map")]
    ratios: Vec<(Ratio, f64)>,
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

/// The width of the printed tables' variant column.
pub fn name_width(results: &[VariantResult]) -> usize {
    results
        .iter()
        .map(|v| v.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(8)
}

fn print_text(result: &BenchReport) {
    println!("concurrency {}", result.concurrency);
    let width = name_width(&result.variants);
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
    for v in &result.variants {
        if let Some(w) = v.warm {
            println!(
                "{}: {} of {} transactions reused an instance, {} got a new one (up to {} per instance)",
                v.name,
                w.reused,
                w.fresh + w.reused,
                w.fresh,
                w.max_uses
            );
        }
    }
    for (ratio, r) in &result.ratios {
        println!("{}: {r:.3}", ratio.text);
    }
    for (name, r) in &result.others_vs_wasm {
        println!("{name} / wasm throughput: {r:.3}");
    }
    if let (Some(before), Some(after)) = (result.rss_kib_before, result.rss_kib_after) {
        println!("resident memory: {before} KiB before timing, {after} KiB after");
    }
}

/// The ratios as keys of the report's own.
fn ratio_map<S: serde::Serializer>(
    ratios: &[(Ratio, f64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(ratios.len()))?;
    for (ratio, value) in ratios {
        map.serialize_entry(ratio.key, value)?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_scripts_twin_is_named_as_the_constant_says() {
        assert_eq!(format!("{WASM}{WARM_SUFFIX}"), WASM_WARM);
    }
}
