//! The hostile-script corpus: the guest `tests/guests/hostile` abuses the sandbox's time,
//! memory and stack, volume limits, statement policy, WASI and parameter checks, through the
//! real `wasmtx` binary against two SQLite participants. Every attack must end aborted with
//! exit status 1 and a typed, readable error, leave every byte of every database as it was,
//! and a normal transfer right after it must commit. One more test runs attacks and
//! transfers through one in-process host (one `Host`) to show that the
//! host keeps serving.
//!
//! Cases run on a [`Bank`], so the PostgreSQL and MariaDB participants can run the shared
//! statement cases too; their own statements are in a test that is ignored for now.

mod common;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wasmtx::config::Config;
use wasmtx::script::{Warm, WarmSettings};
use wasmtx::{Host, HostOptions, ScriptLogic};

use common::{
    RUN_LIMIT, accounts_db, balance, guest, server_accounts, server_balance, server_sql, sqlite,
    transfer_input,
};

const HOSTILE: &str = "tests/guests/hostile";

/// The longest error message that still counts as readable.
const READABLE: usize = 4096;

/// Flags that make a run quick to stop: a 2-second deadline, 100 statements.
const TIMEOUT_2: &[&str] = &["--timeout", "2"];
const MAX_STATEMENTS_100: &[&str] = &["--max-statements", "100"];

/// How long a transaction with a 2-second deadline may take in all before it is a failure.
const DEADLINE_BOUND: Duration = Duration::from_secs(6);

/// How every timeout's message begins, whether the deadline passed in the guest or in a
/// statement.
const DEADLINE: &str = "the transaction's deadline";

/// The reason the policy gives for every transaction-control statement.
const TRANSACTION_CONTROL: &str = "transaction control belongs to the host";

/// Two participants, `a` and `b`, each with the transfer example's `accounts` table holding
/// alice = 100 and bob = 100. Cases and the transfers after them run against it.
struct Bank {
    sb: common::TestDir,
    /// `-p` arguments for `wasmtx run`.
    participants: Vec<String>,
    databases: Databases,
}

/// Where the bank's two participants live.
enum Databases {
    Sqlite([PathBuf; 2]),
    /// PostgreSQL or MySQL/MariaDB databases, by URL.
    Servers([String; 2]),
}

impl Bank {
    fn sqlite() -> Bank {
        let sb = common::TestDir::new();
        let files = [sb.path("a.db"), sb.path("b.db")];
        for file in &files {
            accounts_db(file, &[("alice", 100), ("bob", 100)]);
        }
        let participants = vec![
            format!("a=sqlite://{}", files[0].display()),
            format!("b=sqlite://{}", files[1].display()),
        ];
        Bank {
            sb,
            participants,
            databases: Databases::Sqlite(files),
        }
    }

    /// `a` and `b` on fresh server databases, by URL (`common::postgres_db`,
    /// `common::mysql_db`).
    fn servers(a: &str, b: &str) -> Bank {
        for url in [a, b] {
            server_accounts(url, &[("alice", 100), ("bob", 100)]);
        }
        Bank {
            sb: common::TestDir::new(),
            participants: vec![format!("a={a}"), format!("b={b}")],
            databases: Databases::Servers([a.to_owned(), b.to_owned()]),
        }
    }

    /// What a failed transaction must not change: every byte of an SQLite file, every row of
    /// a server's `accounts`.
    fn contents(&self) -> Vec<Vec<u8>> {
        match &self.databases {
            Databases::Sqlite(files) => files
                .iter()
                .map(|file| {
                    // Reading first rolls back a hot journal a killed run may have left.
                    sqlite(file, "SELECT count(*) FROM accounts");
                    std::fs::read(file).expect("reading a database file")
                })
                .collect(),
            Databases::Servers(urls) => urls
                .iter()
                .map(|url| {
                    let rows = server_sql(url, "SELECT id, balance FROM accounts ORDER BY id");
                    format!("{rows:?}").into_bytes()
                })
                .collect(),
        }
    }

    /// The input of a transfer of 1 between alice on `a` and bob on `b`, and the balances
    /// after it. Its direction alternates, so any number of cases stays within the balances.
    fn next_transfer(&self) -> (String, [i64; 2]) {
        let [alice, bob] = self.balances();
        if alice >= bob {
            (
                transfer_input(("a", "alice"), ("b", "bob"), 1),
                [alice - 1, bob + 1],
            )
        } else {
            (
                transfer_input(("b", "bob"), ("a", "alice"), 1),
                [alice + 1, bob - 1],
            )
        }
    }

    /// Alice's balance on `a` and bob's on `b`: what the transfers move.
    fn balances(&self) -> [i64; 2] {
        match &self.databases {
            Databases::Sqlite([a, b]) => [balance(a, "alice"), balance(b, "bob")],
            Databases::Servers([a, b]) => [server_balance(a, "alice"), server_balance(b, "bob")],
        }
    }
}

/// One attack, and the failure it must end in.
struct Case {
    name: String,
    /// The hostile guest's input.
    input: Value,
    /// Extra `wasmtx run` flags.
    flags: &'static [&'static str],
    /// The `error.kind` it must end with, and a phrase of `error.message`.
    kind: &'static str,
    phrase: String,
    /// The transaction must be over within this.
    within: Duration,
    /// Text that must appear nowhere in what `wasmtx` printed.
    hidden: Vec<String>,
    /// What `wasmtx` writes to stderr (the host's log) must stay under this many bytes and
    /// say that output was dropped.
    log_under: Option<usize>,
}

impl Case {
    fn new(name: &str, input: Value, kind: &'static str, phrase: &str) -> Case {
        Case {
            name: name.to_owned(),
            input,
            flags: &[],
            kind,
            phrase: phrase.to_owned(),
            within: RUN_LIMIT,
            hidden: Vec::new(),
            log_under: None,
        }
    }

    /// The `statement` attack: `sql` on `participant`, any error ignored, commit voted.
    fn statement(participant: &str, sql: &str, kind: &'static str, phrase: &str) -> Case {
        let input = json!({"attack": "statement", "participant": participant, "sql": sql});
        Case::new(&format!("{participant}: {sql}"), input, kind, phrase)
    }

    /// The `statement` attack as a query, with parameters.
    fn query(name: &str, sql: &str, params: Value, kind: &'static str, phrase: &str) -> Case {
        let input = json!({"attack": "statement", "sql": sql, "params": params, "query": true});
        Case::new(name, input, kind, phrase)
    }

    /// Sends the statement to `participant` instead of `a`.
    fn on(mut self, participant: &str) -> Case {
        self.input["participant"] = participant.into();
        self
    }

    fn flags(mut self, flags: &'static [&'static str]) -> Case {
        self.flags = flags;
        self
    }

    fn within(mut self, within: Duration) -> Case {
        self.within = within;
        self
    }

    fn hides(mut self, text: impl Into<String>) -> Case {
        self.hidden.push(text.into());
        self
    }

    fn log_under(mut self, bytes: usize) -> Case {
        self.log_under = Some(bytes);
        self
    }
}

/// An input naming an attack, with its parameters.
fn attack(name: &str, params: Value) -> Value {
    let mut input = params;
    input["attack"] = name.into();
    input
}

/// Runs every case on `bank` through the CLI, each followed by a transfer that must commit.
fn run_cases(bank: &Bank, cases: &[Case]) {
    let hostile = guest(HOSTILE);
    each_case(cases, |case| {
        attack_through_cli(bank, &hostile, case);
        keeps_serving(bank, &case.name);
    });
}

/// Runs `check` on every case. A case that does not hold does not stop the others; the test
/// fails at the end, listing every one.
fn each_case(cases: &[Case], check: impl Fn(&Case)) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            std::panic::catch_unwind(AssertUnwindSafe(|| check(case)))
                .err()
                .map(|panic| {
                    let text = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("- {}: {}", case.name, clip(&text))
                })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Runs one attack with `wasmtx run --json` and checks how it ended.
fn attack_through_cli(bank: &Bank, hostile: &std::path::Path, case: &Case) {
    let before = bank.contents();
    let (out, json) = bank.sb.run_json_with(
        hostile,
        &bank.participants,
        case.flags,
        &case.input.to_string(),
        case.within + Duration::from_secs(30),
    );
    check_aborted(case, &json);
    assert_eq!(out.status.code(), Some(1), "exit status: {}", shown(&json));
    assert!(
        bank.contents() == before,
        "a database changed: {}",
        shown(&json)
    );
    let printed = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    let printed = String::from_utf8_lossy(&printed);
    for hidden in &case.hidden {
        assert!(!printed.contains(hidden.as_str()), "`{hidden}` leaked");
    }
    if let Some(cap) = case.log_under {
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.len() < cap, "{} bytes of host log", log.len());
        assert!(
            log.contains("dropped"),
            "no word of dropped output in {}",
            clip(&log)
        );
    }
}

/// The checks every attack shares, on a `--json` report: aborted, the expected kind and
/// phrase, a readable message, every participant rolled back, over in time.
fn check_aborted(case: &Case, json: &Value) {
    assert_eq!(json["outcome"], "aborted", "{}", shown(json));
    assert_eq!(json["error"]["kind"], case.kind, "{}", shown(json));
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(case.phrase.as_str()),
        "expected `{}` in the message: {}",
        case.phrase,
        clip(message)
    );
    assert!(
        message.len() <= READABLE,
        "a {}-byte message is not readable",
        message.len()
    );
    for participant in json["participants"].as_array().expect("participants") {
        assert_eq!(participant["outcome"], "rolled-back", "{}", shown(json));
    }
    let elapsed = json["elapsed_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(
        elapsed < case.within.as_secs_f64() * 1000.0,
        "took {elapsed} ms, more than {:?}",
        case.within
    );
}

/// A normal transfer commits through the CLI.
fn keeps_serving(bank: &Bank, after: &str) {
    let (input, expected) = bank.next_transfer();
    let (out, json) = bank
        .sb
        .run_json(&guest("examples/transfer"), &bank.participants, &input);
    assert_eq!(
        json["outcome"], "committed",
        "the transfer after `{after}`: {json}"
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(bank.balances(), expected, "after `{after}`");
}

/// A report for an assertion message, cut short (a wrongly committed attack may carry
/// megabytes of output).
fn shown(json: &Value) -> String {
    clip(&json.to_string()).to_owned()
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(1500) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A recursive CTE counting forever: on SQLite, millions of rows as fast as it can.
const ENDLESS_ROWS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";

/// SQLite has no sleep: counting to 10^10 in one statement keeps it busy for minutes.
const SQLITE_SLOW: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
     WHERE x < 10000000000) SELECT count(*) FROM c";

// ── time ────────────────────────────────────────────────────────────────────────────────

#[test]
fn time_is_bounded() {
    run_cases(
        &Bank::sqlite(),
        &[
            Case::new(
                "infinite loop",
                attack("infinite-loop", json!({})),
                "timeout",
                DEADLINE,
            )
            .flags(TIMEOUT_2)
            .within(DEADLINE_BOUND),
            Case::query(
                "statement running past the deadline",
                SQLITE_SLOW,
                json!([]),
                "timeout",
                DEADLINE,
            )
            .flags(TIMEOUT_2)
            .within(DEADLINE_BOUND),
        ],
    );
}

// ── memory and stack ────────────────────────────────────────────────────────────────────

#[test]
fn memory_and_stack_are_bounded() {
    let bomb = || attack("memory-bomb", json!({}));
    run_cases(
        &Bank::sqlite(),
        &[
            Case::new("memory bomb", bomb(), "memory", "memory limit of 64 MiB"),
            Case::new(
                "memory bomb, --memory 16",
                bomb(),
                "memory",
                "memory limit of 16 MiB",
            )
            .flags(&["--memory", "16"]),
            Case::new(
                "unbounded recursion",
                attack("recursion", json!({"frame": "small"})),
                "trap",
                "overflowed its stack",
            ),
            // Rust keeps large frames on its shadow stack in linear memory, below the data:
            // overflowing it is an out-of-bounds access, not a wasm stack overflow.
            Case::new(
                "unbounded recursion with 4 KiB frames",
                attack("recursion", json!({"frame": "large"})),
                "trap",
                "out of bounds memory access",
            ),
        ],
    );
}

// ── volume ──────────────────────────────────────────────────────────────────────────────

#[test]
fn volume_is_bounded() {
    let flood = |name: &str, lines: u32, bytes: usize| {
        attack(name, json!({"lines": lines, "bytes": bytes}))
    };
    run_cases(
        &Bank::sqlite(),
        &[
            // 10 MB each to stdout and stderr; the host keeps 64 KiB of each.
            Case::new(
                "stdout flood",
                flood("stdout-flood", 10_000, 1_000),
                "script",
                "flooded stdout",
            )
            .log_under(1 << 20),
            Case::new(
                "stderr flood",
                flood("stderr-flood", 10_000, 1_000),
                "script",
                "flooded stderr",
            )
            .log_under(1 << 20),
            // Past limits.max_log_lines (10,000), then past limits.max_log_bytes (1 MiB).
            Case::new(
                "log flood, many lines",
                flood("log-flood", 100_000, 10),
                "script",
                "flooded the log",
            )
            .log_under(4 << 20),
            Case::new(
                "log flood, long lines",
                flood("log-flood", 1_000, 100_000),
                "script",
                "flooded the log",
            )
            .log_under(4 << 20),
            Case::new(
                "thousands of statements",
                attack("many-statements", json!({"count": 5_000})),
                "limit",
                "more than 100 statements in one transaction (limits.max_statements)",
            )
            .flags(MAX_STATEMENTS_100),
            Case::query(
                "a query returning millions of rows",
                ENDLESS_ROWS,
                json!([]),
                "limit",
                "more than 100000 rows (limits.max_result_rows)",
            ),
            Case::query(
                "a query returning 100 MB",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) \
                 SELECT randomblob(1000000) FROM c",
                json!([]),
                "limit",
                "(limits.max_result_bytes)",
            ),
            Case::new(
                "100,000 participants() calls, every handle kept",
                attack("handle-flood", json!({"count": 100_000})),
                "limit",
                "limits.max_handles",
            ),
            Case::new(
                "a 1 MB participant name",
                attack("huge-name", json!({"bytes": 1 << 20})),
                "script",
                "no participant named",
            ),
            Case::new(
                "a 10 MB output",
                attack("huge-output", json!({"bytes": 10 << 20})),
                "limit",
                "limits.max_output_bytes",
            ),
        ],
    );
}

// ── statement policy ────────────────────────────────────────────────────────────────────

/// Statements every dialect must refuse the same way, sent to `participant`.
fn shared_statement_cases(participant: &str) -> Vec<Case> {
    let forbidden =
        |sql: &str, phrase: &str| Case::statement(participant, sql, "forbidden", phrase);
    vec![
        forbidden("COMMIT", TRANSACTION_CONTROL),
        forbidden("ROLLBACK", TRANSACTION_CONTROL),
        forbidden("BEGIN", TRANSACTION_CONTROL),
        forbidden("START TRANSACTION", TRANSACTION_CONTROL),
        forbidden("SAVEPOINT s", TRANSACTION_CONTROL),
        forbidden("RELEASE SAVEPOINT s", TRANSACTION_CONTROL),
        forbidden("ROLLBACK TO SAVEPOINT s", TRANSACTION_CONTROL),
        forbidden(
            "SELECT 1; DROP TABLE accounts",
            "exactly one statement per call",
        ),
        forbidden("SELECT 1; COMMIT", "exactly one statement per call"),
        forbidden(
            "UPDATE accounts SET balance = 0; COMMIT",
            "exactly one statement per call",
        ),
        forbidden("", "exactly one statement per call"),
        forbidden("SELEKT 1", "does not parse"),
    ]
}

/// SQLite's own escapes: the shared connection, other participants' files, the host's
/// tables, files. A refusal names the statement it refused (`PRAGMA is refused: …`), also
/// when sqlparser cannot parse that statement.
fn sqlite_statement_cases(bank: &Bank) -> Vec<Case> {
    let other_file = bank.sb.path("other.db").display().to_string();
    let forbidden = |sql: &str, phrase: &str| Case::statement("a", sql, "forbidden", phrase);
    let database = |sql: &str, phrase: &str| Case::statement("a", sql, "database", phrase);
    let connection = "change the connection the host shares";
    vec![
        forbidden(
            &format!("ATTACH DATABASE '{other_file}' AS other"),
            connection,
        ),
        forbidden("DETACH DATABASE b", "DETACH is refused"),
        forbidden("PRAGMA writable_schema = ON", "PRAGMA is refused"),
        forbidden("PRAGMA a.journal_mode = WAL", "PRAGMA is refused"),
        forbidden("PRAGMA foreign_keys = OFF", "PRAGMA is refused"),
        forbidden("SELECT * FROM pragma_database_list", connection),
        forbidden("SELECT load_extension('/tmp/evil.so')", "loads native code"),
        forbidden("SELECT readfile('/etc/passwd')", "server file access"),
        forbidden(
            "SELECT writefile('/tmp/wasmtx-escape', 'x')",
            "server file access",
        ),
        forbidden("VACUUM", "VACUUM is refused"),
        forbidden(&format!("VACUUM INTO '{other_file}'"), "VACUUM is refused"),
        // Another participant's file, and the connection's other schemas.
        forbidden("UPDATE b.accounts SET balance = 0", "names schema b"),
        forbidden("SELECT * FROM temp.sqlite_master", "names schema temp"),
        database("SELECT * FROM sqlite_temp_master", "prohibited"),
        forbidden("CREATE TEMP TABLE t (x)", "temporary"),
        forbidden("CREATE TABLE temp.t (x)", "temporary"),
        forbidden("CREATE VIEW v AS SELECT 1", "views and triggers"),
        forbidden(
            "CREATE TRIGGER t AFTER INSERT ON accounts BEGIN DELETE FROM accounts; END",
            "views and triggers",
        ),
        forbidden(
            "DROP TABLE accounts",
            "DROP is not allowed on SQLite participants",
        ),
        database(
            "INSERT INTO sqlite_master VALUES ('table', 't', 't', 0, '')",
            "may not be modified",
        ),
        // The host's decision tables are refused by name, before any database sees them.
        forbidden(
            "DELETE FROM main.wasmtx_decisions",
            "decision table belongs to the host",
        ),
        forbidden(
            "DELETE FROM wasmtx_decisions",
            "decision table belongs to the host",
        ),
        // SQLite's other spellings of transaction control.
        forbidden("BEGIN IMMEDIATE", TRANSACTION_CONTROL),
        forbidden("END", TRANSACTION_CONTROL),
        forbidden("RELEASE s", TRANSACTION_CONTROL),
        // Other dialects' escapes: not SQLite, and refused by name all the same.
        forbidden("COPY accounts TO PROGRAM 'id'", "COPY is refused"),
        forbidden(
            "LOAD DATA INFILE '/etc/passwd' INTO TABLE accounts",
            "LOAD DATA is refused: server file access",
        ),
        forbidden(
            "SELECT * FROM accounts INTO OUTFILE '/tmp/wasmtx-outfile'",
            "INTO OUTFILE is refused: server file access",
        ),
        forbidden("XA START 'x'", "XA START is refused: transaction control"),
        forbidden(
            "PREPARE TRANSACTION 'x'",
            "PREPARE TRANSACTION is refused: transaction control",
        ),
        forbidden(
            "COMMIT PREPARED 'x'",
            "COMMIT PREPARED is refused: transaction control",
        ),
        forbidden("SET x = 1", "session state"),
    ]
}

#[test]
fn statement_policy_holds_on_sqlite() {
    let bank = Bank::sqlite();
    let mut cases = shared_statement_cases("a");
    cases.extend(shared_statement_cases("b"));
    cases.extend(sqlite_statement_cases(&bank));
    run_cases(&bank, &cases);
    assert!(
        !bank.sb.path("other.db").exists(),
        "ATTACH or VACUUM INTO created a file"
    );
}

// ── parameters ──────────────────────────────────────────────────────────────────────────

#[test]
fn bad_parameters_are_refused() {
    let bad = |name: &str, param: Value, phrase: &str| {
        Case::query(name, "SELECT ? AS v", json!([param]), "database", phrase)
    };
    run_cases(
        &Bank::sqlite(),
        &[
            bad(
                "decimal with a comma",
                json!({"decimal": "12,50"}),
                "parameter 1: `12,50` is not a decimal number",
            ),
            bad(
                "decimal that is not a number",
                json!({"decimal": "twelve"}),
                "is not a decimal number",
            ),
            bad(
                "30 February",
                json!({"date": "2024-02-30"}),
                "parameter 1: not a valid date",
            ),
            bad(
                "month 13",
                json!({"date": "2024-13-01"}),
                "not a valid date",
            ),
            bad(
                "25 o'clock",
                json!({"time": "25:00:00"}),
                "not a valid time",
            ),
            bad(
                "invalid uuid",
                json!({"uuid": "not-a-uuid"}),
                "is not a UUID",
            ),
            bad(
                "invalid JSON",
                json!({"json": "{not json"}),
                "not valid JSON",
            ),
            bad(
                "timestamp out of range",
                json!({"timestamp": i64::MAX}),
                "timestamp out of range",
            ),
            Case::query(
                "too few parameters",
                "SELECT ? AS x, ? AS y",
                json!([{"int": 1}]),
                "database",
                "participant `a`",
            ),
            Case::query(
                "too many parameters",
                "SELECT ? AS x",
                json!([{"int": 1}, {"int": 2}, {"text": "three"}]),
                "database",
                "participant `a`",
            ),
        ],
    );
}

// ── WASI ────────────────────────────────────────────────────────────────────────────────

#[test]
fn wasi_grants_no_authority() {
    let bank = Bank::sqlite();
    let secret = bank.sb.path("secret.txt");
    std::fs::write(&secret, "wasmtx-secret-4711").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = std::net::UdpSocket::bind(addr).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let denied = "denied: ";

    run_cases(
        &bank,
        &[
            Case::new(
                "files",
                attack(
                    "wasi-file",
                    json!({"paths": ["/etc/passwd", secret, bank.sb.path("a.db"), "a.db"]}),
                ),
                "script",
                denied,
            )
            .hides("wasmtx-secret-4711")
            .hides("root:x:0:0"),
            Case::new(
                "environment",
                attack("wasi-env", json!({})),
                "script",
                denied,
            )
            .hides(path),
            Case::new(
                "arguments",
                attack("wasi-args", json!({})),
                "script",
                denied,
            ),
            Case::new(
                "sockets",
                attack("wasi-socket", json!({"addr": addr.to_string()})),
                "script",
                denied,
            ),
            Case::new(
                "name lookup",
                attack("wasi-dns", json!({"host": "localhost"})),
                "script",
                denied,
            ),
        ],
    );

    tcp.set_nonblocking(true).unwrap();
    assert!(
        tcp.accept().is_err(),
        "a script connected to the test's TCP listener"
    );
    udp.set_nonblocking(true).unwrap();
    assert!(
        udp.recv_from(&mut [0; 64]).is_err(),
        "a script sent a UDP datagram"
    );
    let cwd = std::env::current_dir().unwrap();
    assert!(
        !cwd.join("wasmtx-escape.txt").exists(),
        "a script created a file"
    );
}

// ── one host, many attacks ──────────────────────────────────────────────────────────────

/// The library in-process, as a long-running host uses it: one `Host` (configured like
/// `--timeout 2 --max-statements 100`) serves a series of attacks, each followed by a
/// transfer that must commit.
#[test]
fn one_host_survives_every_attack_and_keeps_serving() {
    survives_every_attack_and_keeps_serving(false);
}

/// The same attacks with the hostile script run warm: an instance that served one attack
/// may serve the next, and each is contained as on a fresh instance.
#[test]
fn one_host_survives_every_attack_from_a_warm_instance_and_keeps_serving() {
    survives_every_attack_and_keeps_serving(true);
}

fn survives_every_attack_and_keeps_serving(warm: bool) {
    let bank = Bank::sqlite();
    let mut config = Config::defaults();
    config.state_dir = bank.sb.path("state");
    config.cache_dir = common::repo().join("target/wasmtx-test-cache");
    config.limits.timeout_secs = 2.0;
    config.limits.max_statements = 100;
    config.apply_participant_args(&bank.participants).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let options = HostOptions {
        warm_instances: if warm { 1 } else { 0 },
        ..HostOptions::default()
    };
    let host = runtime.block_on(Host::open(config, options)).unwrap();
    let mut hostile = host.load_script(&guest(HOSTILE)).unwrap();
    let claim = Arc::new(Warm::new(WarmSettings::default()));
    if warm {
        hostile = hostile.warm(claim.clone());
    }
    let transfer = host.load_script(&guest("examples/transfer")).unwrap();
    let run = |script: &ScriptLogic, input: &str| {
        let report = runtime
            .block_on(async { tokio::time::timeout(RUN_LIMIT, host.run(script, input)).await })
            .unwrap_or_else(|_| panic!("the host did not answer within {RUN_LIMIT:?}"));
        serde_json::to_value(&report).unwrap()
    };

    let cases = [
        Case::new(
            "infinite loop",
            attack("infinite-loop", json!({})),
            "timeout",
            DEADLINE,
        )
        .within(DEADLINE_BOUND),
        Case::new(
            "memory bomb",
            attack("memory-bomb", json!({})),
            "memory",
            "memory limit",
        ),
        Case::new(
            "recursion",
            attack("recursion", json!({"frame": "small"})),
            "trap",
            "overflowed its stack",
        ),
        Case::new(
            "handle flood",
            attack("handle-flood", json!({"count": 100_000})),
            "limit",
            "limits.max_handles",
        ),
        Case::new(
            "huge output",
            attack("huge-output", json!({"bytes": 10 << 20})),
            "limit",
            "limits.max_output_bytes",
        ),
        Case::statement("a", "COMMIT", "forbidden", TRANSACTION_CONTROL),
        Case::statement(
            "b",
            "SELECT 1; DROP TABLE accounts",
            "forbidden",
            "exactly one statement",
        ),
        Case::new(
            "thousands of statements",
            attack("many-statements", json!({"count": 5_000})),
            "limit",
            "limits.max_statements",
        ),
        Case::new(
            "files",
            attack("wasi-file", json!({"paths": ["/etc/passwd"]})),
            "script",
            "denied: ",
        ),
        // Last: if the host cannot interrupt SQLite, nothing after it could run.
        Case::query(
            "slow statement",
            SQLITE_SLOW,
            json!([]),
            "timeout",
            DEADLINE,
        )
        .within(DEADLINE_BOUND),
    ];
    each_case(&cases, |case| {
        let before = bank.contents();
        check_aborted(case, &run(&hostile, &case.input.to_string()));
        assert!(bank.contents() == before, "a database changed");

        let (input, expected) = bank.next_transfer();
        let json = run(&transfer, &input);
        assert_eq!(
            json["outcome"], "committed",
            "the transfer after it: {json}"
        );
        assert_eq!(bank.balances(), expected, "the transfer after it");
    });
    if warm {
        let (_, reused) = claim.counts();
        assert!(
            reused > 0,
            "no attack ran on an instance an earlier one left: the warm path was not tested"
        );
    }
}

// ── PostgreSQL and MariaDB ──────────────────────────────────────────────────────────────

/// PostgreSQL's own escapes, sent to `participant`. A refusal names the statement it
/// refused, also when sqlparser cannot parse that statement.
fn postgres_statement_cases(participant: &str) -> Vec<Case> {
    let forbidden =
        |sql: &str, phrase: &str| Case::statement(participant, sql, "forbidden", phrase);
    vec![
        Case::statement(participant, "SELECT pg_sleep(60)", "timeout", DEADLINE)
            .flags(TIMEOUT_2)
            .within(DEADLINE_BOUND),
        forbidden("COPY accounts TO PROGRAM 'id'", "COPY is refused"),
        forbidden("COPY accounts FROM '/etc/passwd'", "COPY is refused"),
        forbidden("COPY accounts TO STDOUT", "COPY is refused"),
        forbidden("PREPARE TRANSACTION 'wasmtx-hostile'", TRANSACTION_CONTROL),
        forbidden("COMMIT PREPARED 'wasmtx-hostile'", TRANSACTION_CONTROL),
        forbidden("ROLLBACK PREPARED 'wasmtx-hostile'", TRANSACTION_CONTROL),
        forbidden(
            "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
            TRANSACTION_CONTROL,
        ),
        forbidden("SET statement_timeout = 0", "session state"),
        forbidden("SET LOCAL statement_timeout = 0", "session state"),
        forbidden("SET ROLE postgres", "session state"),
        forbidden("SET SESSION AUTHORIZATION postgres", "session state"),
        forbidden("RESET ALL", "session state"),
        forbidden("DISCARD ALL", "session state"),
        forbidden("LISTEN wasmtx", "LISTEN/NOTIFY"),
        forbidden("NOTIFY wasmtx", "LISTEN/NOTIFY"),
        forbidden("CREATE TEMP TABLE t (x int)", "temporary objects"),
        forbidden("CREATE TABLE pg_temp.t (x int)", "temporary objects"),
        forbidden(
            "LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE",
            "explicit table locks",
        ),
        forbidden("SELECT pg_read_file('/etc/passwd')", "server file access"),
        forbidden(
            "SELECT pg_catalog.pg_read_file('/etc/passwd')",
            "server file access",
        ),
        forbidden("SELECT lo_import('/etc/passwd')", "server file access"),
        forbidden(
            "SELECT * FROM dblink('dbname=postgres', 'SELECT 1') AS t(x int)",
            "other databases",
        ),
        forbidden(
            "SELECT set_config('statement_timeout', '0', false)",
            "session state",
        ),
        forbidden("SELECT pg_advisory_lock(1)", "session-level locks"),
        forbidden(
            "SELECT pg_terminate_backend(pg_backend_pid())",
            "other sessions",
        ),
        forbidden("DO $$ BEGIN PERFORM 1; END $$", "DO is refused"),
        forbidden(
            "CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
            "procedures",
        ),
        forbidden("CREATE EXTENSION dblink", "native code"),
        Case::query(
            "PostgreSQL: a text parameter for a bigint",
            "SELECT balance FROM accounts WHERE balance = $1",
            json!([{"text": "lots"}]),
            "database",
            "database error",
        )
        .on(participant),
    ]
}

/// MySQL's and MariaDB's own escapes, sent to `participant`. A refusal names the statement
/// it refused, also when sqlparser cannot parse that statement.
fn mysql_statement_cases(participant: &str) -> Vec<Case> {
    let forbidden =
        |sql: &str, phrase: &str| Case::statement(participant, sql, "forbidden", phrase);
    vec![
        Case::statement(participant, "SELECT SLEEP(60)", "timeout", DEADLINE)
            .flags(TIMEOUT_2)
            .within(DEADLINE_BOUND),
        forbidden(
            "LOAD DATA INFILE '/etc/passwd' INTO TABLE accounts",
            "server file access",
        ),
        forbidden(
            "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE accounts",
            "server file access",
        ),
        forbidden(
            "SELECT * FROM accounts INTO OUTFILE '/tmp/wasmtx-outfile'",
            "server file access",
        ),
        forbidden(
            "SELECT * FROM accounts INTO DUMPFILE '/tmp/wasmtx-dumpfile'",
            "server file access",
        ),
        forbidden("SELECT LOAD_FILE('/etc/passwd')", "server file access"),
        forbidden("XA START 'wasmtx-hostile'", TRANSACTION_CONTROL),
        forbidden("XA END 'wasmtx-hostile'", TRANSACTION_CONTROL),
        forbidden("XA PREPARE 'wasmtx-hostile'", TRANSACTION_CONTROL),
        forbidden("XA COMMIT 'wasmtx-hostile'", TRANSACTION_CONTROL),
        forbidden("XA RECOVER", TRANSACTION_CONTROL),
        forbidden("SET autocommit = 1", "session state"),
        forbidden(
            "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
            TRANSACTION_CONTROL,
        ),
        forbidden(
            "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
            TRANSACTION_CONTROL,
        ),
        forbidden("LOCK TABLES accounts WRITE", "explicit table locks"),
        forbidden("UNLOCK TABLES", "explicit table locks"),
        forbidden("CREATE TABLE t (x INT)", "DDL on MySQL commits implicitly"),
        forbidden("DROP TABLE accounts", "DDL on MySQL commits implicitly"),
        forbidden("TRUNCATE accounts", "DDL on MySQL commits implicitly"),
        forbidden("/*!50000 COMMIT */", "executable comments"),
        forbidden("SELECT @x := 1", "session state"),
        forbidden("SELECT GET_LOCK('wasmtx', 10)", "session-level locks"),
        forbidden("CALL p()", "procedures"),
        forbidden("KILL 1", "other sessions"),
        forbidden("FLUSH TABLES", "server administration"),
        Case::query(
            "MySQL: a text parameter for a bigint",
            "UPDATE accounts SET balance = ? WHERE id = 'bob'",
            json!([{"text": "lots"}]),
            "database",
            "database error",
        )
        .on(participant),
    ]
}

/// Runs `case` while another connection holds a lock on `account`'s row at `url`, which
/// the attack's first write waits for; the lock is released before the transfer after it.
fn while_row_locked(bank: &Bank, url: &str, account: &str, case: &Case) {
    let lock = format!("BEGIN; SELECT * FROM accounts WHERE id = '{account}' FOR UPDATE");
    let attack = || attack_through_cli(bank, &guest(HOSTILE), case);
    if url.starts_with("postgres") {
        holding::<sqlx::PgConnection>(url, &lock, attack);
    } else {
        holding::<sqlx::MySqlConnection>(url, &lock, attack);
    }
    keeps_serving(bank, &case.name);
}

/// Runs `during` while a connection of type `C` to `url` has run `lock` and not yet rolled
/// back.
fn holding<C>(url: &str, lock: &str, during: impl FnOnce())
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let run = |sql: &str| sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut holder: C = runtime.block_on(C::connect(url)).expect(url);
    runtime
        .block_on(run(lock).execute(&mut holder))
        .expect(lock);
    during();
    runtime
        .block_on(run("ROLLBACK").execute(&mut holder))
        .expect("ROLLBACK");
}

/// `a` on PostgreSQL and `b` on MariaDB, in fresh `wasmtx_sandbox` databases: the shared
/// statement cases on both, each server's own escapes, and attacks stuck behind a row lock
/// another connection holds.
#[test]
fn statement_policy_holds_on_postgres_and_mariadb() {
    let (Some(postgres), Some(mysql)) = (
        common::postgres_db("wasmtx_sandbox"),
        common::mysql_db("wasmtx_sandbox"),
    ) else {
        return;
    };
    let bank = Bank::servers(&postgres, &mysql);
    let mut cases = shared_statement_cases("a");
    cases.extend(shared_statement_cases("b"));
    cases.extend(postgres_statement_cases("a"));
    cases.extend(mysql_statement_cases("b"));
    run_cases(&bank, &cases);

    let stuck = |name: &str| {
        Case::new(
            name,
            attack("infinite-loop", json!({})),
            "timeout",
            DEADLINE,
        )
        .flags(TIMEOUT_2)
        .within(DEADLINE_BOUND)
    };
    while_row_locked(
        &bank,
        &postgres,
        "alice",
        &stuck("waiting on a PostgreSQL row lock"),
    );
    while_row_locked(
        &bank,
        &mysql,
        "bob",
        &stuck("waiting on a MariaDB row lock"),
    );
}
