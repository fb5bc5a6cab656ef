//! Helpers for tests that drive `wasmtx serve` processes over HTTP: configuration files
//! with test tokens, a server process that is killed when dropped, JSON requests, and the
//! PostgreSQL/MariaDB bank the transfer example moves money in.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::*;

pub const ADMIN: &str = "admin-secret";
pub const INVOKER: &str = "invoke-secret";
pub const READER: &str = "read-secret";

/// The lease and takeover grace of the cluster tests' nodes.
pub const LEASE_TTL_MS: u64 = 2000;
pub const GRACE_MS: u64 = 1000;

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// A configuration file with the test tokens, `participants` (NAME, URL) and `extra` TOML.
pub fn write_config(dir: &TestDir, participants: &[(&str, String)], extra: &str) -> PathBuf {
    // `extra` may start with top-level keys (`node = …`), so it goes before any table.
    let mut text = format!(
        "state_dir = {:?}\ncache_dir = {:?}\n{extra}\n\n[participants]\n",
        dir.path("state"),
        repo().join("target/wasmtx-test-cache")
    );
    for (name, url) in participants {
        text.push_str(&format!("{name} = {url:?}\n"));
    }
    text.push_str(&format!(
        "\n[[server.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"admin\", \"invoke\", \"read\"]\n\n[[server.tokens]]\nname = \"app\"\nsha256 = \"{}\"\nscopes = [\"invoke\"]\n\n[[server.tokens]]\nname = \"dashboard\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
        sha256_hex(ADMIN),
        sha256_hex(INVOKER),
        sha256_hex(READER)
    ));
    let path = dir.path("wasmtx.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `wasmtx serve`; killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl ServerProcess {
    /// Starts a server with `config` and waits until `/readyz` says ready.
    pub fn start(dir: &TestDir, config: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        let server = Self::spawn(dir, config, envs);
        server.wait_ready(Duration::from_secs(90));
        server
    }

    /// Starts a server and returns once it listens (it may not be ready yet).
    pub fn spawn(dir: &TestDir, config: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        let mut command: Command = dir.wasmtx();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("starting wasmtx serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                tx.send(line).ok();
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                child.kill().ok();
                panic!(
                    "wasmtx serve printed no address; stderr: {}",
                    String::from_utf8_lossy(&stderr.lock().unwrap())
                )
            });
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        ServerProcess { child, url, stderr }
    }

    pub fn wait_ready(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let (status, body) = http(&self.url, "GET", "/readyz", None, None);
            if status == 200 {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "not ready after {limit:?}: {body}; stderr: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit; its status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < limit,
                "the server did not exit within {limit:?}; stderr: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn publish(&self, name: &str, version: &str, wasm: &Path) -> (u16, Value) {
        let bytes = std::fs::read(wasm).unwrap();
        http_bytes(
            &self.url,
            "PUT",
            &format!("/v1/plugins/{name}/versions/{version}"),
            Some(ADMIN),
            bytes,
        )
    }

    pub fn invoke(&self, name: &str, body: Value) -> (u16, Value) {
        http(
            &self.url,
            "POST",
            &format!("/v1/plugins/{name}/invoke"),
            Some(INVOKER),
            Some(body),
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// An HTTP client for the servers under test (with the TLS provider they all use).
pub fn client() -> reqwest::Client {
    wasmtx::tls::install_default_provider();
    reqwest::Client::new()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// What `/metrics` answers (it needs no token).
pub fn metrics_text(url: &str) -> String {
    runtime().block_on(async {
        client()
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// One JSON request; the status and the JSON body (`Null` when there is none).
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    runtime().block_on(request(base, method, path, token, bytes, &[]))
}

pub fn http_bytes(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    runtime().block_on(request(base, method, path, token, Some(body), &[]))
}

pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let client = client();
    let mut builder = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(token) = token {
        builder = builder.bearer_auth(token);
    }
    for (key, value) in headers {
        builder = builder.header(*key, *value);
    }
    if let Some(body) = body {
        builder = builder.body(body);
    }
    let response = builder.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn transfer_body(from: (&str, &str), to: (&str, &str), amount: i64) -> Value {
    json!({"input": serde_json::from_str::<Value>(&transfer_input(from, to, amount)).unwrap()})
}

/// Two PostgreSQL/MariaDB databases with accounts, as URLs of the least-privilege role the
/// servers connect as (`wasmtx serve` refuses superusers); `None` when the servers are
/// unreachable outside CI.
pub fn server_bank(name: &str) -> Option<(String, String)> {
    let pg = postgres_db(&format!("wtx_{name}"))?;
    let my = mysql_db(&format!("wtx_{name}"))?;
    server_accounts(&pg, &[("alice", 1000)]);
    server_accounts(&my, &[("bob", 1000)]);
    Some((least_privilege(&pg), least_privilege(&my)))
}

/// [`server_bank`] for a cluster test whose nodes are `nodes`: MariaDB branches an earlier,
/// failed run of theirs left prepared are rolled back first (they would block dropping the
/// database).
pub fn cluster_bank(name: &str, nodes: &[&str]) -> Option<(String, String)> {
    if !mysql_reachable() {
        return None;
    }
    for node in nodes {
        clear_mysql_branches(node);
    }
    server_bank(name)
}

/// Two SQLite files, alice (100) on participant `a` and bob (0) on `b`, and a configuration
/// with them and `extra`.
pub fn sqlite_bank(dir: &TestDir, extra: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (a, b) = (dir.path("a.db"), dir.path("b.db"));
    accounts_db(&a, &[("alice", 100)]);
    accounts_db(&b, &[("bob", 0)]);
    let config = write_config(
        dir,
        &[
            ("a", format!("sqlite://{}", a.display())),
            ("b", format!("sqlite://{}", b.display())),
        ],
        extra,
    );
    (a, b, config)
}

pub fn bank_total(pg: &str, my: &str) -> i64 {
    server_balance(pg, "alice") + server_balance(my, "bob")
}

/// Sends `count` transfers of 1 from alice (pg) to bob (my), `parallel` at a time; the
/// statuses.
pub async fn transfer_stream(
    url: String,
    count: usize,
    parallel: usize,
) -> Vec<Result<u16, String>> {
    transfer_stream_over(vec![url], count, parallel).await
}

/// [`transfer_stream`] spread over several servers in turn.
pub async fn transfer_stream_over(
    urls: Vec<String>,
    count: usize,
    parallel: usize,
) -> Vec<Result<u16, String>> {
    transfer_answers_over(urls, count, parallel)
        .await
        .into_iter()
        .map(|answer| answer.map(|(status, _)| status))
        .collect()
}

/// [`transfer_stream_over`], with each answer's body.
pub async fn transfer_answers_over(
    urls: Vec<String>,
    count: usize,
    parallel: usize,
) -> Vec<Result<(u16, Value), String>> {
    use futures::StreamExt;
    let body = transfer_body(("pg", "alice"), ("my", "bob"), 1).to_string();
    wasmtx::tls::install_default_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    futures::stream::iter(0..count)
        .map(|i| {
            let (url, body, client) = (urls[i % urls.len()].clone(), body.clone(), client.clone());
            async move {
                let response = client
                    .post(format!("{url}/v1/plugins/transfer/invoke"))
                    .bearer_auth(INVOKER)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let text = response.text().await.map_err(|e| e.to_string())?;
                Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

/// One cluster node's configuration: the bank's participants (`pg`, `my`), the shared
/// decision log `log`, short leases ([`LEASE_TTL_MS`], [`GRACE_MS`]) and `extra` TOML.
pub fn cluster_config(
    dir: &TestDir,
    node: &str,
    bank: &(String, String),
    log: &str,
    extra: &str,
) -> PathBuf {
    write_config(
        dir,
        &[("pg", bank.0.clone()), ("my", bank.1.clone())],
        &format!(
            "node = \"{node}\"\n{extra}\n[decision_log]\nurl = \"{log}\"\n[cluster]\nlease_ttl_ms = {LEASE_TTL_MS}\ntakeover_grace_ms = {GRACE_MS}\n"
        ),
    )
}

/// Waits until nothing of `node` is prepared on either server; how long it took.
pub fn wait_no_prepared(node: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let left = prepared_branches(node);
        if left.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{} branches of {node} still prepared after {limit:?}: {left:?}",
            left.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The gid of a prepared branch as [`prepared_branches`] lists it (`<gid>.<k>` from
/// PostgreSQL, `<gid><k>` from MariaDB's `XA RECOVER`).
pub fn gid_of_branch(branch: &str) -> String {
    let mut parts = branch.splitn(3, '.');
    let (wtx, node, rest) = (parts.next(), parts.next(), parts.next());
    let (Some(wtx), Some(node), Some(rest)) = (wtx, node, rest) else {
        panic!("{branch} is not a branch of a wasmtx transaction")
    };
    format!("{wtx}.{node}.{}", &rest[..26.min(rest.len())])
}

/// How many branches of `gid` are prepared on the bank's servers.
pub fn branches_of(node: &str, gid: &str) -> usize {
    prepared_branches(node)
        .iter()
        .filter(|b| gid_of_branch(b) == gid)
        .count()
}

/// Runs one transfer of `amount` from `account` on pg to `account` on my with `wasmtx run`
/// and `config` (node `node`), the host made to exit at protocol step `point`. Returns the
/// transaction's gid and the participants (`pg`, `my`) where a branch of it is prepared; at
/// least one is. (A prepared branch holds its rows' locks: give each transaction left in
/// doubt accounts of its own.)
pub fn crash_transfer(
    dir: &TestDir,
    config: &Path,
    node: &str,
    point: &str,
    account: &str,
    amount: i64,
) -> (String, Vec<&'static str>) {
    let before = prepared_branches(node);
    let mut command = dir.wasmtx();
    command
        .arg("run")
        .arg(guest("examples/transfer"))
        .arg("--config")
        .arg(config)
        .args(["--json", "--input"])
        .arg(transfer_input(("pg", account), ("my", account), amount))
        .env("WASMTX_FAULT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = output_within(command, RUN_LIMIT);
    assert_eq!(
        out.status.code(),
        Some(86),
        "the host should have stopped at {point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A PREPARE sent before the host stopped may still be finishing on its server.
    let started = Instant::now();
    let mut new: Vec<String> = Vec::new();
    loop {
        let now: Vec<String> = prepared_branches(node)
            .into_iter()
            .filter(|b| !before.contains(b))
            .collect();
        if !now.is_empty() && now == new && started.elapsed() > Duration::from_millis(500) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no branch was prepared when the host stopped at {point}"
        );
        new = now;
        std::thread::sleep(Duration::from_millis(100));
    }
    let gid = gid_of_branch(&new[0]);
    assert!(
        new.iter().all(|b| gid_of_branch(b) == gid),
        "one transaction: {new:?}"
    );
    let on: Vec<&'static str> = new
        .iter()
        .map(|b| {
            if b.starts_with(&format!("{gid}.")) {
                "pg"
            } else {
                "my"
            }
        })
        .collect();
    (gid, on)
}

/// `POST /v1/transactions/{gid}/resolve` as the admin token `ops`, asking for `outcome`
/// (`commit` or `rollback`), the reason naming it.
pub fn force_resolve(url: &str, gid: &str, outcome: &str, allow_heuristic: bool) -> (u16, Value) {
    http(
        url,
        "POST",
        &format!("/v1/transactions/{gid}/resolve"),
        Some(ADMIN),
        Some(json!({
            "outcome": outcome,
            "reason": format!("ticket OPS-1: {outcome} {gid}"),
            "allow_heuristic": allow_heuristic,
        })),
    )
}

/// `GET /v1/transactions/{gid}`.
pub fn tx_status(url: &str, gid: &str) -> (u16, Value) {
    http(
        url,
        "GET",
        &format!("/v1/transactions/{gid}"),
        Some(READER),
        None,
    )
}

/// Asserts that the server at `url` answers `state` for `gid`, with the force-resolve that
/// put it there recorded: by `ops`, asking `outcome`, its reason, at a time after `since_ms`.
pub fn assert_resolution_recorded(url: &str, gid: &str, state: &str, outcome: &str, since_ms: i64) {
    let (status, tx) = tx_status(url, gid);
    assert_eq!((status, tx["status"].as_str()), (200, Some(state)), "{tx}");
    let resolution = &tx["resolution"];
    assert_eq!(resolution["by"], "ops", "{tx}");
    assert_eq!(resolution["asked"], outcome, "{tx}");
    assert_eq!(
        resolution["reason"],
        format!("ticket OPS-1: {outcome} {gid}"),
        "{tx}"
    );
    let at = resolution["at"].as_i64().unwrap_or_default();
    let now = now_ms();
    assert!(
        since_ms <= at && at <= now,
        "recorded at {at}, not in [{since_ms}, {now}]: {tx}"
    );
    assert_eq!(
        resolution["heuristic"],
        state.starts_with("heuristic"),
        "{tx}"
    );
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Asserts that force-resolving `gid` as `outcome` is refused with 409 `code`.
pub fn assert_resolve_refused(
    url: &str,
    gid: &str,
    outcome: &str,
    allow_heuristic: bool,
    code: &str,
) {
    let (status, body) = force_resolve(url, gid, outcome, allow_heuristic);
    assert_eq!((status, body["code"].as_str()), (409, Some(code)), "{body}");
}

/// Force-resolves `gid` as `outcome` and asserts it ends as `state` (heuristic when the
/// state says so); the answer.
pub fn assert_resolved(
    url: &str,
    gid: &str,
    outcome: &str,
    allow_heuristic: bool,
    state: &str,
) -> Value {
    let (status, body) = force_resolve(url, gid, outcome, allow_heuristic);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["heuristic"].as_bool()),
        (Some(state), Some(state.starts_with("heuristic"))),
        "{body}"
    );
    body
}

/// `POST /v1/transactions/{gid}/retry`, asserting that it committed `branches` branches.
pub fn assert_retry_commits(url: &str, gid: &str, branches: usize) {
    let (status, report) = http(
        url,
        "POST",
        &format!("/v1/transactions/{gid}/retry"),
        Some(ADMIN),
        None,
    );
    assert_eq!(status, 200, "{report}");
    let actions: Vec<&str> = report["branches"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["action"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(actions, vec!["committed"; branches], "{report}");
}

/// Adds `accounts`, each with 1000, on both databases of a bank.
pub fn open_accounts(bank: &(String, String), accounts: &[&str]) {
    for url in [&bank.0, &bank.1] {
        for account in accounts {
            server_sql(
                url,
                &format!("INSERT INTO accounts (id, balance) VALUES ('{account}', 1000)"),
            );
        }
    }
}

/// `account`'s balance on pg and on my.
pub fn pair_balance(bank: &(String, String), account: &str) -> (i64, i64) {
    (
        server_balance(&bank.0, account),
        server_balance(&bank.1, account),
    )
}

/// What committing only the prepared branches in `on` of a transfer of `amount` leaves of
/// two balances of 1000.
pub fn applied(on: &[&str], amount: i64) -> (i64, i64) {
    (
        1000 - if on.contains(&"pg") { amount } else { 0 },
        1000 + if on.contains(&"my") { amount } else { 0 },
    )
}
