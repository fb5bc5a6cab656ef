//! Shared helpers for the end-to-end tests: build guest crates once, run the real
//! `wasmtx` binary with isolated state, and reach the real databases.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned()
}

/// Builds a guest crate (relative to the repository root, e.g. `examples/transfer`) once
/// per test process and returns its component. All guests share one target directory.
pub fn guest(crate_dir: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(crate_dir) {
        return path.clone();
    }
    let dir = repo().join(crate_dir);
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--message-format=json",
        ])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", repo().join("target/guests"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("running cargo for a guest");
    assert!(
        output.status.success(),
        "building {crate_dir} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let wasm = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .filter(|f| f.extension().is_some_and(|e| e == "wasm"))
        .next_back()
        .unwrap_or_else(|| panic!("{crate_dir} produced no .wasm"));
    built.insert(crate_dir.to_owned(), wasm.clone());
    wasm
}

/// An isolated place for one test: databases, state and the compiled cache.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `wasmtx` command with this sandbox's state dir and the shared compiled cache.
    pub fn wasmtx(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wasmtx"));
        command
            .env("WASMTX_STATE_DIR", self.path("state"))
            .env("WASMTX_CACHE_DIR", repo().join("target/wasmtx-test-cache"))
            .env("RUST_BACKTRACE", "0")
            .env_remove("RUST_LOG");
        command
    }

    /// Runs `wasmtx run SCRIPT --json` with the given participants and input.
    pub fn run_json(
        &self,
        script: &Path,
        participants: &[String],
        input: &str,
    ) -> (Output, serde_json::Value) {
        let mut command = self.wasmtx();
        command
            .arg("run")
            .arg(script)
            .arg("--json")
            .args(["--input", input]);
        for p in participants {
            command.args(["-p", p]);
        }
        let output = command.output().expect("running wasmtx");
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "wasmtx printed no JSON ({e}):\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output, json)
    }
}

/// Runs SQL on an SQLite file directly (not through wasmtx); rows come back as text.
pub fn sqlite(path: &Path, sql: &str) -> Vec<Vec<String>> {
    block_on(async {
        use sqlx::{Connection, Row, ValueRef};
        let url = format!("sqlite://{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("opening SQLite");
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut conn)
            .await
            .expect(sql);
        let text = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        if row.try_get_raw(i).unwrap().is_null() {
                            "NULL".to_owned()
                        } else {
                            row.try_get::<String, _>(i)
                                .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                                .or_else(|_| row.try_get::<f64, _>(i).map(|v| v.to_string()))
                                .expect("a text or number column")
                        }
                    })
                    .collect()
            })
            .collect();
        conn.close().await.ok();
        text
    })
}

/// Creates an SQLite file with the transfer example's `accounts` table and rows.
pub fn accounts_db(path: &Path, accounts: &[(&str, i64)]) {
    let mut sql = format!(
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));"
    );
    for (id, balance) in accounts {
        sql.push_str(&format!("INSERT INTO accounts VALUES ('{id}', {balance});"));
    }
    create_sqlite(path, &sql);
}

/// Creates an SQLite file and runs `sql` in it.
pub fn create_sqlite(path: &Path, sql: &str) {
    block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("creating SQLite");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .expect(sql);
        conn.close().await.ok();
    })
}

/// The balance of `account` in an accounts file.
pub fn balance(path: &Path, account: &str) -> i64 {
    sqlite(
        path,
        &format!("SELECT balance FROM accounts WHERE id = '{account}'"),
    )[0][0]
        .parse()
        .unwrap()
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A transfer example input.
pub fn transfer_input(from: (&str, &str), to: (&str, &str), amount: i64) -> String {
    serde_json::json!({
        "from": {"participant": from.0, "account": from.1},
        "to": {"participant": to.0, "account": to.1},
        "amount": amount,
    })
    .to_string()
}
