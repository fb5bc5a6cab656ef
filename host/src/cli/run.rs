//! `wasmtx run`: one global transaction from the command line.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use wasmtx::report::{ErrorKind, TxError};
use wasmtx::script::{ScriptLogic, WarmSettings};
use wasmtx::{Host, HostOptions};

use super::{HostArgs, input_error, output, resolve_script, warm};

/// Connections per server participant for a single run.
const RUN_POOL_SIZE: u32 = 2;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The script: a .wasm component, or a guest crate or Python script directory (built
    /// first: cargo for wasm32-wasip2, or componentize-py).
    #[arg(value_name = "SCRIPT")]
    script: PathBuf,
    #[command(flatten)]
    host: HostArgs,
    /// The script's input: JSON text, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    input: String,
    #[arg(long, value_name = "N", value_parser = warm::parse_uses, help = warm::RUN_HELP)]
    warm_uses: Option<WarmSettings>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RunArgs) -> ExitCode {
    match prepare(&args).await {
        Ok((host, script, input)) => {
            let report = host.run(&script, &input).await;
            host.close().await;
            output::print_report(&report, args.json);
            output::exit_code(&report)
        }
        Err(error) => output::print_failure(&error, args.json),
    }
}

/// Everything before the transaction: configuration, input, script, connections. Bad
/// input fails here, before any participant is touched.
async fn prepare(args: &RunArgs) -> Result<(Host, ScriptLogic, String), TxError> {
    let config = args.host.config_with_participants()?;
    let input = read_input(&args.input)?;
    let script_path = resolve_script(&args.script, args.json)?;
    let host = Host::builder(
        config,
        HostOptions {
            concurrency: 1,
            max_connections: RUN_POOL_SIZE,
            ..HostOptions::default()
        }
        .with_warm_room(args.warm_uses.is_some()),
    )?;
    let mut script = host.load_script(&script_path).map_err(input_error)?;
    if let Some(settings) = args.warm_uses {
        script = warm::warm_logic(script, settings).0;
    }
    let host = host.connect().await?;
    output::warn_superusers(&host).await;
    Ok((host, script, input))
}

/// `--input`: JSON text or `@FILE`; must be valid JSON.
pub fn read_input(arg: &str) -> Result<String, TxError> {
    let text = input_text(arg)?;
    check_json(&text)?;
    Ok(text)
}

/// The text of `--input`: the argument itself, or the contents of `@FILE`.
pub fn input_text(arg: &str) -> Result<String, TxError> {
    match arg.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).map_err(|e| {
            TxError::new(
                ErrorKind::Input,
                format!("cannot read input file {file}: {e}"),
            )
        }),
        None => Ok(arg.to_owned()),
    }
}

/// Refuses input that is not JSON, before anything is touched.
pub fn check_json(text: &str) -> Result<(), TxError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(drop)
        .map_err(|e| {
            TxError::new(
                ErrorKind::Input,
                format!("the input is not valid JSON: {e}"),
            )
        })
}
