//! Two-phase commit on real PostgreSQL and MariaDB servers, through the real CLI: the
//! original insert-user scenario, transactions spanning three kinds of database, faults at
//! the edges, crashes at every protocol step followed by `wasmtx recover`, and the same for a
//! last agent (a server committed last in one phase, with the decision row inside it).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    TestDir, as_last_agent, create_sqlite, create_user_table, decision_rows, fault_injection_built,
    guest, mysql_db, node_of, postgres_db, prepared_branches, run_json, server_accounts,
    server_balance, server_sql, server_usernames, sqlite, transfer_input, wasmtx,
};

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
    recover_with(sb, node, participants, &[])
}

/// `wasmtx recover --json` with `envs` set.
fn recover_with(
    sb: &TestDir,
    node: &str,
    participants: &[&str],
    envs: &[(&str, &str)],
) -> (Output, serde_json::Value) {
    let mut command = wasmtx(sb, node);
    command
        .args(["recover", "--json"])
        .envs(envs.iter().copied());
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
    let waiting = std::time::Instant::now();
    while prepared_branches("killconn").len() < 2 {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "the host never held both branches prepared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// The transfer crashed at every point of [`CRASH_POINTS`] under `prefix`'s nodes, `envs`
/// set for the run and the recovery: after recovery both sides moved or neither did. Then
/// `after(node, point, applied)` checks what else it must.
fn crash_transfer_at_every_point(
    prefix: &str,
    envs: &[(&str, &str)],
    after: impl Fn(&str, &str, bool) + Sync,
) {
    let script = guest("examples/transfer");
    let setup = |pg: &str, my: &str| {
        server_accounts(pg, &[("alice", 100)]);
        server_accounts(my, &[("bob", 100)]);
    };
    for_each_crash_point(
        prefix,
        &CRASH_POINTS,
        setup,
        |node, point, applied, pg, my| {
            let sb = TestDir::new();
            let participants = [&format!("a={pg}")[..], &format!("b={my}")[..]];
            let input = transfer_input(("a", "alice"), ("b", "bob"), 30);
            let report =
                crash_then_recover_with(&sb, node, point, &script, &participants, &input, envs);
            let (alice, bob) = (server_balance(pg, "alice"), server_balance(my, "bob"));
            assert_eq!(alice + bob, 200, "{point}: total changed");
            let expected = if applied { (70, 130) } else { (100, 100) };
            assert_eq!((alice, bob), expected, "{point}: {report}");
            after(node, point, applied);
        },
    );
}

#[test]
fn a_crash_at_every_protocol_step_is_resolved_by_recover() {
    crash_transfer_at_every_point("crash", &[], |_, _, _| {});
}

/// The same crash points with the decision log in PostgreSQL (a cluster's shared store):
/// `run` and `recover` both name it, and recovery reads (and writes ABORT to) its table.
#[test]
fn a_crash_at_every_protocol_step_with_the_postgres_decision_log_is_resolved_by_recover() {
    let Some(log) = postgres_db("wtx_crash_shared_log") else {
        return;
    };
    crash_transfer_at_every_point(
        "pgcrash",
        &[("WASMTX_DECISION_LOG", &log)],
        |node, point, applied| {
            let decided = server_sql(
                &log,
                &format!(
                    "SELECT outcome::text, (done_at IS NOT NULL)::text FROM wasmtx.decision WHERE node_id = '{node}'"
                ),
            );
            if applied {
                assert_eq!(
                    decided,
                    [["1", "true"]],
                    "{point}: COMMIT recorded, then DONE"
                );
            } else {
                assert!(
                    decided.iter().all(|row| row[0] == "2"),
                    "{point}: no COMMIT, at most recovery's ABORT: {decided:?}"
                );
            }
        },
    );
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
    for_each_crash_point(
        "lr",
        &CRASH_POINTS,
        setup,
        |node, point, applied, pg, my| {
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
        },
    );
}

/// Runs `check(node, point, applied, postgres_url, mysql_url)` for every one of `points`, all
/// in parallel, each with its own node `<prefix><k>` and fresh databases `wtx_<prefix><k>`
/// on both servers, prepared by `setup`. Skips (or, under CI, fails) like the servers do.
fn for_each_crash_point(
    prefix: &str,
    points: &[(&'static str, bool)],
    setup: impl Fn(&str, &str),
    check: impl Fn(&str, &str, bool, &str, &str) + Sync,
) {
    if !fault_injection_built() {
        return;
    }
    let cases: Vec<_> = points
        .iter()
        .enumerate()
        .filter_map(|(k, &(point, applied))| {
            let db = format!("wtx_{prefix}{k}");
            let (pg, my) = (postgres_db(&db)?, mysql_db(&db)?);
            setup(&pg, &my);
            Some((format!("{prefix}{k}"), point, applied, pg, my))
        })
        .collect();
    if cases.len() < points.len() {
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
    crash_then_recover_with(sb, node, point, script, participants, input, &[])
}

/// [`crash_then_recover`] with `envs` set for both the crashing run and the recovery.
fn crash_then_recover_with(
    sb: &TestDir,
    node: &str,
    point: &str,
    script: &Path,
    participants: &[&str],
    input: &str,
    envs: &[(&str, &str)],
) -> serde_json::Value {
    let mut command = run_command(sb, node, script, participants, input);
    command
        .args(["--timeout", "1"])
        .env("WASMTX_FAULT", point)
        .envs(envs.iter().copied())
        .stderr(Stdio::null());
    let status = command.status().unwrap();
    assert_eq!(
        status.code(),
        Some(86),
        "{point}: the host should have crashed there"
    );

    std::thread::sleep(PAST_DEADLINE);
    let (out, report) = recover_with(sb, node, participants, envs);
    assert_eq!(out.status.code(), Some(0), "{point}: {report}");
    assert!(
        prepared_branches(node).is_empty(),
        "{point}: branches left after recover: {report}"
    );
    report
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
        // Each transaction holds a while after its branches are prepared (with the
        // fault-injection build), so a kill surely leaves some in doubt.
        if cfg!(feature = "fault-injection") {
            command.env("WASMTX_FAULT_PAUSE", "after-prepare-1:200");
        }
        let mut child = command.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(800 + seed % 1500));
        child.kill().unwrap();
        child.wait().unwrap();
        if cfg!(feature = "fault-injection") {
            assert!(
                !prepared_branches("stream").is_empty(),
                "the kill left a branch prepared"
            );
        }
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

// ---- the last agent ---------------------------------------------------------------------

/// The two ways round: PostgreSQL as the last agent, and MariaDB.
const LAST_AGENTS: [&str; 2] = ["a", "b"];

/// Transfer participants `a` (PostgreSQL) and `b` (MariaDB), with `agent` marked last
/// agent; also returns the agent's plain URL.
fn last_agent_participants(agent: &str, pg: &str, my: &str) -> ([String; 2], String) {
    let mark = |name: &str, url: &str| {
        if name == agent {
            format!("{name}={}", as_last_agent(url))
        } else {
            format!("{name}={url}")
        }
    };
    let agent_url = if agent == "a" { pg } else { my };
    ([mark("a", pg), mark("b", my)], agent_url.to_owned())
}

/// A transfer of alice's (on `a`, PostgreSQL) to bob (on `b`, MariaDB), 100 each, with
/// `agent` as the last agent, in fresh databases `db` of node `node_of(db)`.
struct LastAgentCase {
    pg: String,
    my: String,
    node: String,
    sb: TestDir,
    script: std::path::PathBuf,
    participants: [String; 2],
    agent_url: String,
}

impl LastAgentCase {
    /// `None` when the servers cannot be reached (outside CI).
    fn new(db: &str, agent: &str) -> Option<Self> {
        let (pg, my) = (postgres_db(db)?, mysql_db(db)?);
        server_accounts(&pg, &[("alice", 100)]);
        server_accounts(&my, &[("bob", 100)]);
        let (participants, agent_url) = last_agent_participants(agent, &pg, &my);
        Some(LastAgentCase {
            node: node_of(db),
            sb: TestDir::new(),
            script: guest("examples/transfer"),
            participants,
            agent_url,
            pg,
            my,
        })
    }

    /// `wasmtx run` of a transfer of `amount`.
    fn transfer(&self, amount: i64) -> Command {
        let participants: Vec<&str> = self.participants.iter().map(String::as_str).collect();
        run_command(
            &self.sb,
            &self.node,
            &self.script,
            &participants,
            &transfer_input(("a", "alice"), ("b", "bob"), amount),
        )
    }

    /// (alice, bob).
    fn balances(&self) -> (i64, i64) {
        (
            server_balance(&self.pg, "alice"),
            server_balance(&self.my, "bob"),
        )
    }

    fn decision_rows(&self) -> Vec<Vec<String>> {
        decision_rows(&self.agent_url, &self.node)
    }
}

#[test]
fn a_last_agent_commits_with_its_decision_row_and_aborts_cleanly() {
    for agent in LAST_AGENTS {
        let Some(case) = LastAgentCase::new(&format!("wtx_la_{agent}"), agent) else {
            return;
        };
        let (out, json) = run_json(case.transfer(40));
        assert_eq!(out.status.code(), Some(0), "{agent}: {json}");
        assert_eq!(case.balances(), (60, 140), "{agent}");
        let gid = json["gid"].as_str().unwrap();
        assert_eq!(
            case.decision_rows(),
            [[gid, "C"]],
            "{agent}: the commit is the decision row"
        );

        // The script votes abort (61 > 60): nothing changes, no decision row.
        let (out, json) = run_json(case.transfer(61));
        assert_eq!(out.status.code(), Some(1), "{agent}: {json}");
        assert_eq!(json["error"]["kind"], "script", "{agent}: {json}");
        assert_eq!(case.balances(), (60, 140), "{agent}");
        assert_eq!(case.decision_rows().len(), 1, "{agent}");
        assert!(prepared_branches(&case.node).is_empty(), "{agent}");
    }
}

#[test]
fn two_last_agents_or_one_next_to_sqlite_are_refused() {
    let (Some(pg), Some(my)) = (postgres_db("wtx_la_two"), mysql_db("wtx_la_two")) else {
        return;
    };
    let sb = TestDir::new();
    let script = guest("examples/transfer");
    let lite = sb.path("c.db");
    create_sqlite(&lite, "CREATE TABLE t (x INTEGER);");
    let cases = [
        vec![
            format!("a={}", as_last_agent(&pg)),
            format!("b={}", as_last_agent(&my)),
        ],
        vec![
            format!("a={}", as_last_agent(&pg)),
            format!("c=sqlite://{}", lite.display()),
        ],
    ];
    for participants in cases {
        let participants: Vec<&str> = participants.iter().map(String::as_str).collect();
        let (out, json) = run_json(run_command(&sb, "la-two", &script, &participants, "{}"));
        assert!(!out.status.success(), "{json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("last agent"),
            "{json}"
        );
    }
}

#[test]
fn a_last_agent_refuses_the_decision_past_the_deadline_by_its_own_clock() {
    if !fault_injection_built() {
        return;
    }
    for agent in LAST_AGENTS {
        let Some(case) = LastAgentCase::new(&format!("wtx_la_late_{agent}"), agent) else {
            return;
        };
        // The host checks its clock, then stalls past the 1 s deadline before it sends the
        // decision: the database's clock refuses the row.
        let mut command = case.transfer(10);
        command
            .args(["--timeout", "1"])
            .env("WASMTX_FAULT_PAUSE", "before-decision:1500");
        let (out, json) = run_json(command);
        assert_eq!(out.status.code(), Some(1), "{agent}: {json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("deadline"), "{agent}: {message}");
        assert_eq!(case.balances(), (100, 100), "{agent}");
        assert!(case.decision_rows().is_empty(), "{agent}");
        assert!(prepared_branches(&case.node).is_empty(), "{agent}");
    }
}

/// Every step of a last-agent transfer a crash can hit (the agent is `a` or `b`; the other
/// one is branch 0 of the prepared ones), and whether the transfer must end up applied.
const LAST_AGENT_CRASH_POINTS: [(&str, bool); 6] = [
    ("after-begin", false),
    ("after-script", false),
    ("after-prepare-0", false),
    ("before-decision", false),
    ("after-decision", true),
    ("after-commit-0", true),
];

fn crash_with_last_agent(agent: &str, prefix: &str) {
    let script = guest("examples/transfer");
    let setup = |pg: &str, my: &str| {
        server_accounts(pg, &[("alice", 100)]);
        server_accounts(my, &[("bob", 100)]);
    };
    for_each_crash_point(
        prefix,
        &LAST_AGENT_CRASH_POINTS,
        setup,
        |node, point, applied, pg, my| {
            let sb = TestDir::new();
            let (participants, agent_url) = last_agent_participants(agent, pg, my);
            let participants: Vec<&str> = participants.iter().map(String::as_str).collect();
            let input = transfer_input(("a", "alice"), ("b", "bob"), 30);
            let report = crash_then_recover(&sb, node, point, &script, &participants, &input);
            let (alice, bob) = (server_balance(pg, "alice"), server_balance(my, "bob"));
            assert_eq!(alice + bob, 200, "{point}: total changed");
            let expected = if applied { (70, 130) } else { (100, 100) };
            assert_eq!((alice, bob), expected, "{point}: {report}");
            assert!(
                decision_rows(&agent_url, node).is_empty(),
                "{point}: recovery prunes the decision rows of finished transactions: {report}"
            );
        },
    );
}

#[test]
fn a_crash_at_every_step_with_postgres_as_last_agent_is_resolved_by_recover() {
    crash_with_last_agent("a", "lapg");
}

#[test]
fn a_crash_at_every_step_with_mariadb_as_last_agent_is_resolved_by_recover() {
    crash_with_last_agent("b", "lamy");
}

/// Kills every session on the database of `url` (PostgreSQL or MariaDB).
fn kill_sessions(url: &str) {
    let (admin, database) = admin_of(url);
    if url.starts_with("postgres") {
        server_sql(
            admin,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
            ),
        );
    } else {
        for id in session_ids(url) {
            server_sql(admin, &format!("KILL CONNECTION {id}"));
        }
    }
}

#[test]
fn a_last_agent_killed_during_its_commit_is_in_doubt_then_resolved_from_its_table() {
    if !fault_injection_built() {
        return;
    }
    for agent in LAST_AGENTS {
        let Some(case) = LastAgentCase::new(&format!("wtx_la_kill_{agent}"), agent) else {
            return;
        };
        let mut command = case.transfer(25);
        command
            .env("WASMTX_FAULT_PAUSE", "before-decision:2500")
            .stderr(Stdio::null());
        let child = command.stdout(Stdio::piped()).spawn().unwrap();
        // While the host holds its decision, the last agent's session is killed: its COMMIT
        // then fails with the outcome unknown, and the table says what happened.
        std::thread::sleep(Duration::from_millis(1200));
        kill_sessions(&case.agent_url);
        let output = child.wait_with_output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["outcome"], "aborted", "{agent}: {json}");
        assert!(
            notes(&json)
                .iter()
                .any(|n| n.contains("decision table says ABORT")),
            "{agent}: resolved from the table: {json}"
        );
        assert_eq!(case.balances(), (100, 100), "{agent}");
        let gid = json["gid"].as_str().unwrap();
        assert_eq!(case.decision_rows(), [[gid, "A"]], "{agent}");
        assert!(prepared_branches(&case.node).is_empty(), "{agent}");
    }
}

/// The participants' notes of a report.
fn notes(json: &serde_json::Value) -> Vec<&str> {
    json["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["note"].as_str())
        .collect()
}

/// A TCP forwarder that can lose the answers of the connections open so far: once cut,
/// what the server sends on them is dropped and the client's side is closed, while what the
/// client had sent still reached the server. New connections forward normally.
struct CuttingProxy {
    port: u16,
    opened: Arc<AtomicU64>,
    cut_below: Arc<AtomicU64>,
}

impl CuttingProxy {
    fn start(target: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (opened, cut_below) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let target = target.to_owned();
        let (opened_in, cut_in) = (opened.clone(), cut_below.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let id = opened_in.fetch_add(1, Ordering::SeqCst);
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let cut = cut_in.clone();
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if id < cut.load(Ordering::SeqCst) {
                            let _ = c_write.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        CuttingProxy {
            port,
            opened,
            cut_below,
        }
    }

    /// Loses the answers of every connection opened so far.
    fn cut(&self) {
        self.cut_below
            .store(self.opened.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

#[test]
fn a_last_agent_whose_commit_answer_is_lost_commits_from_its_table() {
    if !fault_injection_built() {
        return;
    }
    let db = "wtx_la_lost";
    let (Some(pg), Some(my)) = (postgres_db(db), mysql_db(db)) else {
        return;
    };
    let node = node_of(db);
    server_accounts(&pg, &[("alice", 100)]);
    server_accounts(&my, &[("bob", 100)]);
    let proxy = CuttingProxy::start("127.0.0.1:5432");
    let via_proxy = pg.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let sb = TestDir::new();
    let script = guest("examples/transfer");
    let participants = [
        format!("a={}", as_last_agent(&via_proxy)),
        format!("b={my}"),
    ];
    let participants: Vec<&str> = participants.iter().map(String::as_str).collect();
    let mut command = run_command(
        &sb,
        &node,
        &script,
        &participants,
        &transfer_input(("a", "alice"), ("b", "bob"), 25),
    );
    command
        .env("WASMTX_FAULT_PAUSE", "before-decision:2500")
        .stderr(Stdio::null());
    let child = command.stdout(Stdio::piped()).spawn().unwrap();
    // The COMMIT will reach PostgreSQL, but its answer will not reach the host.
    std::thread::sleep(Duration::from_millis(1200));
    proxy.cut();
    let output = child.wait_with_output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["outcome"], "committed", "{json}");
    assert!(
        notes(&json)
            .iter()
            .any(|n| n.contains("decision table says COMMIT")),
        "resolved from the table: {json}"
    );
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (75, 125)
    );
    assert!(prepared_branches(&node).is_empty());
}

#[test]
fn a_script_cannot_touch_the_decision_table() {
    let (Some(pg), Some(my)) = (postgres_db("wtx_la_policy"), mysql_db("wtx_la_policy")) else {
        return;
    };
    let node = node_of("wtx_la_policy");
    server_accounts(&pg, &[("alice", 100)]);
    server_accounts(&my, &[("bob", 100)]);
    let sb = TestDir::new();
    let participants = [format!("a={}", as_last_agent(&pg)), format!("b={my}")];
    let participants: Vec<&str> = participants.iter().map(String::as_str).collect();
    let (out, json) = run_json(run_command(
        &sb,
        &node,
        &guest("examples/transfer"),
        &participants,
        &transfer_input(("a", "alice"), ("b", "bob"), 1),
    ));
    assert_eq!(out.status.code(), Some(0), "{json}");
    let rows = decision_rows(&pg, &node);
    assert_eq!(rows.len(), 1);

    let hostile = guest("tests/guests/hostile");
    for sql in [
        "DELETE FROM wasmtx_decisions",
        "UPDATE wasmtx_decisions SET decision = 'A'",
        "SELECT * FROM \"wasmtx_decisions\"",
    ] {
        let input =
            serde_json::json!({"attack": "statement", "participant": "a", "sql": sql}).to_string();
        let (out, json) = run_json(run_command(&sb, &node, &hostile, &participants, &input));
        assert_eq!(out.status.code(), Some(1), "{sql}: {json}");
        assert_eq!(json["outcome"], "aborted", "{sql}: {json}");
        assert_eq!(json["error"]["kind"], "forbidden", "{sql}: {json}");
    }
    assert_eq!(decision_rows(&pg, &node), rows, "the table is untouched");
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (99, 101)
    );
    assert!(prepared_branches(&node).is_empty());
}

/// Sessions of the pool named `application` that are not idle (inside a transaction, or
/// still running something), seen from another connection; waits a little for sessions that
/// are closing.
fn busy_sessions(application: &str) -> Vec<Vec<String>> {
    let mut busy = Vec::new();
    for _ in 0..40 {
        busy = server_sql(
            "postgres://postgres@127.0.0.1:5432/postgres",
            &format!(
                "SELECT pid::text, state, left(query, 60) FROM pg_stat_activity \
                 WHERE application_name = '{application}' AND state <> 'idle'"
            ),
        );
        if busy.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    busy
}

#[test]
fn every_path_of_a_postgres_branch_leaves_its_connection_clean_or_closed() {
    use wasmtx::gid::{Gid, NodeId};
    use wasmtx::participant::PostgresParticipant;
    use wasmtx::participant::{ServerParticipant, StatementTimeouts};

    let Some(pg) = postgres_db("wtx_clean") else {
        return;
    };
    server_accounts(&pg, &[("alice", 100)]);
    let application = "wtx_clean_pool";
    let url = format!("{pg}?application_name={application}");
    let node = NodeId::new("clean").unwrap();
    let timeouts = StatementTimeouts {
        statement: Duration::from_secs(5),
        lock: Duration::from_secs(5),
    };
    let branch = || {
        Gid::new(
            &node,
            std::time::SystemTime::now() + Duration::from_secs(30),
        )
        .branch(0)
    };
    let update = "UPDATE accounts SET balance = balance + 1 WHERE id = 'alice'";
    // One runtime for the pool; its worker finishes a connection's return to the pool
    // between the paths.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let participant = runtime.block_on(async {
        let p = PostgresParticipant::connect("a", &url, 2).await.unwrap();
        p.into_last_agent().await.unwrap()
    });
    let check = |path: &str| {
        let busy = busy_sessions(application);
        assert!(
            busy.is_empty(),
            "{path}: a pooled session is not clean: {busy:?}"
        );
    };
    let p = &participant;
    // A branch that has changed alice's row.
    let begin_updated = |id: &wasmtx::gid::BranchId| {
        let id = id.clone();
        async move {
            let mut b = p.begin(&id, timeouts).await.unwrap();
            b.execute(update, &[]).await.unwrap();
            b
        }
    };
    runtime.block_on(async {
        let mut b = begin_updated(&branch()).await;
        b.rollback().await.unwrap();
    });
    check("rolled back");
    runtime.block_on(async {
        let mut b = p.begin(&branch(), timeouts).await.unwrap();
        assert!(b.execute("SELECT * FROM missing_table", &[]).await.is_err());
        assert!(b.prepare().await.is_err());
    });
    check("a failed statement, then prepare");
    runtime.block_on(async {
        drop(begin_updated(&branch()).await);
    });
    check("dropped while open");
    runtime.block_on(async {
        let id = branch();
        let mut b = begin_updated(&id).await;
        b.prepare().await.unwrap();
        drop(b);
        p.rollback_prepared(&id).await.unwrap();
    });
    check("dropped while prepared, rolled back elsewhere");
    runtime.block_on(async {
        let mut b = begin_updated(&branch()).await;
        b.prepare().await.unwrap();
        b.commit_prepared().await.unwrap();
    });
    check("prepared and committed");
    runtime.block_on(async {
        let mut b = begin_updated(&branch()).await;
        b.commit_one_phase().await.unwrap();
    });
    check("one-phase commit");
    runtime.block_on(async {
        let mut b = p.begin(&branch(), timeouts).await.unwrap();
        assert!(b.execute("SELECT 1/0", &[]).await.is_err());
        assert!(b.commit_one_phase().await.is_err());
    });
    check("a failed one-phase commit");
    runtime.block_on(async {
        let mut b = begin_updated(&branch()).await;
        b.commit_with_decision().await.unwrap();
    });
    check("commit with the decision row");
    runtime.block_on(async {
        let late = Gid::new(&node, std::time::SystemTime::now() - Duration::from_secs(1)).branch(0);
        let mut b = begin_updated(&late).await;
        let err = b.commit_with_decision().await.unwrap_err();
        assert!(err.to_string().contains("deadline"), "{err}");
    });
    check("a refused decision row (past the deadline)");
    // Three commits of +1 went through (prepared, one-phase, with the decision row); every
    // other path changed nothing.
    assert_eq!(server_balance(&pg, "alice"), 103);
    assert!(prepared_branches("clean").is_empty());
}

/// An administrator's URL for the server of `url`, and the database `url` names.
fn admin_of(url: &str) -> (&'static str, &str) {
    let database = url.rsplit('/').next().unwrap();
    if url.starts_with("postgres") {
        ("postgres://postgres@127.0.0.1:5432/postgres", database)
    } else {
        ("mysql://root@127.0.0.1:3306/", database)
    }
}

/// The server's session ids on the database of `url`, in order.
fn session_ids(url: &str) -> Vec<String> {
    let (admin, database) = admin_of(url);
    let sql = if url.starts_with("postgres") {
        format!("SELECT pid::text FROM pg_stat_activity WHERE datname = '{database}' ORDER BY pid")
    } else {
        format!("SELECT id FROM information_schema.processlist WHERE db = '{database}' ORDER BY id")
    };
    server_sql(admin, &sql)
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
}

/// The server's session ids on the database of `url` once there are `count` (sessions
/// that just ended may take a moment to go).
fn sessions_once(url: &str, count: usize) -> Vec<String> {
    let mut ids = session_ids(url);
    for _ in 0..40 {
        if ids.len() == count {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        ids = session_ids(url);
    }
    ids
}

/// Two branches at once on `participant`, each adding 1 to its own account (`bob`, `carol`)
/// and committing in one phase.
fn two_branches_commit(
    runtime: &tokio::runtime::Runtime,
    participant: &dyn wasmtx::participant::ServerParticipant,
    node: &wasmtx::gid::NodeId,
) {
    use wasmtx::gid::Gid;
    use wasmtx::participant::StatementTimeouts;
    let timeouts = StatementTimeouts {
        statement: Duration::from_secs(5),
        lock: Duration::from_secs(5),
    };
    let deadline = std::time::SystemTime::now() + Duration::from_secs(30);
    runtime.block_on(async {
        let mut first = participant
            .begin(&Gid::new(node, deadline).branch(0), timeouts)
            .await
            .unwrap();
        let mut second = participant
            .begin(&Gid::new(node, deadline).branch(0), timeouts)
            .await
            .unwrap();
        for (branch, account) in [(&mut first, "bob"), (&mut second, "carol")] {
            let update =
                format!("UPDATE accounts SET balance = balance + 1 WHERE id = '{account}'");
            branch.execute(&update, &[]).await.unwrap();
        }
        first.commit_one_phase().await.unwrap();
        second.commit_one_phase().await.unwrap();
    });
}

/// A branch's connection, handed back clean, serves the next branch as it is (no new
/// session, no test message); once the server has ended those sessions, the next branch
/// finds out at BEGIN and goes on with a fresh connection.
fn handed_back_connections_are_reused_and_dead_ones_replaced(url: &str, node: &str) {
    use wasmtx::gid::NodeId;
    use wasmtx::participant::MysqlParticipant;
    use wasmtx::participant::PostgresParticipant;
    use wasmtx::participant::ServerParticipant;

    server_accounts(url, &[("bob", 0), ("carol", 0)]);
    let node = NodeId::new(node).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let participant: Box<dyn ServerParticipant> = runtime.block_on(async {
        if url.starts_with("postgres") {
            Box::new(PostgresParticipant::connect("a", url, 4).await.unwrap())
                as Box<dyn ServerParticipant>
        } else {
            Box::new(MysqlParticipant::connect("a", url, 4).await.unwrap())
        }
    });
    sessions_once(url, 0);
    two_branches_commit(&runtime, participant.as_ref(), &node);
    let sessions = sessions_once(url, 2);
    assert_eq!(
        sessions.len(),
        2,
        "two branches at once, two sessions: {sessions:?}"
    );
    for _ in 0..3 {
        two_branches_commit(&runtime, participant.as_ref(), &node);
    }
    assert_eq!(
        session_ids(url),
        sessions,
        "the same two sessions served every branch"
    );

    kill_sessions(url);
    sessions_once(url, 0);
    two_branches_commit(&runtime, participant.as_ref(), &node);
    let fresh = sessions_once(url, 2);
    assert_eq!(fresh.len(), 2, "{fresh:?}");
    assert!(
        fresh.iter().all(|id| !sessions.contains(id)),
        "fresh sessions {fresh:?}, ended ones {sessions:?}"
    );
    assert_eq!(server_balance(url, "bob"), 5);
    assert_eq!(server_balance(url, "carol"), 5);
}

#[test]
fn handed_back_postgres_connections_are_reused_and_dead_ones_replaced() {
    let Some(pg) = postgres_db("wtx_reuse") else {
        return;
    };
    handed_back_connections_are_reused_and_dead_ones_replaced(&pg, "reusepg");
}

#[test]
fn handed_back_mariadb_connections_are_reused_and_dead_ones_replaced() {
    let Some(my) = mysql_db("wtx_reuse") else {
        return;
    };
    handed_back_connections_are_reused_and_dead_ones_replaced(&my, "reusemy");
}
