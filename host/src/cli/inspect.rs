//! `wasmtx inspect`: what a script is and whether this host can run it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use wasmtx::config::Config;
use wasmtx::report::{ErrorKind, TxError};
use wasmtx::script::{CompiledCache, Inspection};
use wasmtx::{Host, HostOptions};

use super::{input_error, output, resolve_script};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .wasm component, or a script directory (a guest crate or a Python script).
    #[arg(value_name = "SCRIPT")]
    script: PathBuf,
    /// Configuration file (TOML): its [limits] are the ones checked, as `run` checks them.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Script memory limit in MiB (limits.memory_mib).
    #[arg(long, value_name = "MIB")]
    memory: Option<u32>,
    /// Directory for compiled components.
    #[arg(long, value_name = "DIR", env = "WASMTX_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn inspect(args: InspectArgs) -> ExitCode {
    match describe(&args).await {
        Ok(inspection) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&inspection).expect("reports serialize")
                );
            } else {
                print_text(&inspection);
            }
            if inspection.problem.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => output::print_failure(&error, args.json),
    }
}

async fn describe(args: &InspectArgs) -> Result<Inspection, TxError> {
    let path = resolve_script(&args.script, args.json)?;
    let mut config = match &args.config {
        Some(file) => Config::load(file).map_err(input_error)?,
        None => Config::defaults(),
    };
    // Inspecting connects to nothing.
    config.participants.clear();
    if let Some(dir) = &args.cache_dir {
        config.cache_dir = dir.clone();
    }
    if let Some(memory) = args.memory {
        config.limits.memory_mib = memory;
    }
    config.limits.validate().map_err(input_error)?;
    let host = Host::open(config, HostOptions::default()).await?;
    host.inspect(&path)
        .map_err(|e| TxError::new(ErrorKind::Input, e.to_string()))
}

fn print_text(d: &Inspection) {
    println!("script:   {}", d.path);
    println!("size:     {} bytes", d.size_bytes);
    match (&d.problem, d.implements_world) {
        (None, _) => println!("world:    {} — this host can run it", d.world),
        (Some(problem), false) => {
            println!("world:    does NOT implement {}", d.world);
            println!("problem:  {problem}");
        }
        (Some(problem), true) => {
            println!("world:    {}", d.world);
            println!("problem:  this host cannot run it: {problem}");
        }
    }
    let needs = &d.needs;
    println!(
        "needs:    {} core instances, {} memories, {} tables per instance; memory starts at {:.1} MiB",
        needs.core_instances,
        needs.memories,
        needs.tables,
        needs.initial_memory_bytes as f64 / f64::from(1 << 20)
    );
    println!("imports:");
    for import in &d.imports {
        println!("  {import}");
    }
    println!("exports:");
    for export in &d.exports {
        println!("  {export}");
    }
    let cache = match d.compiled_cache {
        CompiledCache::Cached => "cached",
        CompiledCache::CompiledNow => "compiled now, cached for next time",
    };
    println!("compiled: {cache} ({})", d.cache_file);
}
