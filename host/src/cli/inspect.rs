//! `wasmtx inspect`: what a script is and whether this host can run it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use wasmtx::config::Config;
use wasmtx::report::{ErrorKind, TxError};
use wasmtx::script::{Sandbox, WORLD};

use super::{output, resolve_script};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .wasm component or a guest crate directory.
    #[arg(value_name = "SCRIPT")]
    script: PathBuf,
    /// Directory for compiled components.
    #[arg(long, value_name = "DIR", env = "WASMTX_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn inspect(args: InspectArgs) -> ExitCode {
    match describe(&args) {
        Ok((description, runnable)) => {
            if args.json {
                println!("{description}");
            } else {
                print_text(&description);
            }
            if runnable {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => output::print_failure(&error, args.json),
    }
}

fn describe(args: &InspectArgs) -> Result<(serde_json::Value, bool), TxError> {
    let input_error = |e: &dyn std::fmt::Display| TxError::new(ErrorKind::Input, e.to_string());
    let path = resolve_script(&args.script, args.json)?;
    let mut config = Config::defaults();
    if let Some(dir) = &args.cache_dir {
        config.cache_dir = dir.clone();
    }
    let sandbox = Sandbox::new(&config.limits, 1, config.cache_dir)
        .map_err(|e| input_error(&format!("{e:#}")))?;
    let bytes = std::fs::read(&path)
        .map_err(|e| input_error(&format!("cannot read {}: {e}", path.display())))?;
    let cached_before = sandbox.cache().contains(sandbox.engine(), &bytes);
    let (component, _) = sandbox
        .compile(&path, &bytes)
        .map_err(|e| input_error(&e))?;
    let ty = component.component_type();
    let engine = sandbox.engine();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let check = sandbox.load(&path);
    let runnable = check.is_ok();
    let description = json!({
        "path": path.display().to_string(),
        "size_bytes": bytes.len(),
        "world": WORLD,
        "implements_world": runnable,
        "problem": check.err().map(|e| e.to_string()),
        "imports": imports,
        "exports": exports,
        "compiled_cache": if cached_before { "cached" } else { "compiled now, cached for next time" },
        "cache_file": sandbox.cache().entry_path(engine, &bytes).display().to_string(),
    });
    Ok((description, runnable))
}

fn print_text(d: &serde_json::Value) {
    println!("script:   {}", d["path"].as_str().unwrap_or_default());
    println!("size:     {} bytes", d["size_bytes"]);
    if d["implements_world"] == true {
        println!(
            "world:    {} — this host can run it",
            d["world"].as_str().unwrap_or_default()
        );
    } else {
        println!(
            "world:    does NOT implement {}",
            d["world"].as_str().unwrap_or_default()
        );
        println!("problem:  {}", d["problem"].as_str().unwrap_or_default());
    }
    println!("imports:");
    for import in d["imports"].as_array().into_iter().flatten() {
        println!("  {}", import.as_str().unwrap_or_default());
    }
    println!("exports:");
    for export in d["exports"].as_array().into_iter().flatten() {
        println!("  {}", export.as_str().unwrap_or_default());
    }
    println!(
        "compiled: {} ({})",
        d["compiled_cache"].as_str().unwrap_or_default(),
        d["cache_file"].as_str().unwrap_or_default()
    );
}
