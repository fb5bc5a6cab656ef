//! `wasmtx demo`: a guided tour on embedded SQLite that needs no set-up. Its narration goes
//! to stdout; what a script prints or logs is shown within the step that ran it (collected
//! from the `wasmtx::script` events), not as log lines, which `RUST_LOG` still turns on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::Args;
use sqlx::{Connection, Row, SqliteConnection};
use wasmtx::config::Config;
use wasmtx::participant::ParticipantSpec;
use wasmtx::report::Outcome;
use wasmtx::{Host, HostOptions};

use super::output;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's databases in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The repository this binary was built from: the tour builds its examples from there.
fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const STARTING_BALANCE: i64 = 100;

struct Step {
    title: &'static str,
    script: &'static str,
    input: &'static str,
    expect: Outcome,
}

const STEPS: [Step; 4] = [
    Step {
        title: "transfer 30 from alice (bank_a) to bob (bank_b)",
        script: "transfer",
        input: r#"{"from":{"participant":"bank_a","account":"alice"},"to":{"participant":"bank_b","account":"bob"},"amount":30}"#,
        expect: Outcome::Committed,
    },
    Step {
        title: "transfer 500 from alice: the script refuses (insufficient funds)",
        script: "transfer",
        input: r#"{"from":{"participant":"bank_a","account":"alice"},"to":{"participant":"bank_b","account":"bob"},"amount":500}"#,
        expect: Outcome::Aborted,
    },
    Step {
        title: "a script that debits alice, then panics",
        script: "faulty",
        input: r#"{"fault":"panic","from":{"participant":"bank_a","account":"alice"},"to":{"participant":"bank_b","account":"bob"},"amount":10}"#,
        expect: Outcome::Aborted,
    },
    Step {
        title: "a script that debits alice, hits a database error, ignores it and votes commit",
        script: "faulty",
        input: r#"{"fault":"bad-sql","from":{"participant":"bank_a","account":"alice"},"to":{"participant":"bank_b","account":"bob"},"amount":10}"#,
        expect: Outcome::Aborted,
    },
];

pub async fn demo(args: DemoArgs) -> ExitCode {
    match tour(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("wasmtx demo: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn tour(args: DemoArgs) -> anyhow::Result<bool> {
    let temp = tempfile::tempdir()?;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => temp.path().to_owned(),
    };
    println!("wasmtx demo — two SQLite databases in {}\n", dir.display());

    let banks = [("bank_a", "alice"), ("bank_b", "bob")];
    for (bank, owner) in banks {
        seed(&dir.join(format!("{bank}.db")), owner).await?;
    }
    let mut config = Config::defaults();
    config.state_dir = dir.join("state");
    for (bank, _) in banks {
        config.add_participant(
            ParticipantSpec::new(bank, &format!("sqlite://{}/{bank}.db", dir.display()))?,
            false,
        )?;
    }
    let host = Host::open(config, HostOptions::default()).await?;
    let mut scripts = std::collections::HashMap::new();
    for name in ["transfer", "faulty"] {
        println!("building examples/{name} …");
        // The examples share one target directory (a CARGO_TARGET_DIR set by the user wins).
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or(repo_dir().join("target/guests"));
        let wasm = wasmtx::guest_build::build_guest(
            &repo_dir().join("examples").join(name),
            false,
            Some(&target_dir),
        )?;
        scripts.insert(name, host.load_script(&wasm)?);
    }

    let initial_total = print_balances(&dir, &banks).await?;
    let mut all_as_expected = true;
    for (number, step) in STEPS.iter().enumerate() {
        println!("\n── step {}: {}", number + 1, step.title);
        take_script_output();
        let report = host.run(&scripts[step.script], step.input).await;
        for line in take_script_output() {
            println!("   script │ {line}");
        }
        output::print_report(&report, false);
        let total = print_balances(&dir, &banks).await?;
        let conserved = total == initial_total;
        let expected = report.outcome == step.expect;
        println!(
            "   total {total} (was {initial_total}): {}; outcome {}",
            if conserved {
                "conserved ✓"
            } else {
                "CHANGED ✗"
            },
            if expected {
                "as expected ✓"
            } else {
                "NOT as expected ✗"
            }
        );
        all_as_expected &= conserved && expected;
    }
    println!(
        "\n{}",
        if all_as_expected {
            "every step ended as expected and no money was created or lost."
        } else {
            "some step did not end as expected (see ✗ above)."
        }
    );
    Ok(all_as_expected)
}

async fn seed(path: &Path, owner: &str) -> anyhow::Result<()> {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = SqliteConnection::connect(&url).await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS accounts; CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))")
        .execute(&mut conn)
        .await?;
    sqlx::query("INSERT INTO accounts (id, balance) VALUES (?, ?)")
        .bind(owner)
        .bind(STARTING_BALANCE)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Prints every account and returns the total.
async fn print_balances(dir: &Path, banks: &[(&str, &str)]) -> anyhow::Result<i64> {
    println!("   {:<8} {:<8} {:>8}", "bank", "account", "balance");
    let mut total = 0;
    for (bank, _) in banks {
        let mut conn =
            SqliteConnection::connect(&format!("sqlite://{}/{bank}.db", dir.display())).await?;
        for row in sqlx::query("SELECT id, balance FROM accounts ORDER BY id")
            .fetch_all(&mut conn)
            .await?
        {
            let (id, balance): (String, i64) = (row.get(0), row.get(1));
            println!("   {bank:<8} {id:<8} {balance:>8}");
            total += balance;
        }
        conn.close().await?;
    }
    Ok(total)
}

/// What the scripts printed and logged since the last [`take_script_output`].
static SCRIPT_OUTPUT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Takes what the scripts printed and logged since the last call, oldest first.
fn take_script_output() -> Vec<String> {
    std::mem::take(&mut *SCRIPT_OUTPUT.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The tracing layer that collects the scripts' output (their stdout and stderr, their
/// log calls at info or above) for the step that runs them.
pub fn script_output_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use tracing_subscriber::Layer;
    ScriptOutput.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target("wasmtx::script", tracing::Level::INFO),
    )
}

struct ScriptOutput;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ScriptOutput {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = ScriptEvent::default();
        event.record(&mut fields);
        // Printed output names its stream; a log call, its level.
        let source = fields
            .stream
            .unwrap_or_else(|| format!("log {}", event.metadata().level().as_str().to_lowercase()));
        SCRIPT_OUTPUT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{source}: {}", fields.message));
    }
}

/// The fields of one `wasmtx::script` event the demo shows.
#[derive(Default)]
struct ScriptEvent {
    message: String,
    stream: Option<String>,
}

impl tracing::field::Visit for ScriptEvent {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "stream" => self.stream = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "stream" => self.stream = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}
