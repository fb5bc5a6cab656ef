//! How results reach the terminal: a short human summary, or one JSON object (`--json`),
//! and the exit status.

use std::process::ExitCode;

use serde_json::json;
use wasmtx::Host;
use wasmtx::report::{BranchOutcome, ErrorKind, Outcome, TxError, TxReport};

/// Warns on stderr, once per participant, about participants connected as a superuser.
pub async fn warn_superusers(host: &Host) {
    let participants = host.participants();
    for warning in wasmtx::participant::superuser_warnings(participants).await {
        eprintln!("warning: {warning}");
    }
}

/// Prints a finished transaction.
pub fn print_report(report: &TxReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("reports serialize")
        );
        return;
    }
    let outcome = match report.outcome {
        Outcome::Committed => "committed",
        Outcome::Aborted => "aborted",
        Outcome::InDoubt => "IN DOUBT",
    };
    println!("{outcome}  {}  ({:.1} ms)", report.gid, report.elapsed_ms);
    if let Some(output) = &report.output {
        println!("  output: {output}");
    }
    if let Some(error) = &report.error {
        println!("  error ({}): {}", error.kind.as_str(), error.message);
        if let Some(hint) = &error.hint {
            println!("  hint: {hint}");
        }
    }
    for p in &report.participants {
        let outcome = match p.outcome {
            BranchOutcome::Committed => "committed",
            BranchOutcome::RolledBack => "rolled back",
            BranchOutcome::Pending => "PENDING",
            BranchOutcome::NotStarted => "not started",
        };
        println!("  {:<16} {:<8} {outcome}", p.name, p.dialect.as_str());
        if let Some(note) = &p.note {
            println!("  {:<16} {:<8} ({note})", "", "");
        }
    }
}

/// Prints a failure that happened before any transaction began, and returns its status.
pub fn print_failure(error: &TxError, json: bool) -> ExitCode {
    if json {
        let object = json!({
            "gid": null, "outcome": "aborted", "output": null, "error": error,
            "participants": [], "elapsed_ms": 0.0,
        });
        println!("{object}");
    }
    eprintln!("wasmtx: {}", error.message);
    if let Some(hint) = &error.hint {
        eprintln!("hint: {hint}");
    }
    match error.kind {
        ErrorKind::Input => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

pub fn exit_code(report: &TxReport) -> ExitCode {
    match report.outcome {
        Outcome::Committed => ExitCode::SUCCESS,
        Outcome::Aborted => ExitCode::from(1),
        Outcome::InDoubt => ExitCode::from(3),
    }
}
