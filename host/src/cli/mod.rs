//! Command-line interface: argument parsing, the commands, and exit codes.
//!
//! Exit status: 0 committed (or success), 1 aborted, 2 usage/configuration/input error,
//! 3 in doubt (decided COMMIT, some branch pending: run `wasmtx recover`), 4 (client
//! commands) the server gave no outcome.
//!
//! It lives in the library so that the developer benchmark (`bench/`) can run `wasmtx
//! bench` with variants of its own.

pub mod bench;
mod client;
mod demo;
mod inspect;
mod output;
mod recover;
mod run;
mod serve;
mod warm;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wasmtx::config::Config;
use wasmtx::report::{ErrorKind, TxError};

/// Run distributed transactions whose prepare logic is a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "wasmtx", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one global transaction: begin on every participant, run the script, commit or
    /// roll back everywhere.
    ///
    /// Exit status: 0 committed, 1 aborted, 2 bad input, 3 in doubt.
    Run(run::RunArgs),
    /// Show the world a script implements, its imports, whether this host can run it,
    /// and its size and compiled-cache state.
    Inspect(inspect::InspectArgs),
    /// Measure throughput, latency and CPU per transaction of a script's transactions,
    /// optionally against the same script invoked on a running server (--compare http),
    /// other scripts, e.g. the same logic in another language (--also), and each script on
    /// warm instances (--warm-uses).
    ///
    /// Per variant: throughput, latency percentiles, and what each transaction cost:
    /// `host µs/tx` is this process's CPU time, `machine µs/tx` the whole machine's (the
    /// databases' too, when they run here), `busy` how busy the cores were, and
    /// `switches` the machine's context switches per transaction.
    Bench(bench::BenchArgs),
    /// A guided tour on embedded SQLite: transfers that commit, abort, panic and fail,
    /// with balances after each step. Needs no set-up.
    Demo(demo::DemoArgs),
    /// Resolve branches a crash left prepared on this node's PostgreSQL/MySQL
    /// participants: commit those with a recorded COMMIT decision, roll back undecided
    /// ones past their deadline, and leave the rest. One line per branch.
    Recover(recover::RecoverArgs),
    /// List what is in doubt without touching it (same as `recover --dry-run`).
    Status(recover::RecoverArgs),
    /// Run a long-running host: a plugin registry and an HTTP API to invoke plugins, with
    /// automatic recovery, bearer tokens and Prometheus metrics.
    ///
    /// Routes are under /v1 (GET /v1/openapi.json lists them), plus /healthz, /readyz and
    /// /metrics. SIGTERM or Ctrl-C stops it after in-flight transactions finish.
    Serve(serve::ServeArgs),
    /// Publish a component to a server's registry as NAME@VERSION.
    Publish(client::PublishArgs),
    /// Invoke a published plugin on a server and print what `run` prints.
    ///
    /// Exit status: 0 committed, 1 aborted, 2 bad input, 3 in doubt, 4 no outcome (server
    /// unreachable, not ready or overloaded).
    Invoke(client::InvokeArgs),
}

/// Options shared by commands that use participants.
#[derive(Debug, Args)]
struct HostArgs {
    /// Configuration file (TOML): node id, directories, participants, limits.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A participant, NAME=URL (repeatable): sqlite://PATH[?mode=rwc],
    /// postgres://USER@HOST/DB, mysql://USER@HOST/DB. Overrides the file's participant of
    /// the same name.
    #[arg(short = 'p', long = "participant", value_name = "NAME=URL")]
    participants: Vec<String>,
    /// Node id: names this host's transactions (A-Z a-z 0-9 -, at most 16); recovery
    /// touches only its own node's branches.
    #[arg(long, value_name = "ID", env = "WASMTX_NODE")]
    node: Option<String>,
    /// Directory for the decision log and the SQLite coordinator file.
    #[arg(long, value_name = "DIR", env = "WASMTX_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Directory for compiled components.
    #[arg(long, value_name = "DIR", env = "WASMTX_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// A cluster's shared decision log, postgres://USER@HOST/DB ([decision_log] url):
    /// decisions and this node's lease live there instead of the local file.
    #[arg(long, value_name = "URL", env = "WASMTX_DECISION_LOG")]
    decision_log: Option<String>,
    /// Transaction deadline in seconds (limits.timeout_secs).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Script memory limit in MiB (limits.memory_mib).
    #[arg(long, value_name = "MIB")]
    memory: Option<u32>,
    /// Statements per transaction (limits.max_statements).
    #[arg(long, value_name = "N")]
    max_statements: Option<u32>,
}

impl HostArgs {
    /// The configuration: defaults, then the file, then the flags.
    fn config(&self) -> Result<Config, TxError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path).map_err(input_error)?,
            None => Config::defaults(),
        };
        config
            .apply_participant_args(&self.participants)
            .map_err(input_error)?;
        if let Some(node) = &self.node {
            config.node = wasmtx::gid::NodeId::new(node).map_err(input_error)?;
        }
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
        }
        if let Some(dir) = &self.cache_dir {
            config.cache_dir = dir.clone();
        }
        if let Some(url) = &self.decision_log {
            config.decision_log.url = Some(url.clone());
            config
                .decision_log
                .validate()
                .map_err(|e| input_error(e.replace("[decision_log] url", "--decision-log")))?;
        }
        if let Some(timeout) = self.timeout {
            config.limits.timeout_secs = timeout;
        }
        if let Some(memory) = self.memory {
            config.limits.memory_mib = memory;
        }
        if let Some(n) = self.max_statements {
            config.limits.max_statements = n;
        }
        config.limits.validate().map_err(input_error)?;
        Ok(config)
    }
}

impl HostArgs {
    /// [`Self::config`] for a command that runs transactions: at least one participant.
    fn config_with_participants(&self) -> Result<Config, TxError> {
        let config = self.config()?;
        if config.participants.is_empty() {
            return Err(input_error(
                "no participants: give -p NAME=URL (e.g. -p a=sqlite://a.db) or [participants] in --config",
            ));
        }
        Ok(config)
    }
}

/// A usage, configuration or input error (exit status 2).
fn input_error(message: impl std::fmt::Display) -> TxError {
    TxError::new(ErrorKind::Input, message.to_string())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    wasmtx::tls::install_default_provider();
    let demo = matches!(cli.command, Command::Demo(_));
    init_tracing(
        // A benchmark's scripts log once per transaction: only warnings by default there.
        if matches!(cli.command, Command::Bench(_)) {
            "warn"
        } else if demo {
            "warn,wasmtx::script=off"
        } else if matches!(cli.command, Command::Serve(_)) {
            "info,wasmtx::script=warn,tower_http=warn,sqlx=warn"
        } else {
            "warn,wasmtx::script=info"
        },
        demo,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wasmtx: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Inspect(args) => inspect::inspect(args).await,
            Command::Demo(args) => demo::demo(args).await,
            Command::Bench(args) => bench::bench(args).await,
            Command::Recover(args) => recover::run(args, false).await,
            Command::Status(args) => recover::run(args, true).await,
            Command::Serve(args) => serve::serve(args).await,
            Command::Publish(args) => client::publish(args).await,
            Command::Invoke(args) => client::invoke(args).await,
        }
    })
}

/// Logs go to stderr; `RUST_LOG` overrides the default filter. The demo shows its scripts'
/// output within its steps instead.
pub fn init_tracing(default_filter: &str, demo: bool) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(logs)
        .with(demo.then(demo::script_output_layer))
        .init();
}

/// A script argument: a `.wasm` component as is, or a guest crate or Python script directory
/// built first.
fn resolve_script(path: &Path, quiet: bool) -> Result<PathBuf, TxError> {
    if path.is_dir() {
        if let (false, Some(kind)) = (quiet, wasmtx::guest_build::GuestKind::of(path)) {
            eprintln!("building {} {} …", path.display(), kind.describe());
        }
        wasmtx::guest_build::build_guest(path, quiet, None)
            .map_err(|e| TxError::new(ErrorKind::Input, e.to_string()))
    } else {
        Ok(path.to_owned())
    }
}
