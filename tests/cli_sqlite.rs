//! The `wasmtx` CLI on embedded SQLite, end to end: real binary, real components, real
//! files. Each test asserts on what the database files hold afterwards.

mod common;

use std::path::Path;

use common::{TestDir, accounts_db, balance, create_sqlite, guest, sqlite, transfer_input};

const USER_TABLE: &str = "CREATE TABLE user (id INTEGER PRIMARY KEY AUTOINCREMENT, username VARCHAR(255) NOT NULL UNIQUE, \
     password VARCHAR(255) NOT NULL, created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL);";

fn sqlite_arg(name: &str, path: &Path) -> String {
    format!("{name}=sqlite://{}", path.display())
}

fn usernames(path: &Path) -> Vec<String> {
    sqlite(path, "SELECT username FROM user ORDER BY username")
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[test]
fn insert_user_commits_to_every_file_and_a_clash_changes_nothing() {
    let sb = TestDir::new();
    let (a, b) = (sb.path("A.db"), sb.path("B.db"));
    create_sqlite(&a, USER_TABLE);
    create_sqlite(&b, USER_TABLE);
    let script = guest("examples/insert-user");
    let participants = [sqlite_arg("a", &a), sqlite_arg("b", &b)];

    let (out, json) = sb.run_json(
        &script,
        &participants,
        r#"{"username":"alice","password":"s3cret"}"#,
    );
    assert_eq!(json["outcome"], "committed", "{json}");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        json["gid"].as_str().unwrap().starts_with("wtx.local."),
        "{json}"
    );
    for file in [&a, &b] {
        let rows = sqlite(
            file,
            "SELECT username, password, created_at IS NOT NULL, updated_at IS NOT NULL FROM user",
        );
        assert_eq!(rows, [["alice", "s3cret", "1", "1"]], "{}", file.display());
    }

    // B already holds carol: B's insert fails, so A must not get carol either.
    create_sqlite(
        &b,
        "INSERT INTO user (username, password) VALUES ('carol', 'x');",
    );
    let (out, json) = sb.run_json(
        &script,
        &participants,
        r#"{"username":"carol","password":"p"}"#,
    );
    assert_eq!(json["outcome"], "aborted", "{json}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["error"]["kind"], "database", "{json}");
    assert_eq!(usernames(&a), ["alice"]);
    assert_eq!(usernames(&b), ["alice", "carol"]);
    for p in json["participants"].as_array().unwrap() {
        assert_eq!(p["outcome"], "rolled-back", "{json}");
    }
}

#[test]
fn transfer_commits_and_insufficient_funds_aborts_with_nothing_changed() {
    let sb = TestDir::new();
    let (a, b) = (sb.path("a.db"), sb.path("b.db"));
    accounts_db(&a, &[("alice", 100)]);
    accounts_db(&b, &[("bob", 50)]);
    let script = guest("examples/transfer");
    let participants = [sqlite_arg("a", &a), sqlite_arg("b", &b)];

    let (out, json) = sb.run_json(
        &script,
        &participants,
        &transfer_input(("a", "alice"), ("b", "bob"), 30),
    );
    assert_eq!(json["outcome"], "committed", "{json}");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (70, 80));
    let output: serde_json::Value = serde_json::from_str(json["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["from_balance"], 70, "{json}");

    let before = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let (out, json) = sb.run_json(
        &script,
        &participants,
        &transfer_input(("a", "alice"), ("b", "bob"), 71),
    );
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["error"]["kind"], "script");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("insufficient funds"),
        "{json}"
    );
    assert_eq!(
        (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()),
        before,
        "an aborted transfer changed a file"
    );
}

#[test]
fn a_panic_and_an_ignored_database_error_both_roll_back_everything() {
    let sb = TestDir::new();
    let (a, b) = (sb.path("a.db"), sb.path("b.db"));
    accounts_db(&a, &[("alice", 100)]);
    accounts_db(&b, &[("bob", 100)]);
    let script = guest("examples/faulty");
    let participants = [sqlite_arg("a", &a), sqlite_arg("b", &b)];
    let input = |fault: &str| {
        let mut v: serde_json::Value =
            serde_json::from_str(&transfer_input(("a", "alice"), ("b", "bob"), 10)).unwrap();
        v["fault"] = fault.into();
        v.to_string()
    };

    let (out, json) = sb.run_json(&script, &participants, &input("panic"));
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["error"]["kind"], "trap", "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deliberate panic"),
        "{json}"
    );

    let (out, json) = sb.run_json(&script, &participants, &input("bad-sql"));
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["error"]["kind"], "database", "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("participant `b`"),
        "{json}"
    );

    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (100, 100));
}

#[test]
fn a_guest_crate_directory_is_built_and_run() {
    let sb = TestDir::new();
    let (a, b) = (sb.path("a.db"), sb.path("b.db"));
    accounts_db(&a, &[("alice", 10)]);
    accounts_db(&b, &[("bob", 0)]);
    guest("examples/transfer"); // warm the shared build so this test does not build from scratch
    let out = sb
        .wasmtx()
        .env("CARGO_TARGET_DIR", common::repo().join("target/guests"))
        .args(["run"])
        .arg(common::repo().join("examples/transfer"))
        .args(["-p", &sqlite_arg("a", &a), "-p", &sqlite_arg("b", &b)])
        .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 10)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("committed  wtx.local."), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("building"),
        "progress is shown"
    );
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (0, 10));
}

/// Every kind of bad input: exit 2, a message saying what is wrong, no file changed.
#[test]
fn bad_input_is_refused_with_exit_2_and_nothing_written() {
    let sb = TestDir::new();
    let (a, b) = (sb.path("a.db"), sb.path("b.db"));
    accounts_db(&a, &[("alice", 100)]);
    accounts_db(&b, &[("bob", 100)]);
    let transfer = guest("examples/transfer");
    let other_world = guest("tests/guests/other-world");
    let not_wasm = sb.path("notes.wasm");
    std::fs::write(&not_wasm, "this is text").unwrap();
    let core_module = sb.path("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let good_input = transfer_input(("a", "alice"), ("b", "bob"), 1);
    let (pa, pb) = (sqlite_arg("a", &a), sqlite_arg("b", &b));
    let missing_db = format!("b=sqlite://{}", sb.path("missing.db").display());
    let before = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let cases: Vec<(&str, &Path, Vec<String>, &str, &str)> = vec![
        (
            "missing script",
            Path::new("/nonexistent/script.wasm"),
            vec![pa.clone(), pb.clone()],
            &good_input,
            "cannot read script",
        ),
        (
            "not wasm",
            &not_wasm,
            vec![pa.clone(), pb.clone()],
            &good_input,
            "not a WebAssembly file",
        ),
        (
            "core module",
            &core_module,
            vec![pa.clone(), pb.clone()],
            &good_input,
            "core WebAssembly module, not a component",
        ),
        (
            "other world",
            &other_world,
            vec![pa.clone(), pb.clone()],
            &good_input,
            "does not implement the world wasmtx:script/script",
        ),
        (
            "bad URL",
            &transfer,
            vec![pa.clone(), "b=not a url".into()],
            &good_input,
            "not a valid URL",
        ),
        (
            "unknown scheme",
            &transfer,
            vec![pa.clone(), "b=redis://localhost".into()],
            &good_input,
            "unknown URL scheme `redis`",
        ),
        (
            "duplicate name",
            &transfer,
            vec![pa.clone(), pa.clone()],
            &good_input,
            "given twice",
        ),
        (
            "no equals",
            &transfer,
            vec!["a".into()],
            &good_input,
            "NAME=URL",
        ),
        (
            "invalid JSON",
            &transfer,
            vec![pa.clone(), pb.clone()],
            "{not json",
            "not valid JSON",
        ),
        (
            "missing database file",
            &transfer,
            vec![pa.clone(), missing_db],
            &good_input,
            "does not exist",
        ),
        (
            "no participants",
            &transfer,
            vec![],
            &good_input,
            "no participants",
        ),
    ];
    for (case, script, participants, input, expected) in cases {
        let (out, json) = sb.run_json(script, &participants, input);
        assert_eq!(out.status.code(), Some(2), "{case}: {json}");
        assert_eq!(json["error"]["kind"], "input", "{case}: {json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{case}: expected `{expected}` in `{message}`"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{case}: the message also goes to stderr"
        );
    }
    assert!(
        !sb.path("missing.db").exists(),
        "a missing database file must not be created"
    );
    assert_eq!(
        (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()),
        before,
        "bad input changed a file"
    );
}

#[test]
fn inspect_describes_a_script_and_its_cache_state() {
    let sb = TestDir::new();
    let script = guest("examples/transfer");
    let cache = sb.path("cache");
    let inspect = || {
        let out = sb
            .wasmtx()
            .env("WASMTX_CACHE_DIR", &cache)
            .arg("inspect")
            .arg(&script)
            .arg("--json")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = inspect();
    assert_eq!(first["implements_world"], true, "{first}");
    let imports: Vec<&str> = first["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(imports.contains(&"wasmtx:script/sql@0.1.0"), "{imports:?}");
    assert!(
        first["compiled_cache"]
            .as_str()
            .unwrap()
            .starts_with("compiled now"),
        "{first}"
    );
    assert_eq!(
        inspect()["compiled_cache"],
        "cached",
        "the second look finds the compiled component"
    );

    let out = sb
        .wasmtx()
        .arg("inspect")
        .arg(guest("tests/guests/other-world"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does NOT implement"));
}

#[test]
fn the_demo_runs_on_a_fresh_directory_and_conserves_the_total() {
    let sb = TestDir::new();
    guest("examples/transfer");
    guest("examples/faulty");
    let out = sb
        .wasmtx()
        .env("CARGO_TARGET_DIR", common::repo().join("target/guests"))
        .arg("demo")
        .args(["--dir"])
        .arg(sb.path("demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("conserved ✓").count(), 4, "{stdout}");
    assert!(stdout.contains("insufficient funds"), "{stdout}");
    assert!(stdout.contains("panicked"), "{stdout}");
    // What the scripts printed and logged is shown in the step that ran them, not logged.
    let steps: Vec<&str> = stdout.split("── step ").collect();
    let step = |n: usize| steps[n];
    assert!(
        step(3).contains("script │ stderr: faulty script: deliberate panic"),
        "{stdout}"
    );
    assert!(
        step(4).contains("script │ log warn: faulty script: ignoring a failed credit"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("faulty script"), "{stderr}");
    assert_eq!(balance(&sb.path("demo/bank_a.db"), "alice"), 70);
    assert_eq!(balance(&sb.path("demo/bank_b.db"), "bob"), 130);
}
