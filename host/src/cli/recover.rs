//! `wasmtx recover` and `wasmtx status`: find this node's prepared branches on every
//! server participant and resolve them (or only list them).

use std::process::ExitCode;

use clap::Args;
use wasmtx::recovery::{Action, Decision, RecoveryReport};
use wasmtx::{Host, HostOptions};

use super::{HostArgs, output};

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    host: HostArgs,
    /// List what is in doubt and what would be done, without touching anything.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Exit status: 0 nothing left in doubt, 1 something could not be resolved (or was left
/// because its deadline has not passed), 2 bad input.
pub async fn run(args: RecoverArgs, dry_run: bool) -> ExitCode {
    let dry_run = dry_run || args.dry_run;
    let config = match args.host.config() {
        Ok(config) => config,
        Err(error) => return output::print_failure(&error, args.json),
    };
    let options = HostOptions {
        concurrency: 1,
        max_connections: 1,
        ..HostOptions::default()
    };
    let host = match Host::open(config, options).await {
        Ok(host) => host,
        Err(err) => return output::print_failure(&err.into(), args.json),
    };
    let report = host.recover(dry_run).await;
    host.close().await;
    print(&report, args.json, dry_run);
    if report.all_resolved() || (dry_run && report.failures.is_empty()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print(report: &RecoveryReport, json: bool, dry_run: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("reports serialize")
        );
        return;
    }
    if report.branches.is_empty() && report.failures.is_empty() {
        println!("no prepared branches of this node: nothing in doubt");
    }
    for b in &report.branches {
        let decision = match b.decision {
            Decision::Commit => "decision COMMIT",
            Decision::None => "no decision",
        };
        let action = match &b.action {
            Action::Committed => "committed".to_owned(),
            Action::RolledBack => "rolled back".to_owned(),
            Action::AlreadyResolved => "already resolved".to_owned(),
            Action::LeftInDoubt => {
                "left: its deadline has not passed (it may still be running)".to_owned()
            }
            Action::WouldCommit => "would commit".to_owned(),
            Action::WouldRollBack => "would roll back".to_owned(),
            Action::Failed(message) => format!("FAILED: {message}"),
        };
        println!("{}  {:<16} {:<16} {action}", b.gid, b.participant, decision);
    }
    for f in &report.failures {
        println!("cannot scan {}: {}", f.participant, f.message);
    }
    if dry_run && !report.branches.is_empty() {
        println!("(dry run: nothing was changed)");
    }
}
