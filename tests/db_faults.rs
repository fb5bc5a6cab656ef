//! The databases fail, not wasmtx: PostgreSQL crashed mid-stream, MariaDB SIGKILLed
//! mid-stream, a participant down for longer than phase 2 retries, and a cluster's shared
//! decision database crashed under two `wasmtx serve` nodes. Each ends with no
//! prepared branch left, a conserved total, and a process that ended within its bounds.
//!
//! These tests stop and start the local servers, so they live in their own test binary
//! (cargo runs test binaries one after another) and take turns inside it (one lock). Every
//! test brings the servers back up whatever its outcome ([`Restore`]).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::serve::{
    ServerProcess, bank_total, cluster_bank, cluster_config, runtime, transfer_answers_over,
    wait_no_prepared,
};
use common::{
    TestDir, guest, mysql_db, postgres_db, prepared_branches, server_accounts, server_balance,
    server_sql,
};

/// One server-stopping test at a time.
static SERVERS: Mutex<()> = Mutex::new(());

/// Accounts per server, one per bench worker.
const WORKERS: usize = 4;
const OPENING_BALANCE: i64 = 1_000_000;
/// The transaction deadline the tests run with (`--timeout`).
const TIMEOUT_SECS: u64 = 5;
/// Phase 2's retry window (the coordinator's default).
const PHASE2_RETRY_SECS: u64 = 15;

/// `command`, run with no file descriptor open but 0, 1 and 2: a server it starts under the
/// tests' database lock (`flock`) would otherwise inherit the lock's descriptor and hold the
/// lock for as long as it runs.
fn detached(mut command: Command) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range is async-signal-safe and touches nothing of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    command
}

fn pg_cluster(action: &str, extra: &[&str]) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("PostgreSQL's configuration in /etc/postgresql")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .expect("a PostgreSQL cluster");
    let status = detached(Command::new("pg_ctlcluster"))
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .args(extra)
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

fn answers(url: &str) -> bool {
    common::block_on(async {
        use sqlx::Connection;
        match url.starts_with("postgres") {
            true => sqlx::PgConnection::connect(url).await?.close().await,
            false => sqlx::MySqlConnection::connect(url).await?.close().await,
        }
    })
    .is_ok()
}

fn wait_until_answers(url: &str) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !answers(url) {
        assert!(
            Instant::now() < give_up,
            "{url} did not come back within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/";

fn start_postgres() {
    if !answers(PG_ADMIN) {
        pg_cluster("start", &[]);
    }
    wait_until_answers(PG_ADMIN);
}

fn start_mariadb() {
    if !answers(MY_ADMIN) {
        let _ = std::fs::create_dir_all("/run/mysqld");
        let _ = Command::new("chown")
            .args(["mysql:mysql", "/run/mysqld"])
            .status();
        let status = detached(Command::new("start-stop-daemon"))
            .args([
                "--start",
                "--oknodo",
                "--background",
                "--exec",
                "/usr/sbin/mariadbd",
            ])
            .status()
            .expect("start-stop-daemon");
        assert!(status.success(), "cannot start MariaDB");
    }
    wait_until_answers(MY_ADMIN);
}

fn kill_mariadb() {
    let status = Command::new("pkill")
        .args(["-KILL", "-x", "mariadbd"])
        .status()
        .expect("pkill");
    assert!(status.success(), "no mariadbd to kill");
    let give_up = Instant::now() + Duration::from_secs(20);
    while answers(MY_ADMIN) {
        assert!(
            Instant::now() < give_up,
            "MariaDB still answers after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Brings both servers back up when a test ends, however it ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        start_postgres();
        start_mariadb();
    }
}

/// A PostgreSQL and a MariaDB database with one account per worker each, and the node the
/// test's transactions run as.
struct Bank {
    sb: TestDir,
    node: String,
    pg: String,
    my: String,
}

impl Bank {
    fn new(database: &str) -> Option<Self> {
        let (pg, my) = (postgres_db(database)?, mysql_db(database)?);
        let accounts: Vec<(String, i64)> = (0..WORKERS)
            .map(|w| (format!("acct-{w}"), OPENING_BALANCE))
            .collect();
        let rows: Vec<(&str, i64)> = accounts.iter().map(|(id, b)| (id.as_str(), *b)).collect();
        server_accounts(&pg, &rows);
        server_accounts(&my, &rows);
        Some(Bank {
            sb: TestDir::new(),
            node: common::node_of(database),
            pg,
            my,
        })
    }

    /// `wasmtx SUBCOMMAND` as this bank's node, over both participants.
    fn wasmtx(&self, subcommand: &str) -> Command {
        let mut command = self.sb.wasmtx();
        command
            .env("WASMTX_NODE", &self.node)
            .arg(subcommand)
            .args([
                "-p",
                &format!("a={}", self.pg),
                "-p",
                &format!("b={}", self.my),
            ]);
        command
    }

    /// Transfers of 1 from `a`'s account to `b`'s, one worker per account pair.
    fn bench(&self, seconds: u64) -> Child {
        let mut command = self.wasmtx("bench");
        command
            .arg(guest("examples/transfer"))
            .args(["--concurrency", &WORKERS.to_string()])
            .args(["--duration", &seconds.to_string(), "--warmup", "1"])
            .args(["--timeout", &TIMEOUT_SECS.to_string(), "--json"])
            .args(["--input", &transfer("acct-{worker}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().expect("starting wasmtx bench")
    }

    /// `wasmtx recover` until nothing of this node is left prepared (a branch whose deadline
    /// has not passed yet is left alone by recovery, so this may take a few rounds).
    fn recover_all(&self) {
        let give_up = Instant::now() + Duration::from_secs(TIMEOUT_SECS + 30);
        loop {
            let out = self
                .wasmtx("recover")
                .arg("--json")
                .output()
                .expect("running wasmtx recover");
            let left = prepared_branches(&self.node);
            if out.status.success() && left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "recovery left {left:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn total(&self) -> i64 {
        [&self.pg, &self.my]
            .iter()
            .flat_map(|url| server_sql(url, "SELECT balance FROM accounts"))
            .map(|row| row[0].parse::<i64>().unwrap())
            .sum()
    }

    /// Balances of `account` on `a` and `b`.
    fn balances(&self, account: &str) -> (i64, i64) {
        (
            common::server_balance(&self.pg, account),
            common::server_balance(&self.my, account),
        )
    }
}

fn transfer(account: &str) -> String {
    common::transfer_input(("a", account), ("b", account), 1)
}

/// Waits for `child` at most `limit`; kills it and fails if it takes longer.
fn wait_within(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let started = Instant::now();
    while child.try_wait().expect("waiting for wasmtx").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?} (killed): {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// A bench stream through a server crash: it ends within its bounds, and after recovery
/// nothing is prepared and the total is what it was.
fn stream_through(database: &str, crash: impl FnOnce(), restart: impl FnOnce()) {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let _restore = Restore;
    let Some(bank) = Bank::new(database) else {
        return;
    };
    let before = bank.total();
    let seconds = 8;
    let child = bank.bench(seconds);
    std::thread::sleep(Duration::from_secs(3));
    crash();
    std::thread::sleep(Duration::from_secs(2));
    restart();
    // The run, plus one transaction's deadline and phase 2's retry window, plus start-up.
    let bound = Duration::from_secs(seconds + TIMEOUT_SECS + PHASE2_RETRY_SECS + 10);
    let out = wait_within(child, bound, "wasmtx bench");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wasm = &report["variants"][0];
    assert!(wasm["commits"].as_u64().unwrap() > 0, "{report}");
    bank.recover_all();
    assert_eq!(
        bank.total(),
        before,
        "the total moved: a transfer is partial"
    );
    for w in 0..WORKERS {
        let (a, b) = bank.balances(&format!("acct-{w}"));
        assert_eq!(
            OPENING_BALANCE - a,
            b - OPENING_BALANCE,
            "worker {w}: debits and credits differ"
        );
    }
}

#[test]
fn postgres_crashed_mid_stream_then_restarted() {
    stream_through(
        "wtx_fault_pg_crash",
        || pg_cluster("stop", &["-m", "immediate"]),
        start_postgres,
    );
}

#[test]
fn mariadb_killed_mid_stream_then_restarted() {
    stream_through("wtx_fault_my_kill", kill_mariadb, start_mariadb);
}

#[test]
fn a_participant_down_past_the_phase_two_window_is_finished_by_recovery() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let _restore = Restore;
    let Some(bank) = Bank::new("wtx_fault_phase2") else {
        return;
    };
    // Decided COMMIT; while the run pauses before phase 2, MariaDB dies and stays down
    // for longer than phase 2 retries.
    let pause_ms = 2_000;
    let child = {
        let mut command = bank.wasmtx("run");
        command
            .arg(guest("examples/transfer"))
            .args(["--timeout", &TIMEOUT_SECS.to_string(), "--json"])
            .args(["--input", &transfer("acct-0")])
            .env("WASMTX_FAULT_PAUSE", format!("after-decision:{pause_ms}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().expect("starting wasmtx run")
    };
    std::thread::sleep(Duration::from_millis(pause_ms / 2));
    kill_mariadb();
    let bound = Duration::from_millis(pause_ms) + Duration::from_secs(PHASE2_RETRY_SECS + 10);
    let out = wait_within(child, bound, "wasmtx run");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(3), "in doubt: {report}");
    assert_eq!(report["outcome"], "in-doubt", "{report}");
    let b = &report["participants"][1];
    assert_eq!(b["outcome"], "pending", "{report}");

    start_mariadb();
    bank.recover_all();
    assert_eq!(
        bank.balances("acct-0"),
        (OPENING_BALANCE - 1, OPENING_BALANCE + 1),
        "the decided transfer is committed on both sides"
    );
    assert!(prepared_branches(&bank.node).is_empty());
}

/// Two `wasmtx serve` nodes share their decision log in PostgreSQL, which crashes and comes
/// back mid-stream (with the PostgreSQL participant, the same server). The crash comes while
/// COMMIT INSERTs wait on a lock the test holds on the decision table, so their answers are
/// lost: those transactions are answered in doubt and their branches stay prepared, never
/// rolled back by their host, until recovery writes ABORT (no COMMIT row exists) and rolls
/// them back. The leases lapse and are claimed again; after recovery nothing is prepared,
/// the total is what it was, and what committed is exactly what the COMMIT rows say.
#[test]
fn the_shared_decision_database_crashed_mid_stream_then_restarted() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let _restore = Restore;
    let Some(bank) = cluster_bank("flt_cluster", &["fcl-1", "fcl-2"]) else {
        return;
    };
    let log = postgres_db("wtx_flt_cluster_log").expect("PostgreSQL answered for the bank");
    let nodes: Vec<(TestDir, ServerProcess)> = ["fcl-1", "fcl-2"]
        .iter()
        .map(|node| {
            let dir = TestDir::new();
            let config = cluster_config(&dir, node, &bank, &log, "[limits]\ntimeout_secs = 2");
            let server = ServerProcess::start(&dir, &config, &[]);
            (dir, server)
        })
        .collect();
    // One publish serves both: the cluster shares its registry.
    let (status, _) = nodes[0]
        .1
        .publish("transfer", "1.0.0", &guest("examples/transfer"));
    assert_eq!(status, 201);
    let urls: Vec<String> = nodes.iter().map(|(_, s)| s.url.clone()).collect();
    let stream =
        std::thread::spawn(move || runtime().block_on(transfer_answers_over(urls, 1500, 8)));
    // The stream is committing once COMMIT rows arrive (on a loaded machine the nodes' first
    // transactions can take a while: each compiles the script into its own cache).
    let started = Instant::now();
    while server_sql(
        &log,
        "SELECT count(*) FROM wasmtx.decision WHERE outcome = 1",
    )[0][0]
        == "0"
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no COMMIT was recorded in the first minute of the stream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // COMMIT INSERTs queue behind this lock; the crash comes while they wait.
    let mut holder = Command::new("psql")
        .arg(&log)
        .args([
            "-c",
            "BEGIN; LOCK TABLE wasmtx.decision IN EXCLUSIVE MODE; SELECT pg_sleep(60)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    let waiting = Instant::now();
    while server_sql(
        "postgres://postgres@127.0.0.1:5432/postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
           AND query LIKE '%INSERT INTO wasmtx.decision%'",
    )[0][0]
        == "0"
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "no COMMIT INSERT waited on the decision table (the lock holder {})",
            match holder.try_wait() {
                Ok(Some(status)) => format!("exited: {status}"),
                _ => "still holds it".to_owned(),
            }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    pg_cluster("stop", &["-m", "immediate"]);
    holder.wait().ok();
    std::thread::sleep(Duration::from_secs(2));
    start_postgres();
    let answers = stream.join().unwrap();
    let statuses: Vec<Result<u16, String>> = answers
        .iter()
        .map(|a| a.as_ref().map(|(status, _)| *status).map_err(Clone::clone))
        .collect();
    let committed = statuses.iter().filter(|s| **s == Ok(200)).count();
    let in_doubt: Vec<String> = answers
        .iter()
        .filter_map(|a| match a {
            Ok((202, body)) if body["status"] == "in-doubt" => {
                body["gid"].as_str().map(str::to_owned)
            }
            _ => None,
        })
        .collect();
    assert!(
        !in_doubt.is_empty(),
        "the COMMITs whose answers were lost are answered in doubt: {statuses:?}"
    );
    assert!(committed > 0, "{statuses:?}");
    println!(
        "{committed} of {} transfers committed through the crash",
        statuses.len()
    );

    for (_, server) in &nodes {
        server.wait_ready(Duration::from_secs(60));
    }
    for node in ["fcl-1", "fcl-2"] {
        wait_no_prepared(node, Duration::from_secs(60));
    }
    assert_eq!(bank_total(&bank.0, &bank.1), 2000, "a transfer is partial");
    assert!(
        server_balance(&bank.1, "bob") >= 1000 + committed as i64,
        "every transfer answered 200 is there ({committed})"
    );
    // Recovery found each in-doubt transaction's branches still prepared: it recorded ABORT
    // for it (source 1: recovery) before rolling them back, or found its COMMIT.
    for gid in &in_doubt {
        let rows = server_sql(
            &log,
            &format!("SELECT outcome::text, source::text FROM wasmtx.decision WHERE gid = '{gid}'"),
        );
        assert!(
            rows == [["1", "0"]] || rows == [["2", "1"]],
            "{gid}: decided {rows:?}"
        );
    }
    // What committed is exactly what the COMMIT rows say.
    let commit_rows: i64 = server_sql(
        &log,
        "SELECT count(*) FROM wasmtx.decision WHERE node_id LIKE 'fcl-%' AND outcome = 1",
    )[0][0]
        .parse()
        .unwrap();
    assert_eq!(server_balance(&bank.1, "bob"), 1000 + commit_rows);
    println!("{} transactions in doubt through the crash", in_doubt.len());
    // Back from bob, who holds at least his 1000: the stream may have emptied alice.
    for (_, server) in &nodes {
        let (status, body) = server.invoke(
            "transfer",
            common::serve::transfer_body(("my", "bob"), ("pg", "alice"), 1),
        );
        assert_eq!(status, 200, "the node decides again: {body}");
    }
}
