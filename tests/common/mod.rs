//! Shared helpers for the end-to-end tests: build guest crates once, run the real
//! `wasmtx` binary with isolated state, and reach the real databases.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod serve;

/// How long one `wasmtx` run may take before a test kills it: a hung host fails the test
/// instead of hanging it.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Whether the host was built with the `fault-injection` feature the crash tests need; under
/// `CI=true` its absence fails the test instead of skipping it.
pub fn fault_injection_built() -> bool {
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

/// Whether every file of `needed` (tools scripts/test.sh installs) is there. A missing one
/// fails the test under `CI=true`; otherwise the test is skipped, saying which.
pub fn installed(needed: &[PathBuf]) -> bool {
    let Some(missing) = needed.iter().find(|path| !path.is_file()) else {
        return true;
    };
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{} is missing: scripts/test.sh installs it",
        missing.display()
    );
    eprintln!(
        "skipping: {} is missing (scripts/test.sh installs it)",
        missing.display()
    );
    false
}

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
    let wasm = wasmtx::guest_build::build_guest(
        &repo().join(crate_dir),
        true,
        Some(&repo().join("target/guests")),
    )
    .unwrap_or_else(|e| panic!("building {crate_dir}: {e}"));
    built.insert(crate_dir.to_owned(), wasm.clone());
    wasm
}

/// An isolated place for one test: databases, state and the compiled cache.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        TestDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `wasmtx` command with this test directory's state dir and the shared compiled cache.
    // The tests of another package (bench/) share these helpers without the wasmtx binary.
    #[allow(clippy::option_env_unwrap)]
    pub fn wasmtx(&self) -> Command {
        self.command(
            option_env!("CARGO_BIN_EXE_wasmtx")
                .expect("the wasmtx binary: a test of the wasmtx package"),
        )
    }

    /// [`TestDir::wasmtx`] for another binary of the workspace (`wasmtx-devbench`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
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
        self.run_json_with(script, participants, &[], input, RUN_LIMIT)
    }

    /// [`TestDir::run_json`] with extra flags (`--timeout 2`, `--max-statements 100`),
    /// failing if `wasmtx` has not exited within `limit` (it is killed then).
    pub fn run_json_with(
        &self,
        script: &Path,
        participants: &[String],
        flags: &[&str],
        input: &str,
        limit: Duration,
    ) -> (Output, serde_json::Value) {
        let mut command = self.wasmtx();
        command
            .arg("run")
            .arg(script)
            .arg("--json")
            .args(["--input", input])
            .args(flags);
        for p in participants {
            command.args(["-p", p]);
        }
        json_within(command, limit)
    }
}

/// [`output_within`] of a command given `--json`, with its stdout parsed; fails the test if
/// it printed no JSON.
pub fn json_within(command: Command, limit: Duration) -> (Output, serde_json::Value) {
    let output = output_within(command, limit);
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "wasmtx printed no JSON ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, json)
}

/// Runs `command` to completion with its output captured; kills it and fails the test if
/// it has not exited within `limit`.
pub fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the command");
    // Drain both pipes while waiting, so a chatty child cannot block on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).ok();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the command") {
            break Some(status);
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{command:?} did not exit within {limit:?} and was killed\nstdout: {}\nstderr (end): {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(4096)..])
        ),
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
    let mut sql = String::from(
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));",
    );
    for (id, balance) in accounts {
        sql.push_str(&format!("INSERT INTO accounts VALUES ('{id}', {balance});"));
    }
    create_sqlite(path, &sql);
}

/// The variants' names in a `wasmtx bench --json` report, in order.
pub fn variant_names(report: &serde_json::Value) -> Vec<&str> {
    report["variants"]
        .as_array()
        .expect("a bench report's variants")
        .iter()
        .map(|v| v["name"].as_str().expect("a variant's name"))
        .collect()
}

/// Two SQLite files in `dir`, `a.db` with alice's account holding `alice` and `b.db` with
/// bob's holding 0, and the `-p` arguments naming them `a` and `b`.
pub fn sqlite_accounts(dir: &TestDir, alice: i64) -> (PathBuf, PathBuf, Vec<String>) {
    let (a, b) = (dir.path("a.db"), dir.path("b.db"));
    accounts_db(&a, &[("alice", alice)]);
    accounts_db(&b, &[("bob", 0)]);
    let participants = vec![
        format!("a=sqlite://{}", a.display()),
        format!("b=sqlite://{}", b.display()),
    ];
    (a, b, participants)
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

/// The `user` table of the original scenario, per server.
pub fn create_user_table(url: &str) {
    let ddl = if url.starts_with("postgres") {
        "CREATE TABLE \"user\" (id BIGSERIAL PRIMARY KEY, username VARCHAR(255) NOT NULL, password VARCHAR(255) NOT NULL, \
         created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL)"
    } else {
        "CREATE TABLE `user` (id BIGINT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(255) NOT NULL, password VARCHAR(255) NOT NULL, \
         created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL) ENGINE=InnoDB"
    };
    server_sql(url, ddl);
}

pub fn server_usernames(url: &str) -> Vec<String> {
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
pub fn wasmtx(sb: &TestDir, node: &str) -> Command {
    let mut command = sb.wasmtx();
    command.env("WASMTX_NODE", node);
    command
}

pub fn run_json(mut command: Command) -> (Output, serde_json::Value) {
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

/// `url` marked as the last agent.
pub fn as_last_agent(url: &str) -> String {
    format!("{url}?last_agent=true")
}

/// The decision rows of `node` in the last agent's database at `url`, as `[gid, decision]`.
pub fn decision_rows(url: &str, node: &str) -> Vec<Vec<String>> {
    server_sql(
        url,
        &format!(
            "SELECT gid, decision FROM wasmtx_decisions WHERE gid LIKE 'wtx.{node}.%' ORDER BY gid"
        ),
    )
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

/// The PostgreSQL server of the tests, with the `database` created afresh; `None` (after
/// printing why) when it cannot be reached outside CI. Under `CI=true` that is a failure.
pub fn postgres_db(database: &str) -> Option<String> {
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let ready = block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        // Branches an earlier, failed run left prepared in this database block DROP.
        let leftovers: Vec<(String,)> =
            sqlx::query_as("SELECT gid FROM pg_prepared_xacts WHERE database = $1")
                .bind(database)
                .fetch_all(&mut conn)
                .await?;
        for (gid,) in leftovers {
            let mut db_conn = sqlx::PgConnection::connect(&format!(
                "postgres://postgres@127.0.0.1:5432/{database}"
            ))
            .await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ROLLBACK PREPARED '{gid}'")))
                .execute(&mut db_conn)
                .await?;
            db_conn.close().await?;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut conn)
            .await?;
        conn.close().await
    });
    server_available("PostgreSQL", ready)
        .then(|| format!("postgres://postgres@127.0.0.1:5432/{database}"))
}

/// The MariaDB/MySQL server of the tests, with the `database` created afresh.
pub fn mysql_db(database: &str) -> Option<String> {
    if !mysql_reachable() {
        return None;
    }
    // The test's node is named after its database (see `node_of`).
    clear_mysql_branches(&node_of(database));
    let ready = block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/").await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}"
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await
    });
    server_available("MariaDB", ready).then(|| format!("mysql://root@127.0.0.1:3306/{database}"))
}

/// Whether the MariaDB/MySQL server of the tests answers (under CI it must: a panic if not).
pub fn mysql_reachable() -> bool {
    let ready = block_on(async {
        use sqlx::Connection;
        sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/")
            .await?
            .close()
            .await
    });
    server_available("MariaDB", ready)
}

/// The node id a test uses with `database`: its name without the `wtx_` prefix and `_`.
pub fn node_of(database: &str) -> String {
    database.trim_start_matches("wtx_").replace('_', "-")
}

fn server_available(server: &str, ready: Result<(), sqlx::Error>) -> bool {
    match ready {
        Ok(()) => true,
        Err(err) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{server} is required under CI but unreachable: {err} (scripts/setup-databases.sh prepares it)"
            )
        }
        Err(err) => {
            eprintln!(
                "skipping: {server} is unreachable ({err}); scripts/setup-databases.sh prepares it"
            );
            false
        }
    }
}

/// Runs SQL on a PostgreSQL or MySQL database by URL; rows come back as text.
pub fn server_sql(url: &str, sql: &str) -> Vec<Vec<String>> {
    block_on(async {
        use sqlx::Connection;
        let query = || sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
        if url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connecting to PostgreSQL");
            let rows = query().fetch_all(&mut conn).await.expect(sql);
            conn.close().await.ok();
            rows.iter().map(row_text).collect()
        } else {
            let mut conn = sqlx::MySqlConnection::connect(url)
                .await
                .expect("connecting to MariaDB");
            let rows = query().fetch_all(&mut conn).await.expect(sql);
            conn.close().await.ok();
            rows.iter().map(row_text).collect()
        }
    })
}

/// A row's cells as text: strings, integers and bytes as they are, NULL as `NULL`.
fn row_text<R: sqlx::Row>(row: &R) -> Vec<String>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    (0..row.len())
        .map(|i| {
            let text = row.try_get::<Option<String>, _>(i).ok().flatten();
            text.or_else(|| {
                row.try_get::<Option<i64>, _>(i)
                    .ok()
                    .flatten()
                    .map(|v| v.to_string())
            })
            .or_else(|| {
                row.try_get::<Option<i32>, _>(i)
                    .ok()
                    .flatten()
                    .map(|v| v.to_string())
            })
            .or_else(|| {
                let bytes = row.try_get::<Option<Vec<u8>>, _>(i).ok().flatten();
                bytes.map(|v| String::from_utf8_lossy(&v).into_owned())
            })
            .unwrap_or_else(|| "NULL".into())
        })
        .collect()
}

/// Creates the transfer example's `accounts` table on a server database, with rows.
pub fn server_accounts(url: &str, accounts: &[(&str, i64)]) {
    let mut sql =
        String::from("CREATE TABLE accounts (id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL)");
    if url.starts_with("mysql") {
        sql.push_str(" ENGINE=InnoDB");
    }
    server_sql(url, &sql);
    for (id, balance) in accounts {
        server_sql(
            url,
            &format!("INSERT INTO accounts (id, balance) VALUES ('{id}', {balance})"),
        );
    }
}

/// The balance of `account` on a server database.
pub fn server_balance(url: &str, account: &str) -> i64 {
    server_sql(
        url,
        &format!("SELECT balance FROM accounts WHERE id = '{account}'"),
    )[0][0]
        .parse()
        .unwrap()
}

/// Rolls back MariaDB branches an earlier, failed run of this test left prepared for
/// `node` (they hold locks that would block dropping its database).
pub fn clear_mysql_branches(node: &str) {
    let prefix = format!("wtx.{node}.");
    for row in server_sql("mysql://root@127.0.0.1:3306/", "XA RECOVER") {
        let (gtrid_len, data) = (row[1].parse::<usize>().unwrap_or(0), &row[3]);
        if data.starts_with(&prefix) && data.len() > gtrid_len {
            let (gtrid, bqual) = data.split_at(gtrid_len);
            server_sql(
                "mysql://root@127.0.0.1:3306/",
                &format!("XA ROLLBACK '{gtrid}', '{bqual}'"),
            );
        }
    }
}

/// Prepared branches of `node` still on the PostgreSQL cluster and the MariaDB server.
pub fn prepared_branches(node: &str) -> Vec<String> {
    let prefix = format!("wtx.{node}.");
    let mut found: Vec<String> = server_sql(
        "postgres://postgres@127.0.0.1:5432/postgres",
        "SELECT gid FROM pg_prepared_xacts",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    found.extend(
        server_sql("mysql://root@127.0.0.1:3306/", "XA RECOVER")
            .into_iter()
            .map(|r| r[3].clone()),
    );
    found.retain(|gid| gid.starts_with(&prefix));
    found
}

/// The least-privilege role scripts/setup-databases.sh creates on both servers.
pub const APP_ROLE: &str = "wasmtx_app";

/// Grants [`APP_ROLE`] what a participant needs on the database of `admin_url` — reading
/// and writing its tables (and, on PostgreSQL, using its sequences), nothing else — and
/// returns the URL that connects to that database as the role. Call it after creating the
/// tables.
pub fn least_privilege(admin_url: &str) -> String {
    let (scheme, rest) = admin_url.split_once("://").expect("a URL");
    let (_, host_and_db) = rest.split_once('@').expect("a URL with a user");
    let database = host_and_db
        .rsplit('/')
        .next()
        .expect("a URL with a database");
    if scheme == "postgres" {
        server_sql(
            admin_url,
            &format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}; \
                 GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}"
            ),
        );
    } else {
        server_sql(
            admin_url,
            &format!("GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.* TO '{APP_ROLE}'@'%'"),
        );
    }
    format!("{scheme}://{APP_ROLE}:{APP_ROLE}@{host_and_db}")
}
