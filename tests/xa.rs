//! Two-phase commit on real PostgreSQL and MariaDB servers, through the real CLI: the
//! original insert-user scenario, transactions spanning three kinds of database, faults at
//! the edges, and crashes at every protocol step followed by `wasmtx recover`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{
    TestDir, create_sqlite, guest, mysql_db, postgres_db, prepared_branches, server_accounts,
    server_balance, server_sql, sqlite, transfer_input,
};

/// The `user` table of the original scenario, per server.
fn create_user_table(url: &str) {
    let ddl = if url.starts_with("postgres") {
        "CREATE TABLE \"user\" (id BIGSERIAL PRIMARY KEY, username VARCHAR(255) NOT NULL, password VARCHAR(255) NOT NULL, \
         created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL)"
    } else {
        "CREATE TABLE `user` (id BIGINT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(255) NOT NULL, password VARCHAR(255) NOT NULL, \
         created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL) ENGINE=InnoDB"
    };
    server_sql(url, ddl);
}

fn server_usernames(url: &str) -> Vec<String> {
    let table = if url.starts_with("postgres") {
        "\"user\""
    } else {
        "`user`"
    };
    server_sql(
        url,
        &format!("SELECT username FROM {table} ORDER BY username"),
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

/// `wasmtx` with a node id of its own, so parallel tests never see each other's branches.
fn wasmtx(sb: &TestDir, node: &str) -> Command {
    let mut command = sb.wasmtx();
    command.env("WASMTX_NODE", node);
    command
}

fn run_json(mut command: Command) -> (Output, serde_json::Value) {
    let output = command.output().expect("running wasmtx");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, json)
}

fn run_command(
    sb: &TestDir,
    node: &str,
    script: &Path,
    participants: &[&str],
    input: &str,
) -> Command {
    let mut command = wasmtx(sb, node);
    command
        .arg("run")
        .arg(script)
        .arg("--json")
        .args(["--input", input]);
    for p in participants {
        command.args(["-p", p]);
    }
    command
}

fn recover(sb: &TestDir, node: &str, participants: &[&str]) -> (Output, serde_json::Value) {
    let mut command = wasmtx(sb, node);
    command.args(["recover", "--json"]);
    for p in participants {
        command.args(["-p", p]);
    }
    run_json(command)
}

#[test]
fn insert_user_on_mariadb_test1_and_test2_is_all_or_nothing() {
    // The scenario's own databases, test1 and test2 (scripts/setup-databases.sh creates
    // them); the probe only checks that the server is there.
    if mysql_db("wtx_users").is_none() {
        return;
    }
    let (t1, t2) = (
        "mysql://root@127.0.0.1:3306/test1",
        "mysql://root@127.0.0.1:3306/test2",
    );
    for url in [t1, t2] {
        server_sql(url, "DROP TABLE IF EXISTS `user`");
        create_user_table(url);
    }
    let sb = TestDir::new();
    let script = guest("examples/insert-user");
    let participants = [&format!("a={t1}")[..], &format!("b={t2}")[..]];

    let (out, json) = run_json(run_command(
        &sb,
        "users",
        &script,
        &participants,
        r#"{"username":"alice","password":"pw"}"#,
    ));
    assert_eq!(json["outcome"], "committed", "{json}");
    assert_eq!(out.status.code(), Some(0));
    for url in [t1, t2] {
        let rows = server_sql(
            url,
            "SELECT username, password, created_at IS NOT NULL FROM `user`",
        );
        assert_eq!(rows, [["alice", "pw", "1"]], "{url}");
    }

    // test2 already holds carol under a unique index: neither database may get the new row.
    server_sql(t2, "CREATE UNIQUE INDEX user_username ON `user` (username)");
    server_sql(
        t2,
        "INSERT INTO `user` (username, password) VALUES ('carol', 'x')",
    );
    let (out, json) = run_json(run_command(
        &sb,
        "users",
        &script,
        &participants,
        r#"{"username":"carol","password":"p"}"#,
    ));
    assert_eq!(json["outcome"], "aborted", "{json}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["error"]["kind"], "database", "{json}");
    assert_eq!(server_usernames(t1), ["alice"]);
    assert_eq!(server_usernames(t2), ["alice", "carol"]);
    assert!(prepared_branches("users").is_empty());
}

#[test]
fn one_transaction_spans_postgres_mariadb_and_sqlite() {
    let (Some(pg), Some(my)) = (postgres_db("wtx_span"), mysql_db("wtx_span")) else {
        return;
    };
    create_user_table(&pg);
    create_user_table(&my);
    let sb = TestDir::new();
    let lite = sb.path("c.db");
    create_sqlite(
        &lite,
        "CREATE TABLE user (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, password TEXT NOT NULL, created_at TIMESTAMP, updated_at TIMESTAMP);",
    );
    let script = guest("examples/insert-user");
    let participants = [
        &format!("a={pg}")[..],
        &format!("b={my}")[..],
        &format!("c=sqlite://{}", lite.display())[..],
    ];

    let (_, json) = run_json(run_command(
        &sb,
        "span",
        &script,
        &participants,
        r#"{"username":"dora","password":"pw"}"#,
    ));
    assert_eq!(json["outcome"], "committed", "{json}");
    assert_eq!(server_usernames(&pg), ["dora"]);
    assert_eq!(server_usernames(&my), ["dora"]);
    assert_eq!(sqlite(&lite, "SELECT username FROM user"), [["dora"]]);

    // The SQLite side refuses a duplicate: the server sides must not keep theirs.
    create_sqlite(
        &lite,
        "INSERT INTO user (username, password) VALUES ('erin', 'x');",
    );
    let (_, json) = run_json(run_command(
        &sb,
        "span",
        &script,
        &participants,
        r#"{"username":"erin","password":"pw"}"#,
    ));
    assert_eq!(json["outcome"], "aborted", "{json}");
    assert_eq!(server_usernames(&pg), ["dora"]);
    assert_eq!(server_usernames(&my), ["dora"]);
    assert!(prepared_branches("span").is_empty());
}

#[test]
fn transfer_between_postgres_and_mariadb_commits_or_changes_nothing() {
    let (Some(pg), Some(my)) = (postgres_db("wtx_xfer"), mysql_db("wtx_xfer")) else {
        return;
    };
    server_accounts(&pg, &[("alice", 100)]);
    server_accounts(&my, &[("bob", 100)]);
    let sb = TestDir::new();
    let script = guest("examples/transfer");
    let participants = [&format!("a={pg}")[..], &format!("b={my}")[..]];

    let (out, json) = run_json(run_command(
        &sb,
        "xfer",
        &script,
        &participants,
        &transfer_input(("a", "alice"), ("b", "bob"), 40),
    ));
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (60, 140)
    );

    let (out, json) = run_json(run_command(
        &sb,
        "xfer",
        &script,
        &participants,
        &transfer_input(("a", "alice"), ("b", "bob"), 61),
    ));
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["error"]["kind"], "script");
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (60, 140)
    );
    assert!(prepared_branches("xfer").is_empty());
}

#[test]
fn an_unreachable_participant_at_begin_prepares_nothing_and_is_named() {
    let Some(pg) = postgres_db("wtx_unreachable") else {
        return;
    };
    server_accounts(&pg, &[("alice", 100)]);
    let sb = TestDir::new();
    let script = guest("examples/transfer");
    let participants = [&format!("a={pg}")[..], "b=mysql://root@127.0.0.1:1/nowhere"];
    let (out, json) = run_json(run_command(
        &sb,
        "unreachable",
        &script,
        &participants,
        &transfer_input(("a", "alice"), ("b", "bob"), 1),
    ));
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["error"]["kind"], "participant", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("participant `b`"), "{message}");
    assert_eq!(server_balance(&pg, "alice"), 100);
    assert!(prepared_branches("unreachable").is_empty());
}

fn fault_injection_built() -> bool {
    if cfg!(feature = "fault-injection") {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "crash tests need the fault-injection feature under CI (scripts/test.sh enables it)"
    );
    eprintln!("skipping: built without the fault-injection feature (scripts/test.sh enables it)");
    false
}

#[test]
fn a_connection_killed_between_prepare_and_commit_still_commits() {
    if !fault_injection_built() {
        return;
    }
    let (Some(pg), Some(my)) = (postgres_db("wtx_killconn"), mysql_db("wtx_killconn")) else {
        return;
    };
    server_accounts(&pg, &[("alice", 100)]);
    server_accounts(&my, &[("bob", 100)]);
    let sb = TestDir::new();
    let script = guest("examples/transfer");
    let participants = [&format!("a={pg}")[..], &format!("b={my}")[..]];
    let mut command = run_command(
        &sb,
        "killconn",
        &script,
        &participants,
        &transfer_input(("a", "alice"), ("b", "bob"), 25),
    );
    command
        .env("WASMTX_FAULT_PAUSE", "after-decision:3000")
        .stderr(Stdio::null());
    let child = command.stdout(Stdio::piped()).spawn().unwrap();

    // While the host pauses after its decision, kill both branches' server sessions.
    std::thread::sleep(Duration::from_millis(1500));
    server_sql(
        "postgres://postgres@127.0.0.1:5432/postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'wtx_killconn'",
    );
    for id in server_sql(
        "mysql://root@127.0.0.1:3306/",
        "SELECT id FROM information_schema.processlist WHERE db = 'wtx_killconn'",
    ) {
        server_sql(
            "mysql://root@127.0.0.1:3306/",
            &format!("KILL CONNECTION {}", id[0]),
        );
    }

    let output = child.wait_with_output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["outcome"], "committed", "{json}");
    let notes: Vec<&str> = json["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["note"].as_str())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("pending") && n.contains("new connection")),
        "notes say how: {notes:?}"
    );
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (75, 125)
    );
    assert!(prepared_branches("killconn").is_empty());
}

/// Every protocol step a crash can hit, and whether the transfer must end up applied.
const CRASH_POINTS: [(&str, bool); 7] = [
    ("after-begin", false),
    ("after-script", false),
    ("after-prepare-0", false),
    ("after-prepare-1", false),
    ("after-decision", true),
    ("after-commit-0", true),
    ("after-commit-1", true),
];

/// How long recovery waits before presuming an undecided transaction aborted: the
/// transactions here have a 1 s deadline, and recovery adds a 5 s margin.
const PAST_DEADLINE: Duration = Duration::from_millis(6_500);

#[test]
fn a_crash_at_every_protocol_step_is_resolved_by_recover() {
    let script = guest("examples/transfer");
    let setup = |pg: &str, my: &str| {
        server_accounts(pg, &[("alice", 100)]);
        server_accounts(my, &[("bob", 100)]);
    };
    for_each_crash_point("crash", setup, |node, point, applied, pg, my| {
        let sb = TestDir::new();
        let participants = [&format!("a={pg}")[..], &format!("b={my}")[..]];
        let input = transfer_input(("a", "alice"), ("b", "bob"), 30);
        let report = crash_then_recover(&sb, node, point, &script, &participants, &input);
        let (alice, bob) = (server_balance(pg, "alice"), server_balance(my, "bob"));
        assert_eq!(alice + bob, 200, "{point}: total changed");
        let expected = if applied { (70, 130) } else { (100, 100) };
        assert_eq!((alice, bob), expected, "{point}: {report}");
    });
}

/// The same crash points with an SQLite participant as well: the SQLite group commits
/// last, with the decision inside it, and recovery must find that decision there.
#[test]
fn a_crash_with_sqlite_as_the_last_resource_is_resolved_by_recover() {
    let script = guest("examples/insert-user");
    let setup = |pg: &str, my: &str| {
        create_user_table(pg);
        create_user_table(my);
    };
    for_each_crash_point("lr", setup, |node, point, applied, pg, my| {
        let sb = TestDir::new();
        let lite = sb.path("c.db");
        create_sqlite(
            &lite,
            "CREATE TABLE user (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, password TEXT NOT NULL, created_at TIMESTAMP, updated_at TIMESTAMP);",
        );
        let sqlite_arg = format!("c=sqlite://{}", lite.display());
        let participants = [
            &format!("a={pg}")[..],
            &format!("b={my}")[..],
            &sqlite_arg[..],
        ];
        let input = r#"{"username":"ann","password":"pw"}"#;
        let report = crash_then_recover(&sb, node, point, &script, &participants, input);
        let sqlite_names: Vec<String> = sqlite(&lite, "SELECT username FROM user")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let expected: Vec<String> = if applied { vec!["ann".into()] } else { vec![] };
        assert_eq!(
            server_usernames(pg),
            expected,
            "{point}: PostgreSQL: {report}"
        );
        assert_eq!(server_usernames(my), expected, "{point}: MariaDB: {report}");
        assert_eq!(sqlite_names, expected, "{point}: SQLite: {report}");
    });
}

/// Runs `check(node, point, applied, postgres_url, mysql_url)` for every crash point, all
/// in parallel, each with its own node `<prefix><k>` and fresh databases `wtx_<prefix><k>`
/// on both servers, prepared by `setup`. Skips (or, under CI, fails) like the servers do.
fn for_each_crash_point(
    prefix: &str,
    setup: impl Fn(&str, &str),
    check: impl Fn(&str, &str, bool, &str, &str) + Sync,
) {
    if !fault_injection_built() {
        return;
    }
    let cases: Vec<_> = CRASH_POINTS
        .iter()
        .enumerate()
        .filter_map(|(k, &(point, applied))| {
            let db = format!("wtx_{prefix}{k}");
            let (pg, my) = (postgres_db(&db)?, mysql_db(&db)?);
            setup(&pg, &my);
            Some((format!("{prefix}{k}"), point, applied, pg, my))
        })
        .collect();
    if cases.len() < CRASH_POINTS.len() {
        return;
    }
    std::thread::scope(|scope| {
        for (node, point, applied, pg, my) in &cases {
            let check = &check;
            scope.spawn(move || check(node, point, *applied, pg, my));
        }
    });
}

/// Runs `script` with the host set to crash at `point`, waits until the transaction's
/// deadline has passed, runs `wasmtx recover`, and checks that it succeeded and left no
/// prepared branch of `node`. Returns recovery's report.
fn crash_then_recover(
    sb: &TestDir,
    node: &str,
    point: &str,
    script: &Path,
    participants: &[&str],
    input: &str,
) -> serde_json::Value {
    let mut command = run_command(sb, node, script, participants, input);
    command
        .args(["--timeout", "1"])
        .env("WASMTX_FAULT", point)
        .stderr(Stdio::null());
    let status = command.status().unwrap();
    assert_eq!(
        status.code(),
        Some(86),
        "{point}: the host should have crashed there"
    );

    std::thread::sleep(PAST_DEADLINE);
    let (out, report) = recover(sb, node, participants);
    assert_eq!(out.status.code(), Some(0), "{point}: {report}");
    assert!(
        prepared_branches(node).is_empty(),
        "{point}: branches left after recover: {report}"
    );
    report
}

#[test]
fn bench_runs_every_variant_to_the_count_and_conserves_the_total() {
    let (Some(pg), Some(my)) = (postgres_db("wtx_benchcmd"), mysql_db("wtx_benchcmd")) else {
        return;
    };
    server_accounts(&pg, &[("alice", 1_000_000)]);
    server_accounts(&my, &[("bob", 1_000_000)]);
    let sb = TestDir::new();
    let mut command = wasmtx(&sb, "benchcmd");
    command
        .arg("bench")
        .arg(guest("examples/transfer"))
        .args(["--json", "--concurrency", "3", "--transactions", "40"])
        .args(["--warmup", "2", "--compare", "native", "--compare", "plain"])
        .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 1)])
        .args(["-p", &format!("a={pg}"), "-p", &format!("b={my}")]);
    let (output, result) = run_json(command);
    assert!(output.status.success(), "{result}");

    let variants = result["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wasm", "native", "plain"], "{result}");
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
    ] {
        assert!(result[ratio].as_f64().unwrap() > 0.0, "{ratio}: {result}");
    }
    // Every timed and warm-up transfer moved 1 and committed on both sides.
    let moved = 3 * (40 + 2);
    assert_eq!(server_balance(&pg, "alice"), 1_000_000 - moved);
    assert_eq!(server_balance(&my, "bob"), 1_000_000 + moved);
    assert!(prepared_branches("benchcmd").is_empty());
}

#[test]
fn sigkill_during_a_stream_of_transfers_then_recover_conserves_the_total() {
    let (Some(pg), Some(my)) = (postgres_db("wtx_stream"), mysql_db("wtx_stream")) else {
        return;
    };
    server_accounts(&pg, &[("alice", 1_000_000)]);
    server_accounts(&my, &[("bob", 1_000_000)]);
    let sb = TestDir::new();
    let script = guest("examples/transfer");
    let participants = [&format!("a={pg}")[..], &format!("b={my}")[..]];

    // A stream of concurrent transfers (`wasmtx bench`), killed at a random moment, five
    // times; many transactions are in flight at each kill, some of them prepared.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    for _ in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut command = wasmtx(&sb, "stream");
        command
            .arg("bench")
            .arg(&script)
            .args([
                "--json",
                "--concurrency",
                "4",
                "--duration",
                "60",
                "--warmup",
                "1",
                "--timeout",
                "1",
            ])
            .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 1)])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for p in participants {
            command.args(["-p", p]);
        }
        let mut child = command.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(800 + seed % 1500));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let in_doubt = prepared_branches("stream").len();
    std::thread::sleep(PAST_DEADLINE);
    let (out, report) = recover(&sb, "stream", &participants);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(prepared_branches("stream").is_empty(), "{report}");
    let (alice, bob) = (server_balance(&pg, "alice"), server_balance(&my, "bob"));
    assert_eq!(alice + bob, 2_000_000, "total changed: {report}");
    println!(
        "{} transfers committed; {in_doubt} branches were prepared after the kills; recovery: {report}",
        1_000_000 - alice
    );
}
