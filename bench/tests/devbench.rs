//! The developer benchmark end to end, on real PostgreSQL and MariaDB servers: every variant
//! runs to its count and moves exactly what it should, the bare-connection variants commit
//! through a last agent and refuse SQLite, and durable writes are counted per variant.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::{
    TestDir, as_last_agent, create_user_table, decision_rows, guest, mysql_db, postgres_db,
    prepared_branches, run_json, server_accounts, server_balance, server_usernames, transfer_input,
};

/// `wasmtx-devbench` with a node id of its own, so parallel tests never see each other's
/// branches.
fn devbench(sb: &TestDir, node: &str) -> Command {
    let mut command = sb.command(env!("CARGO_BIN_EXE_wasmtx-devbench"));
    command.env("WASMTX_NODE", node);
    command
}

#[test]
fn bench_runs_every_variant_to_the_count_and_conserves_the_total() {
    let (Some(pg), Some(my)) = (postgres_db("wtx_benchcmd"), mysql_db("wtx_benchcmd")) else {
        return;
    };
    server_accounts(&pg, &[("alice", 1_000_000)]);
    server_accounts(&my, &[("bob", 1_000_000)]);
    let sb = TestDir::new();
    let mut command = devbench(&sb, "benchcmd");
    command
        .arg(guest("examples/transfer"))
        .args(["--json", "--concurrency", "3", "--transactions", "40"])
        .args(["--warmup", "2", "--compare", "native", "--compare", "plain"])
        .args(["--compare", "raw"])
        .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 1)])
        .args(["-p", &format!("a={pg}"), "-p", &format!("b={my}")]);
    let (output, result) = run_json(command);
    assert!(output.status.success(), "{result}");

    let variants = result["variants"].as_array().unwrap();
    assert_eq!(
        common::variant_names(&result),
        ["wasm", "native", "plain", "raw-2pc", "raw-plain"],
        "{result}"
    );
    for v in variants {
        assert_eq!(v["transactions"], 40, "{v}");
        assert_eq!(v["commits"], 40, "{v}");
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["tx_per_sec"].as_f64().unwrap() > 0.0, "{v}");
        assert!(
            v["p50_ms"].as_f64().unwrap() <= v["p99_ms"].as_f64().unwrap(),
            "{v}"
        );
        assert!(v["host_cpu_us_per_tx"].as_f64().unwrap() > 0.0, "{v}");
        let busy = v["machine_busy_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&busy), "{v}");
        // Every statement is a round trip to a database process on this machine.
        assert!(v["machine_switches_per_tx"].as_f64().unwrap() > 0.0, "{v}");
    }
    for ratio in [
        "wasm_vs_native",
        "two_phase_vs_plain",
        "two_phase_native_vs_plain",
        "raw_two_phase_vs_plain",
        "native_vs_raw",
    ] {
        assert!(result[ratio].as_f64().unwrap() > 0.0, "{ratio}: {result}");
    }
    // Every timed and warm-up transfer of every variant moved 1 and committed on both sides.
    let moved = 5 * (40 + 2);
    assert_eq!(server_balance(&pg, "alice"), 1_000_000 - moved);
    assert_eq!(server_balance(&my, "bob"), 1_000_000 + moved);
    assert!(prepared_branches("benchcmd").is_empty());
}

#[test]
fn bench_raw_variants_commit_through_a_last_agent_and_leave_nothing_behind() {
    let (Some(pg), Some(my)) = (postgres_db("wtx_benchraw"), mysql_db("wtx_benchraw")) else {
        return;
    };
    server_accounts(&pg, &[("alice", 1_000_000)]);
    server_accounts(&my, &[("bob", 1_000_000)]);
    let sb = TestDir::new();
    let mut command = devbench(&sb, "benchraw");
    command
        .arg(guest("examples/transfer"))
        .args(["--json", "--concurrency", "2", "--transactions", "30"])
        .args(["--warmup", "2", "--compare", "raw"])
        .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 2)])
        .args([
            "-p",
            &format!("a={}", as_last_agent(&pg)),
            "-p",
            &format!("b={my}"),
        ]);
    let (output, result) = run_json(command);
    assert!(output.status.success(), "{result}");
    let variants = result["variants"].as_array().unwrap();
    for v in variants {
        assert_eq!(v["commits"], 30, "{v}");
        assert_eq!(v["errors"], 0, "{v}");
    }
    assert!(result["raw_two_phase_vs_plain"].as_f64().unwrap() > 0.0);
    let moved = 2 * 3 * (30 + 2);
    assert_eq!(server_balance(&pg, "alice"), 1_000_000 - moved);
    assert_eq!(server_balance(&my, "bob"), 1_000_000 + moved);
    assert!(prepared_branches("benchraw").is_empty());
    // The raw variant's decisions were the last agent's rows, under this node's gids: what
    // is not yet pruned is COMMIT, and `wasmtx recover` prunes it once it has expired.
    let rows = decision_rows(&pg, "benchraw");
    assert!(rows.iter().all(|row| row[1] == "C"), "{rows:?}");
}

#[test]
fn bench_raw_refuses_an_sqlite_side() {
    let sb = TestDir::new();
    let sqlite = |name: &str| format!("{name}=sqlite://{}?mode=rwc", sb.path(name).display());
    let output = devbench(&sb, "benchrawsqlite")
        .arg(guest("examples/transfer"))
        .args(["--transactions", "1", "--compare", "raw"])
        .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 1)])
        .args(["-p", &sqlite("a"), "-p", &sqlite("b")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--compare raw needs PostgreSQL or MySQL/MariaDB participants"),
        "{stderr}"
    );
}

#[test]
fn bench_of_insert_user_compares_plain_commits_and_counts_durable_writes() {
    let (Some(a), Some(b)) = (mysql_db("wtx_benchuser_a"), mysql_db("wtx_benchuser_b")) else {
        return;
    };
    create_user_table(&a);
    create_user_table(&b);
    let sb = TestDir::new();
    let mut command = devbench(&sb, "benchuser");
    command
        .arg(guest("examples/insert-user"))
        .args(["--json", "--concurrency", "2", "--transactions", "20"])
        .args(["--warmup", "2", "--compare", "native", "--compare", "plain"])
        .args(["--durable-writes", "--durable-sample", "10"])
        .args([
            "--input",
            r#"{"username":"u-{worker}-{seq}","password":"pw"}"#,
        ])
        .args([
            "-p",
            &format!("a={}", as_last_agent(&a)),
            "-p",
            &format!("b={b}"),
        ]);
    let (output, result) = run_json(command);
    assert!(output.status.success(), "{result}");
    for v in result["variants"].as_array().unwrap() {
        assert_eq!(v["commits"], 20, "{v}");
        let durable = &v["durable_writes"];
        assert_eq!(durable["transactions"], 10, "{v}");
        // Both databases are on one server: at least one InnoDB log write per unit.
        assert!(durable["innodb_log_writes"].as_f64().unwrap() >= 1.0, "{v}");
        assert_eq!(durable["postgres_wal_flushes"], 0.0, "{v}");
        assert_eq!(
            durable["host_fsyncs"], 0.0,
            "a last agent needs no decision log: {v}"
        );
    }
    // Every unit of every variant (timed, warm-up, counted) put the user on both sides.
    let rows = 3 * (20 + 2 + 10);
    for url in [&a, &b] {
        assert_eq!(server_usernames(url).len(), rows, "{url}");
    }
    assert!(prepared_branches("benchuser").is_empty());
}
