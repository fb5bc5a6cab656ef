//! Scripts written in Python and JavaScript, end to end through the real CLI: the SDKs'
//! examples built with the pinned componentize-py and jco (each once per test process) and
//! run on SQLite and on PostgreSQL + MariaDB — commit, script abort, an exception (a trap
//! carrying the Python traceback or the JavaScript error and its stack), a failed statement
//! the script ignored (aborted) — the hostile behaviours that matter for an interpreter (a
//! loop, a memory bomb, huge output, deep recursion) in both languages, and the instance pool
//! sized from what a component needs, as `run` and `inspect` report it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{
    TestDir, balance, create_sqlite, guest, mysql_db, postgres_db, prepared_branches, repo,
    server_accounts, server_balance, server_sql, sqlite, transfer_input,
};

/// Builds a Python script directory (relative to the repository root) once per test
/// process; `None`, after saying why, when componentize-py is not installed (a failure
/// under CI, where scripts/test.sh installs it).
fn python_guest(dir: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    if let Err(err) = wasmtx::guest_build::componentize_py_version() {
        return tool_missing(&err.to_string());
    }
    let mut built = lock(&BUILT);
    if let Some(path) = built.get(dir) {
        return Some(path.clone());
    }
    let wasm = wasmtx::guest_build::build_guest(
        &repo().join(dir),
        true,
        Some(&repo().join("target/guests-python")),
    )
    .unwrap_or_else(|e| panic!("building {dir}: {e}"));
    built.insert(dir.to_owned(), wasm.clone());
    Some(wasm)
}

/// A build tool the test needs is missing: a failure under CI, a printed skip otherwise.
fn tool_missing<T>(why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("required under CI: {why}");
    }
    eprintln!("skipping: {why} (scripts/test.sh installs it)");
    None
}

fn lock<T: Default>(built: &'static OnceLock<Mutex<T>>) -> std::sync::MutexGuard<'static, T> {
    built
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Builds a JavaScript script directory (relative to the repository root) with its pinned
/// jco, once per test process (`npm ci` first when its `node_modules` is missing); `None`, after saying
/// why, when npm is not installed (a failure under CI, where scripts/test.sh installs it).
fn js_guest(dir: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let npm = |args: &[&str]| {
        std::process::Command::new("npm")
            .args(args)
            .current_dir(repo().join(dir))
            .output()
    };
    if npm(&["--version"]).is_err() {
        return tool_missing("npm is not installed");
    }
    let mut built = lock(&BUILT);
    if let Some(path) = built.get(dir) {
        return Some(path.clone());
    }
    let mut steps = vec![&["run", "build"][..]];
    if !repo().join(dir).join("node_modules").exists() {
        steps.insert(0, &["ci", "--no-audit", "--no-fund"][..]);
    }
    for step in steps {
        let out = npm(step).unwrap();
        assert!(
            out.status.success(),
            "npm {step:?} in {dir}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let name = Path::new(dir).file_name().unwrap().to_str().unwrap();
    let wasm = repo().join(dir).join("build").join(format!("{name}.wasm"));
    built.insert(dir.to_owned(), wasm.clone());
    Some(wasm)
}

fn hostile_input(action: &str) -> String {
    serde_json::json!({ "do": action }).to_string()
}

/// Two SQLite accounts files, `a` (alice 100) and `b` (bob 0), as participant arguments.
fn two_accounts(sb: &TestDir) -> (PathBuf, PathBuf, Vec<String>) {
    common::sqlite_accounts(sb, 100)
}

/// The transfer example's contract on [`two_accounts`], whatever its language: 30 moves
/// (the output gives both balances), then 71 is refused for insufficient funds with
/// nothing changed.
fn transfer_commits_then_aborts_for_funds(
    sb: &TestDir,
    script: &Path,
    participants: &[String],
    (a, b): (&Path, &Path),
) {
    let input = transfer_input(("a", "alice"), ("b", "bob"), 30);
    let (out, json) = sb.run_json(script, participants, &input);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["outcome"], "committed", "{json}");
    let output: serde_json::Value = serde_json::from_str(json["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        output,
        serde_json::json!({"from_balance": 70, "to_balance": 30})
    );
    assert_eq!((balance(a, "alice"), balance(b, "bob")), (70, 30));

    let input = transfer_input(("a", "alice"), ("b", "bob"), 71);
    let (out, json) = sb.run_json(script, participants, &input);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["error"]["kind"], "script", "{json}");
    assert_eq!(
        json["error"]["message"],
        "insufficient funds: alice on a has 70, needs 71"
    );
    assert_eq!((balance(a, "alice"), balance(b, "bob")), (70, 30));
}

#[test]
fn python_transfer_commits_and_aborts_on_sqlite() {
    let Some(script) = python_guest("examples/python-transfer") else {
        return;
    };
    let sb = TestDir::new();
    let (a, b, participants) = two_accounts(&sb);
    transfer_commits_then_aborts_for_funds(&sb, &script, &participants, (&a, &b));

    let input = transfer_input(("a", "alice"), ("z", "bob"), 5);
    let (_, json) = sb.run_json(&script, &participants, &input);
    assert_eq!(json["error"]["kind"], "script", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("no participant named `z`"), "{message}");
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (70, 30));
}

/// The `user` table of the seed scenario on SQLite.
fn sqlite_user_table(path: &Path) {
    create_sqlite(
        path,
        "CREATE TABLE \"user\" (username TEXT PRIMARY KEY, password TEXT NOT NULL, \
         created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    );
}

#[test]
fn python_insert_user_reaches_test1_and_test2_or_neither_on_sqlite() {
    let Some(script) = python_guest("examples/python-insert-user") else {
        return;
    };
    let sb = TestDir::new();
    let (test1, test2) = (sb.path("test1.db"), sb.path("test2.db"));
    sqlite_user_table(&test1);
    sqlite_user_table(&test2);
    // `ann` is on test2 already: inserting her again fails there, so test1 must not get her.
    create_sqlite(
        &test2,
        "INSERT INTO \"user\" VALUES ('ann', 'x', '2026-01-01', '2026-01-01')",
    );
    let participants = [
        format!("test1=sqlite://{}", test1.display()),
        format!("test2=sqlite://{}", test2.display()),
    ];
    let users = |path: &Path| sqlite(path, "SELECT username FROM \"user\" ORDER BY username");

    let (out, json) = sb.run_json(
        &script,
        &participants,
        r#"{"username": "bea", "password": "pw"}"#,
    );
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["output"], r#"{"inserted": 2}"#);
    assert_eq!(users(&test1), [["bea"]]);
    assert_eq!(users(&test2), [["ann"], ["bea"]]);

    let (out, json) = sb.run_json(
        &script,
        &participants,
        r#"{"username": "ann", "password": "pw"}"#,
    );
    assert_eq!(out.status.code(), Some(1), "{json}");
    // The failed statement dooms the transaction: a `database` error, with the script's
    // own explanation.
    assert_eq!(json["error"]["kind"], "database", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("insert into `user` on participant `test2` failed: database error"),
        "{message}"
    );
    assert_eq!(users(&test1), [["bea"]]);
    assert_eq!(users(&test2), [["ann"], ["bea"]]);

    let (_, json) = sb.run_json(&script, &participants, r#"{"username": ""}"#);
    assert_eq!(json["error"]["message"], "username must not be empty");
}

/// A hostile guest's `action` on fresh accounts files ([`two_accounts`]): the run's exit
/// status and report, and the test directory with the `a` file.
fn hostile_on_sqlite(
    script: &Path,
    action: &str,
) -> (Option<i32>, serde_json::Value, TestDir, PathBuf) {
    let sb = TestDir::new();
    let (a, _, participants) = two_accounts(&sb);
    let (out, json) = sb.run_json(script, &participants, &hostile_input(action));
    (out.status.code(), json, sb, a)
}

#[test]
fn a_python_exception_is_a_trap_carrying_its_traceback() {
    let Some(script) = python_guest("tests/guests/python-hostile") else {
        return;
    };
    let (code, json, _sb, a) = hostile_on_sqlite(&script, "raise");
    assert_eq!(
        (code, &json["outcome"]),
        (Some(1), &"aborted".into()),
        "{json}"
    );
    assert_eq!(json["error"]["kind"], "trap", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("Traceback"), "{message}");
    assert!(
        message.contains("ValueError: the ledger does not balance"),
        "{message}"
    );
    assert_eq!(balance(&a, "alice"), 100);
}

#[test]
fn a_failed_statement_the_python_script_ignores_still_aborts() {
    if let Some(script) = python_guest("tests/guests/python-hostile") {
        ignored_failure_still_aborts(&script);
    }
}

#[test]
fn a_failed_statement_the_js_script_ignores_still_aborts() {
    if let Some(script) = js_guest("tests/guests/js-hostile") {
        ignored_failure_still_aborts(&script);
    }
}

/// A hostile guest inserts carol, then catches the failure of a second statement and
/// returns normally: the transaction still aborts, and carol is not there.
fn ignored_failure_still_aborts(script: &Path) {
    let (code, json, _sb, a) = hostile_on_sqlite(script, "ignore-failure");
    assert_eq!(
        (code, &json["outcome"]),
        (Some(1), &"aborted".into()),
        "{json}"
    );
    assert_eq!(json["error"]["kind"], "database", "{json}");
    let carol = sqlite(&a, "SELECT count(*) FROM accounts WHERE id = 'carol'");
    assert_eq!(carol, [["0"]]);
}

#[test]
fn hostile_python_is_contained() {
    let Some(script) = python_guest("tests/guests/python-hostile") else {
        return;
    };
    contained(
        &script,
        &[
            // Printing is captured up to limits.max_stdio_bytes and the rest dropped.
            ("print", "committed"),
            // CPython keeps Python frames on its heap: unbounded recursion is a memory bomb.
            ("stack", "memory"),
        ],
    );
}

#[test]
fn hostile_javascript_is_contained() {
    let Some(script) = js_guest("tests/guests/js-hostile") else {
        return;
    };
    let results = contained(
        &script,
        &[
            // Log lines past limits.max_log_lines are dropped.
            ("log", "committed"),
            // QuickJS recurses on the wasm stack: the sandbox's stack limit stops it.
            ("stack", "trap"),
        ],
    );
    let message = results[1]["error"]["message"].as_str().unwrap();
    assert!(message.contains("limits.stack_kib"), "{message}");
}

/// Runs a hostile guest on [`two_accounts`]: an endless loop times out, a memory bomb hits
/// the memory limit, a huge output the output limit; then each `(action, expected)` of the
/// language ends as expected (`committed`, or aborted with that error kind). Alice's
/// balance stays untouched. The JSON reports of `cases`, in order.
fn contained(script: &Path, cases: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let sb = TestDir::new();
    let (a, _, participants) = two_accounts(&sb);
    let common: [(&str, &[&str], &str); 3] = [
        ("loop", &["--timeout", "2"], "timeout"),
        ("memory", &[], "memory"),
        ("output", &[], "limit"),
    ];
    let all = common.into_iter().chain(
        cases
            .iter()
            .map(|&(action, expected)| (action, &[][..], expected)),
    );
    let mut results = Vec::new();
    for (action, flags, expected) in all {
        let (out, json) = sb.run_json_with(
            script,
            &participants,
            flags,
            &hostile_input(action),
            Duration::from_secs(120),
        );
        let (code, ended) = match expected {
            "committed" => (0, &json["outcome"]),
            _ => (1, &json["error"]["kind"]),
        };
        assert_eq!(
            (out.status.code(), ended),
            (Some(code), &expected.into()),
            "{action}: {json}"
        );
        if action == "output" {
            let message = json["error"]["message"].as_str().unwrap();
            assert!(message.contains("limits.max_output_bytes"), "{message}");
        }
        results.push(json);
    }
    assert_eq!(balance(&a, "alice"), 100);
    results.split_off(common.len())
}

/// `wasmtx inspect --json` of `script`, with `config` as its configuration if given.
fn inspect(sb: &TestDir, script: &Path, config: Option<&Path>) -> serde_json::Value {
    let mut command = sb.wasmtx();
    command.arg("inspect").arg(script).arg("--json");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    common::json_within(command, common::RUN_LIMIT).1
}

#[test]
fn the_pool_grows_for_a_python_component_up_to_the_limits_and_inspect_agrees() {
    let Some(script) = python_guest("examples/python-transfer") else {
        return;
    };
    let sb = TestDir::new();
    let report = inspect(&sb, &script, None);
    assert_eq!(report["problem"], serde_json::Value::Null, "{report}");
    let core_instances = report["needs"]["core_instances"].as_u64().unwrap();
    assert!(
        core_instances > 8,
        "more than a Rust script's pool: {report}"
    );

    let config = sb.path("small-pool.toml");
    std::fs::write(&config, "[limits]\nmax_core_instances = 8\n").unwrap();
    let report = inspect(&sb, &script, Some(&config));
    let problem = report["problem"].as_str().unwrap_or_default();
    let expected =
        format!("needs {core_instances} core instances, more than limits.max_core_instances (8)");
    assert!(problem.contains(&expected), "{report}");
    assert_eq!(report["implements_world"], true);

    let (_, _, participants) = two_accounts(&sb);
    let config_arg = config.display().to_string();
    let (out, json) = sb.run_json_with(
        &script,
        &participants,
        &["--config", &config_arg],
        &transfer_input(("a", "alice"), ("b", "bob"), 1),
        common::RUN_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{json}");
    assert_eq!(json["error"]["kind"], "input");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains(&expected), "{message}");
}

/// A database `db` on both servers: alice (100) on PostgreSQL, bob (100) on MariaDB; their
/// URLs and the participant arguments `a=…` and `b=…`.
fn alice_and_bob_on_servers(db: &str) -> Option<(String, String, [String; 2])> {
    let (Some(pg), Some(my)) = (postgres_db(db), mysql_db(db)) else {
        return None;
    };
    server_accounts(&pg, &[("alice", 100)]);
    server_accounts(&my, &[("bob", 100)]);
    let participants = [format!("a={pg}"), format!("b={my}")];
    Some((pg, my, participants))
}

/// `wasmtx run SCRIPT --json` as node `node` (so tests never see each other's branches):
/// the exit status and the report.
fn run_as_node(
    sb: &TestDir,
    node: &str,
    script: &Path,
    participants: &[String],
    input: &str,
) -> (Option<i32>, serde_json::Value) {
    let mut command = sb.wasmtx();
    command
        .env("WASMTX_NODE", node)
        .arg("run")
        .arg(script)
        .args(["--json", "--input", input]);
    for p in participants {
        command.args(["-p", p]);
    }
    let (output, json) = common::json_within(command, common::RUN_LIMIT);
    (output.status.code(), json)
}

#[test]
fn python_on_postgres_and_mariadb_commits_aborts_traps_and_dooms() {
    let (Some(transfer), Some(hostile)) = (
        python_guest("examples/python-transfer"),
        python_guest("tests/guests/python-hostile"),
    ) else {
        return;
    };
    let Some((pg, my, participants)) = alice_and_bob_on_servers("wtx_pyxfer") else {
        return;
    };
    let sb = TestDir::new();
    let run = |script: &Path, input: &str| run_as_node(&sb, "pyxfer", script, &participants, input);
    let balances = || (server_balance(&pg, "alice"), server_balance(&my, "bob"));

    let (code, json) = run(&transfer, &transfer_input(("a", "alice"), ("b", "bob"), 40));
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(balances(), (60, 140));

    let (code, json) = run(&transfer, &transfer_input(("a", "alice"), ("b", "bob"), 61));
    assert_eq!(
        (code, &json["error"]["kind"]),
        (Some(1), &"script".into()),
        "{json}"
    );
    assert_eq!(balances(), (60, 140));

    let (code, json) = run(&hostile, &hostile_input("raise"));
    assert_eq!(
        (code, &json["error"]["kind"]),
        (Some(1), &"trap".into()),
        "{json}"
    );
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ValueError")
    );

    let (code, json) = run(&hostile, &hostile_input("ignore-failure"));
    assert_eq!(
        (code, &json["error"]["kind"]),
        (Some(1), &"database".into()),
        "{json}"
    );
    assert_eq!(
        server_sql(&pg, "SELECT count(*)::text FROM accounts"),
        [["1"]]
    );
    assert_eq!(balances(), (60, 140));
    assert!(prepared_branches("pyxfer").is_empty());
}

#[test]
fn python_insert_user_reaches_postgres_test1_and_mariadb_test2_or_neither() {
    let Some(script) = python_guest("examples/python-insert-user") else {
        return;
    };
    let (Some(test1), Some(test2)) = (postgres_db("wtx_pyusers"), mysql_db("wtx_pyusers")) else {
        return;
    };
    server_sql(
        &test1,
        "CREATE TABLE \"user\" (username VARCHAR(64) PRIMARY KEY, password VARCHAR(255) NOT NULL, \
         created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
    );
    server_sql(
        &test2,
        "CREATE TABLE `user` (username VARCHAR(64) PRIMARY KEY, password VARCHAR(255) NOT NULL, \
         created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL) ENGINE=InnoDB",
    );
    server_sql(
        &test2,
        "INSERT INTO `user` VALUES ('ann', 'x', NOW(), NOW())",
    );
    let sb = TestDir::new();
    let participants = [format!("test1={test1}"), format!("test2={test2}")];
    let run = |input: &str| run_as_node(&sb, "pyusers", &script, &participants, input);
    let users = || {
        (
            server_sql(&test1, "SELECT username FROM \"user\" ORDER BY username"),
            server_sql(&test2, "SELECT username FROM `user` ORDER BY username"),
        )
    };

    let (code, json) = run(r#"{"username": "bea", "password": "pw"}"#);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(
        users(),
        (
            vec![vec!["bea".to_owned()]],
            vec![vec!["ann".to_owned()], vec!["bea".to_owned()]]
        )
    );

    let (code, json) = run(r#"{"username": "ann", "password": "pw"}"#);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(
        users(),
        (
            vec![vec!["bea".to_owned()]],
            vec![vec!["ann".to_owned()], vec!["bea".to_owned()]]
        )
    );
    assert!(prepared_branches("pyusers").is_empty());
}

#[test]
fn js_transfer_commits_aborts_and_an_exception_traps_on_sqlite() {
    let Some(script) = js_guest("examples/js-transfer") else {
        return;
    };
    let sb = TestDir::new();
    let (a, b, participants) = two_accounts(&sb);
    transfer_commits_then_aborts_for_funds(&sb, &script, &participants, (&a, &b));

    // A JavaScript exception that is not an Abort (reading a property of `null`): a bug, so
    // a trap whose error quotes the exception and where it was thrown.
    let (out, json) = sb.run_json(&script, &participants, "null");
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["error"]["kind"], "trap", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("its last error log: uncaught TypeError: "),
        "{message}"
    );
    assert!(message.contains("app.js"), "the stack is quoted: {message}");
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (70, 30));
}

#[test]
fn js_transfer_on_postgres_and_mariadb_commits_aborts_and_traps_with_nothing_prepared() {
    let Some(script) = js_guest("examples/js-transfer") else {
        return;
    };
    let Some((pg, my, participants)) = alice_and_bob_on_servers("wtx_jsxfer") else {
        return;
    };
    let sb = TestDir::new();
    let run = |input: &str| run_as_node(&sb, "jsxfer", &script, &participants, input);
    let balances = || (server_balance(&pg, "alice"), server_balance(&my, "bob"));

    let (code, json) = run(&transfer_input(("a", "alice"), ("b", "bob"), 40));
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(balances(), (60, 140));

    let (code, json) = run(&transfer_input(("a", "alice"), ("b", "bob"), 61));
    assert_eq!(
        (code, &json["error"]["kind"]),
        (Some(1), &"script".into()),
        "{json}"
    );
    assert_eq!(balances(), (60, 140));

    let (code, json) = run("null");
    assert_eq!(
        (code, &json["error"]["kind"]),
        (Some(1), &"trap".into()),
        "{json}"
    );
    assert_eq!(balances(), (60, 140));
    assert!(prepared_branches("jsxfer").is_empty());
}

#[test]
fn bench_runs_the_transfer_in_three_languages_interleaved() {
    let (Some(python), Some(js)) = (
        python_guest("examples/python-transfer"),
        js_guest("examples/js-transfer"),
    ) else {
        return;
    };
    let sb = TestDir::new();
    let (a, b, participants) = two_accounts(&sb);
    let mut command = sb.wasmtx();
    command
        .arg("bench")
        .arg(guest("examples/transfer"))
        .arg("--also")
        .arg(&python)
        .arg("--also")
        .arg(&js)
        .args(["--json", "--concurrency", "1", "--transactions", "10"])
        .args(["--warmup", "1"])
        .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 1)]);
    for p in &participants {
        command.args(["-p", p]);
    }
    let (output, result) = common::json_within(command, Duration::from_secs(120));
    assert!(output.status.success(), "{result}");
    assert_eq!(
        common::variant_names(&result),
        ["wasm", "python-transfer", "js-transfer"],
        "{result}"
    );
    for v in result["variants"].as_array().unwrap() {
        assert_eq!(v["commits"], 10, "{v}");
    }
    let others = result["others_vs_wasm"].as_object().unwrap();
    assert_eq!(
        others.keys().collect::<Vec<_>>(),
        ["js-transfer", "python-transfer"],
        "{result}"
    );
    assert!(
        others.values().all(|r| r.as_f64().unwrap() > 0.0),
        "{result}"
    );
    // Every timed and warm-up transfer of every language moved 1.
    let moved = 3 * (10 + 1);
    assert_eq!(
        (balance(&a, "alice"), balance(&b, "bob")),
        (100 - moved, moved)
    );
}
