//! End-to-end tests of `wasmtx serve`: real server processes on 127.0.0.1 (port 0), real
//! SQLite files, PostgreSQL and MariaDB, driven over HTTP, asserting on what the databases
//! hold.

mod common;

use std::time::{Duration, Instant};

use common::serve::*;
use common::*;
use serde_json::{Value, json};
use wasmtx::server::PROBLEM_JSON;

const TRANSFER: &str = "examples/transfer";
const INSERT_USER: &str = "examples/insert-user";
const HOSTILE: &str = "tests/guests/hostile";

// ── the basics ──────────────────────────────────────────────────────────────────────────

#[test]
fn publish_and_invoke_commits_on_two_sqlite_files_and_an_abort_changes_nothing() {
    let dir = TestDir::new();
    let (a, b, config) = sqlite_bank(&dir, "");
    let server = ServerProcess::start(&dir, &config, &[]);
    let (status, published) = server.publish("transfer", "1.0.0", &guest(TRANSFER));
    assert_eq!(status, 201, "{published}");
    assert!(published["digest"].as_str().unwrap().starts_with("sha256:"));

    let (status, body) = server.invoke("transfer", transfer_body(("a", "alice"), ("b", "bob"), 30));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "committed");
    assert_eq!(body["plugin"]["version"], "1.0.0");
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (70, 30));

    let (status, body) =
        server.invoke("transfer", transfer_body(("a", "alice"), ("b", "bob"), 500));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "script-aborted");
    assert!(
        body["detail"].as_str().unwrap().contains("insufficient"),
        "{body}"
    );
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (70, 30));

    // The status of both, by gid, from the history.
    let gid = body["gid"].as_str().unwrap();
    let (status, tx) = http(
        &server.url,
        "GET",
        &format!("/v1/transactions/{gid}"),
        Some(READER),
        None,
    );
    assert_eq!(
        (status, tx["status"].as_str()),
        (200, Some("aborted")),
        "{tx}"
    );
    let (status, page) = http(
        &server.url,
        "GET",
        "/v1/transactions?plugin=transfer",
        Some(READER),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(page["transactions"].as_array().unwrap().len(), 2, "{page}");

    // Each phase the two reached has its histogram, the wait for a slot too.
    let metrics = metrics_text(&server.url);
    for phase in ["queue", "begin", "script", "commit", "rollback"] {
        let count = format!("wasmtx_phase_duration_seconds_count{{phase=\"{phase}\"}}");
        assert!(metrics.contains(&count), "{count} missing: {metrics}");
    }
}

#[test]
fn transfers_commit_on_postgres_and_mariadb_and_the_insufficient_funds_abort_changes_nothing() {
    let Some((pg, my)) = server_bank("srv_basic") else {
        return;
    };
    let dir = TestDir::new();
    let config = write_config(
        &dir,
        &[("pg", pg.clone()), ("my", my.clone())],
        "node = \"srv-basic\"",
    );
    let server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    let (status, body) = server.invoke(
        "transfer",
        transfer_body(("pg", "alice"), ("my", "bob"), 40),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (960, 1040)
    );
    let (status, body) = server.invoke(
        "transfer",
        transfer_body(("pg", "alice"), ("my", "bob"), 5000),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("script-aborted")),
        "{body}"
    );
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (960, 1040)
    );
    assert!(prepared_branches("srv-basic").is_empty());
}

#[test]
fn the_seed_scenario_through_the_api_commits_a_user_row_in_test1_and_test2_and_a_clash_aborts() {
    let (Some(test1), Some(test2)) = (mysql_db("wtx_srv_test1"), mysql_db("wtx_srv_test2")) else {
        return;
    };
    let table = "CREATE TABLE `user` (username VARCHAR(64) PRIMARY KEY, password VARCHAR(255) NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL) ENGINE=InnoDB";
    server_sql(&test1, table);
    server_sql(&test2, table);
    // The clash: `bob` exists on test2 only.
    server_sql(
        &test2,
        "INSERT INTO `user` VALUES ('bob', 'x', NOW(), NOW())",
    );
    let (test1, test2) = (least_privilege(&test1), least_privilege(&test2));
    let dir = TestDir::new();
    let config = write_config(
        &dir,
        &[("test1", test1.clone()), ("test2", test2.clone())],
        "node = \"srv-seed\"",
    );
    let server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(
        server
            .publish("insert-user", "1.0.0", &guest(INSERT_USER))
            .0,
        201
    );
    let users = |url: &str| server_sql(url, "SELECT username FROM `user` ORDER BY username");

    let (status, body) = server.invoke(
        "insert-user",
        json!({"input": {"username": "ann", "password": "s3cret"}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!({"inserted": 2}));
    assert_eq!(users(&test1), vec![vec!["ann".to_string()]]);
    assert_eq!(
        users(&test2),
        vec![vec!["ann".to_string()], vec!["bob".to_string()]]
    );

    let (status, body) = server.invoke(
        "insert-user",
        json!({"input": {"username": "bob", "password": "y"}}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("Duplicate"),
        "{body}"
    );
    assert_eq!(
        users(&test1),
        vec![vec!["ann".to_string()]],
        "nothing of the clash is left"
    );
    assert!(prepared_branches("srv-seed").is_empty());
}

// ── bad input ───────────────────────────────────────────────────────────────────────────

#[test]
fn bad_input_gets_a_problem_and_changes_nothing() {
    let dir = TestDir::new();
    let (a, b, config) = sqlite_bank(&dir, "[server]\nmax_upload_bytes = 4000000\n");
    let server = ServerProcess::start(&dir, &config, &[]);
    let url = &server.url;
    let put = |name: &str, bytes: Vec<u8>| {
        http_bytes(
            url,
            "PUT",
            &format!("/v1/plugins/{name}/versions/1.0.0"),
            Some(ADMIN),
            bytes,
        )
    };
    let expect = |(status, body): (u16, Value), want: u16, code: &str| {
        assert_eq!(
            (status, body["code"].as_str()),
            (want, Some(code)),
            "{body}"
        );
        assert!(
            !body["detail"].as_str().unwrap_or_default().is_empty(),
            "{body}"
        );
    };
    expect(put("junk", b"not wasm at all".to_vec()), 400, "not-wasm");
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    expect(put("core", core_module), 400, "core-module");
    expect(
        put(
            "other",
            std::fs::read(guest("tests/guests/other-world")).unwrap(),
        ),
        400,
        "wrong-world",
    );
    expect(put("big", vec![0u8; 5_000_000]), 413, "too-large");
    expect(
        put("Bad Name", std::fs::read(guest(TRANSFER)).unwrap()),
        400,
        "invalid-name",
    );
    let (status, list) = http(url, "GET", "/v1/plugins", Some(READER), None);
    assert_eq!((status, list), (200, json!([])), "nothing was registered");

    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    let good = transfer_body(("a", "alice"), ("b", "bob"), 1);
    expect(server.invoke("nope", good.clone()), 404, "plugin-not-found");
    let mut unknown_version = good.clone();
    unknown_version["version"] = "9.9.9".into();
    expect(
        server.invoke("transfer", unknown_version),
        404,
        "version-not-found",
    );
    let mut unknown_participant = good.clone();
    unknown_participant["participants"] = json!(["a", "zzz"]);
    expect(
        server.invoke("transfer", unknown_participant),
        400,
        "unknown-participant",
    );
    let malformed = runtime().block_on(request(
        url,
        "POST",
        "/v1/plugins/transfer/invoke",
        Some(INVOKER),
        Some(b"{\"input\": ".to_vec()),
        &[],
    ));
    expect(malformed, 400, "malformed-json");
    let deep = format!(
        "{{\"input\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep = runtime().block_on(request(
        url,
        "POST",
        "/v1/plugins/transfer/invoke",
        Some(INVOKER),
        Some(deep.into_bytes()),
        &[],
    ));
    assert!(matches!(deep.0, 400 | 413), "{deep:?}");
    let too_big = json!({"input": {"pad": "x".repeat(2 << 20)}});
    expect(server.invoke("transfer", too_big), 413, "too-large");

    // Tokens: none, unknown, without the scope.
    expect(
        http(
            url,
            "POST",
            "/v1/plugins/transfer/invoke",
            None,
            Some(good.clone()),
        ),
        401,
        "unauthenticated",
    );
    expect(
        http(
            url,
            "POST",
            "/v1/plugins/transfer/invoke",
            Some("guess"),
            Some(good.clone()),
        ),
        401,
        "unauthenticated",
    );
    expect(
        http(
            url,
            "POST",
            "/v1/plugins/transfer/invoke",
            Some(READER),
            Some(good.clone()),
        ),
        403,
        "forbidden",
    );
    expect(
        http_bytes(
            url,
            "PUT",
            "/v1/plugins/x/versions/1.0.0",
            Some(INVOKER),
            std::fs::read(guest(TRANSFER)).unwrap(),
        ),
        403,
        "forbidden",
    );
    expect(
        http(url, "GET", "/v1/in-doubt", Some(INVOKER), None),
        403,
        "forbidden",
    );
    // Health checks need no token.
    assert_eq!(http(url, "GET", "/healthz", None, None).0, 200);

    assert_eq!(
        (balance(&a, "alice"), balance(&b, "bob")),
        (100, 0),
        "nothing moved"
    );
    // The same bytes again are fine; other bytes under the version are a conflict.
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 200);
    expect(
        server.publish("transfer", "1.0.0", &guest(INSERT_USER)),
        409,
        "version-exists",
    );
    // Withdrawn: 410.
    assert_eq!(
        http(
            url,
            "DELETE",
            "/v1/plugins/transfer/versions/1.0.0",
            Some(ADMIN),
            None
        )
        .0,
        200
    );
    expect(server.invoke("transfer", good), 410, "plugin-withdrawn");
}

#[test]
fn the_openapi_document_lists_every_route() {
    let dir = TestDir::new();
    let a = dir.path("a.db");
    accounts_db(&a, &[("alice", 1)]);
    let config = write_config(&dir, &[("a", format!("sqlite://{}", a.display()))], "");
    let server = ServerProcess::start(&dir, &config, &[]);
    let (status, doc) = http(&server.url, "GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().expect("paths");
    for route in [
        "/v1/plugins",
        "/v1/plugins/{name}",
        "/v1/plugins/{name}/versions/{version}",
        "/v1/plugins/{name}/versions/{version}/wasm",
        "/v1/plugins/{name}/aliases/{alias}",
        "/v1/plugins/{name}/invoke",
        "/v1/transactions",
        "/v1/transactions/{gid}",
        "/v1/transactions/{gid}/retry",
        "/v1/transactions/{gid}/resolve",
        "/v1/in-doubt",
        "/v1/recovery/run",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(route),
            "{route} missing from {:?}",
            paths.keys()
        );
    }
    // Metrics: the request just made is counted by its route template.
    let metrics = metrics_text(&server.url);
    assert!(
        metrics.contains("wasmtx_http_requests_total{route=\"/v1/openapi.json\""),
        "{metrics}"
    );
}

#[test]
fn errors_are_problems_and_version_needs_a_token() {
    let dir = TestDir::new();
    let (_, _, config) = sqlite_bank(&dir, "");
    let server = ServerProcess::start(&dir, &config, &[]);
    let raw = |method: &str, path: &str, token: Option<&str>| {
        runtime().block_on(async {
            let mut request =
                client().request(method.parse().unwrap(), format!("{}{path}", server.url));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (kind, authenticate) = (header("content-type"), header("www-authenticate"));
            let status = response.status().as_u16();
            let body: Value =
                serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
            (status, kind, authenticate, body)
        })
    };
    // The node and participants are not for anyone: /v1/version needs the read scope.
    let (status, kind, authenticate, body) = raw("GET", "/v1/version", None);
    assert_eq!(
        (status, kind.as_str(), authenticate.as_str()),
        (401, PROBLEM_JSON, "Bearer")
    );
    assert_eq!(body["code"], "unauthenticated");
    let (status, _, _, body) = raw("GET", "/v1/version", Some(READER));
    assert_eq!(status, 200);
    assert_eq!(body["participants"], json!(["a", "b"]));
    // A method the route does not have: 405 with a problem body.
    let (status, kind, _, body) = raw("DELETE", "/v1/plugins", Some(ADMIN));
    assert_eq!((status, kind.as_str()), (405, PROBLEM_JSON));
    assert_eq!(body["code"], "method-not-allowed");
    // A status filter that names no state is refused, not answered with an empty list.
    let (status, kind, _, body) = raw("GET", "/v1/transactions?status=bogus", Some(READER));
    assert_eq!((status, kind.as_str()), (400, PROBLEM_JSON), "{body}");
    assert_eq!(body["code"], "invalid-query");
    let (status, _, _, _) = raw("GET", "/v1/transactions?status=committed", Some(READER));
    assert_eq!(status, 200);
}

// ── concurrency, idempotency ────────────────────────────────────────────────────────────

#[test]
fn sixty_four_concurrent_transfers_between_the_same_accounts_all_end_and_conserve_the_total() {
    let Some((pg, my)) = server_bank("srv_many") else {
        return;
    };
    let dir = TestDir::new();
    let config = write_config(
        &dir,
        &[("pg", pg.clone()), ("my", my.clone())],
        "node = \"srv-many\"\n[server]\nconcurrency = 64\nmax_connections = 64\nqueue_timeout_ms = 30000\n",
    );
    let server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    let statuses = runtime().block_on(transfer_stream(server.url.clone(), 64, 64));
    let committed = statuses.iter().filter(|s| **s == Ok(200)).count();
    assert!(
        statuses.iter().all(|s| s.is_ok()),
        "every request got an answer: {statuses:?}"
    );
    assert!(committed > 0, "{statuses:?}");
    assert_eq!(bank_total(&pg, &my), 2000);
    assert_eq!(
        server_balance(&my, "bob"),
        1000 + committed as i64,
        "each 200 moved exactly 1: {statuses:?}"
    );
    assert!(prepared_branches("srv-many").is_empty());
}

#[test]
fn an_idempotency_key_runs_once_also_across_a_restart_and_another_body_is_a_conflict() {
    let dir = TestDir::new();
    let (a, b, config) = sqlite_bank(&dir, "");
    let body = transfer_body(("a", "alice"), ("b", "bob"), 10)
        .to_string()
        .into_bytes();
    let keyed = |url: &str, body: Vec<u8>| {
        runtime().block_on(request(
            url,
            "POST",
            "/v1/plugins/transfer/invoke",
            Some(INVOKER),
            Some(body),
            &[("Idempotency-Key", "order-1")],
        ))
    };
    let first = {
        let server = ServerProcess::start(&dir, &config, &[]);
        assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
        let first = keyed(&server.url, body.clone());
        assert_eq!(first.0, 200, "{:?}", first.1);
        let again = keyed(&server.url, body.clone());
        assert_eq!(again, first, "the same answer, not a second run");
        // Two at once with a fresh key: one run.
        let both = runtime().block_on(async {
            let send = || {
                request(
                    &server.url,
                    "POST",
                    "/v1/plugins/transfer/invoke",
                    Some(INVOKER),
                    Some(body.clone()),
                    &[("Idempotency-Key", "order-2")],
                )
            };
            futures::join!(send(), send())
        });
        assert_eq!(both.0, both.1);
        first
    };
    assert_eq!(
        (balance(&a, "alice"), balance(&b, "bob")),
        (80, 20),
        "two keys, two runs"
    );
    let server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(
        keyed(&server.url, body.clone()),
        first,
        "after a restart too"
    );
    let other = transfer_body(("a", "alice"), ("b", "bob"), 11)
        .to_string()
        .into_bytes();
    let conflict = keyed(&server.url, other);
    assert_eq!(
        (conflict.0, conflict.1["code"].as_str()),
        (409, Some("idempotency-conflict"))
    );
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (80, 20));
}

// ── faults ──────────────────────────────────────────────────────────────────────────────

#[test]
fn sigkill_during_a_stream_then_a_restart_recovers_everything_before_ready() {
    let Some((pg, my)) = server_bank("srv_kill") else {
        return;
    };
    let dir = TestDir::new();
    let config = write_config(
        &dir,
        &[("pg", pg.clone()), ("my", my.clone())],
        "node = \"srv-kill\"\n[limits]\ntimeout_secs = 2\n",
    );
    // Each transaction holds a while after its COMMIT is recorded (with the fault-injection
    // build), so the kill surely finds decided branches prepared.
    let server = ServerProcess::start(
        &dir,
        &config,
        &[("WASMTX_FAULT_PAUSE", "after-decision:300")],
    );
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    let url = server.url.clone();
    let stream = std::thread::spawn(move || runtime().block_on(transfer_stream(url, 400, 16)));
    std::thread::sleep(Duration::from_millis(1500));
    let waiting = Instant::now();
    while prepared_branches("srv-kill").is_empty() && waiting.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal(libc::SIGKILL);
    let prepared_at_kill = prepared_branches("srv-kill").len();
    let statuses = stream.join().unwrap();
    drop(server);
    let answered = statuses.iter().filter(|s| **s == Ok(200)).count();
    assert!(
        answered > 0,
        "some transfers committed before the kill: {statuses:?}"
    );
    if cfg!(feature = "fault-injection") {
        assert!(
            prepared_at_kill > 0,
            "the kill left branches prepared for the restart to recover"
        );
    }

    let restarted = ServerProcess::start(&dir, &config, &[]);
    assert!(
        prepared_branches("srv-kill").is_empty(),
        "ready means nothing is left prepared"
    );
    assert_eq!(bank_total(&pg, &my), 2000);
    assert!(
        server_balance(&my, "bob") >= 1000 + answered as i64,
        "every answered commit is there"
    );
    let (status, in_doubt) = http(&restarted.url, "GET", "/v1/in-doubt", Some(READER), None);
    assert_eq!(
        (status, in_doubt["entries"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{in_doubt}"
    );
}

#[test]
fn a_client_that_disconnects_mid_invoke_leaves_no_prepared_branch() {
    let Some((pg, my)) = server_bank("srv_gone") else {
        return;
    };
    let dir = TestDir::new();
    let config = write_config(
        &dir,
        &[("pg", pg.clone()), ("my", my.clone())],
        "node = \"srv-gone\"",
    );
    // Phase 2 waits 1.5 s after the decision: the client is long gone by then.
    let server = ServerProcess::start(
        &dir,
        &config,
        &[("WASMTX_FAULT_PAUSE", "after-decision:1500")],
    );
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    let gave_up = runtime().block_on(async {
        client()
            .post(format!("{}/v1/plugins/transfer/invoke", server.url))
            .bearer_auth(INVOKER)
            .timeout(Duration::from_millis(300))
            .body(transfer_body(("pg", "alice"), ("my", "bob"), 5).to_string())
            .send()
            .await
    });
    assert!(gave_up.is_err(), "the client gave up before the answer");
    let started = Instant::now();
    let committed = loop {
        let (_, page) = http(
            &server.url,
            "GET",
            "/v1/transactions?status=committed",
            Some(READER),
            None,
        );
        if page["transactions"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
        {
            break true;
        }
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(committed, "the transaction finished without its client");
    assert!(prepared_branches("srv-gone").is_empty());
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (995, 1005)
    );
}

#[test]
fn sigterm_during_load_finishes_in_flight_requests_and_exits_zero() {
    let Some((pg, my)) = server_bank("srv_term") else {
        return;
    };
    let dir = TestDir::new();
    let config = write_config(
        &dir,
        &[("pg", pg.clone()), ("my", my.clone())],
        "node = \"srv-term\"",
    );
    let mut server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    let url = server.url.clone();
    let stream = std::thread::spawn(move || runtime().block_on(transfer_stream(url, 300, 16)));
    std::thread::sleep(Duration::from_millis(1000));
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)),
        Some(0),
        "stderr: {}",
        server.stderr_text()
    );
    let statuses = stream.join().unwrap();
    let committed = statuses.iter().filter(|s| **s == Ok(200)).count();
    assert!(committed > 0, "{statuses:?}");
    assert!(prepared_branches("srv-term").is_empty(), "nothing in doubt");
    assert_eq!(bank_total(&pg, &my), 2000);
    assert_eq!(
        server_balance(&my, "bob"),
        1000 + committed as i64,
        "every 200 committed, nothing else did: {statuses:?}"
    );
}

// ── an operator's actions ───────────────────────────────────────────────────────────────

/// The transfer's deadline in these tests, and how long after it recovery presumes abort.
const OPS_TIMEOUT: Duration = Duration::from_secs(2);
const PRESUMED_ABORT_MARGIN: Duration = Duration::from_secs(5);

/// The node a gid names.
fn gid_node(gid: &str) -> &str {
    gid.split('.').nth(1).unwrap_or_default()
}

/// The prepared branches of `gid` now.
#[test]
fn an_operator_retries_resolves_and_recovers_what_crashed_hosts_left_prepared() {
    if !fault_injection_built() {
        return;
    }
    let node = "srv-ops";
    let Some(bank) = cluster_bank("srv_ops", &[node]) else {
        return;
    };
    // One pair of accounts per transaction left in doubt: its branches hold their locks.
    let accounts = ["undecided", "expired", "decided", "overridden", "recovered"];
    open_accounts(&bank, &accounts);
    let dir = TestDir::new();
    // No periodic recovery while the test runs: the operator acts, not the server.
    let config = write_config(
        &dir,
        &[("pg", bank.0.clone()), ("my", bank.1.clone())],
        &format!(
            "node = \"{node}\"\n[limits]\ntimeout_secs = {}\n[server]\nrecovery_interval_ms = 3600000\n",
            OPS_TIMEOUT.as_secs()
        ),
    );
    let server = ServerProcess::start(&dir, &config, &[]);
    let url = &server.url;
    let started = now_ms();
    let crash = |point: &str, account: &str, amount: i64| {
        let (gid, on) = crash_transfer(&dir, &config, node, point, account, amount);
        assert_eq!(gid_node(&gid), node);
        (gid, on)
    };

    // Two undecided transactions (the host stopped after PREPARE): refused while their
    // coordinator could still decide them.
    let (undecided, _) = crash("after-prepare-1", "undecided", 40);
    let (expired, expired_on) = crash("after-prepare-1", "expired", 80);
    let made_at = Instant::now();
    for (gid, outcome) in [(&undecided, "rollback"), (&expired, "commit")] {
        assert_resolve_refused(url, gid, outcome, true, "undecided");
    }
    let (status, tx) = tx_status(url, &undecided);
    assert_eq!(
        (status, tx["status"].as_str()),
        (200, Some("in-doubt")),
        "{tx}"
    );

    // A COMMIT recorded, the host gone before phase 2: committing; retry commits it.
    let (decided, decided_on) = crash("after-decision", "decided", 10);
    assert_eq!(
        decided_on,
        ["pg", "my"],
        "both prepared before the decision"
    );
    let (status, tx) = tx_status(url, &decided);
    assert_eq!(
        (status, tx["status"].as_str(), tx["decision"].as_str()),
        (200, Some("committing"), Some("commit")),
        "{tx}"
    );
    let (status, in_doubt) = http(url, "GET", "/v1/in-doubt", Some(READER), None);
    let listed = in_doubt["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["gid"] == decided.as_str() && e["action"] == "would-commit")
        .count();
    assert_eq!((status, listed), (200, 2), "{in_doubt}");
    assert_retry_commits(url, &decided, 2);
    assert_eq!(branches_of(node, &decided), 0);
    assert_eq!(
        pair_balance(&bank, "decided"),
        (990, 1010),
        "retry committed it"
    );

    // Another decided one: rolling it back is refused, then done as a heuristic decision.
    let (overridden, _) = crash("after-decision", "overridden", 20);
    assert_resolve_refused(url, &overridden, "rollback", false, "decision-exists");
    assert_eq!(
        branches_of(node, &overridden),
        2,
        "a refusal touches nothing"
    );
    let body = assert_resolved(url, &overridden, "rollback", true, "heuristic-rollback");
    assert_eq!(
        body["branches"],
        json!({"pg": "rolled-back", "my": "rolled-back"})
    );
    assert_eq!(branches_of(node, &overridden), 0);
    assert_eq!(
        pair_balance(&bank, "overridden"),
        (1000, 1000),
        "nothing of it committed"
    );
    assert_resolution_recorded(url, &overridden, "heuristic-rollback", "rollback", started);

    // Past the deadline (plus recovery's margin): the undecided one is rolled back as
    // recovery would; committing the other is refused (presumed abort), then done
    // heuristically on what was prepared of it.
    std::thread::sleep(
        (OPS_TIMEOUT + PRESUMED_ABORT_MARGIN + Duration::from_millis(500))
            .saturating_sub(made_at.elapsed()),
    );
    assert_resolved(url, &undecided, "rollback", false, "aborted");
    assert_eq!(branches_of(node, &undecided), 0);
    assert_eq!(pair_balance(&bank, "undecided"), (1000, 1000));
    assert_resolution_recorded(url, &undecided, "aborted", "rollback", started);

    assert_resolve_refused(url, &expired, "commit", false, "would-commit-an-abort");
    assert_resolved(url, &expired, "commit", true, "heuristic-commit");
    assert_eq!(branches_of(node, &expired), 0);
    assert_eq!(
        pair_balance(&bank, "expired"),
        applied(&expired_on, 80),
        "what was prepared of it committed ({expired_on:?})"
    );
    assert_resolution_recorded(url, &expired, "heuristic-commit", "commit", started);
    let (status, page) = http(
        url,
        "GET",
        "/v1/transactions?status=heuristic-commit",
        Some(READER),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(page["transactions"][0]["gid"], expired.as_str(), "{page}");

    // Recovery now: a dry run lists and touches nothing; the real run commits.
    let (recovered, _) = crash("after-decision", "recovered", 160);
    let run = |dry_run: bool| {
        http(
            url,
            "POST",
            "/v1/recovery/run",
            Some(ADMIN),
            Some(json!({"dry_run": dry_run})),
        )
    };
    let actions_on = |report: &Value| -> Vec<String> {
        report["branches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["gid"] == recovered.as_str())
            .filter_map(|b| b["action"].as_str().map(str::to_owned))
            .collect()
    };
    let (status, dry) = run(true);
    assert_eq!(status, 200, "{dry}");
    assert_eq!(actions_on(&dry), ["would-commit", "would-commit"], "{dry}");
    assert_eq!(
        branches_of(node, &recovered),
        2,
        "a dry run touches nothing"
    );
    assert_eq!(pair_balance(&bank, "recovered"), (1000, 1000));
    let (status, real) = run(false);
    assert_eq!(status, 200, "{real}");
    assert_eq!(actions_on(&real), ["committed", "committed"], "{real}");
    assert_eq!(pair_balance(&bank, "recovered"), (840, 1160));
    assert!(prepared_branches(node).is_empty());
    let (status, in_doubt) = http(url, "GET", "/v1/in-doubt", Some(READER), None);
    assert_eq!(
        (status, in_doubt["entries"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{in_doubt}"
    );
}

// ── hostile plugins ─────────────────────────────────────────────────────────────────────

#[test]
fn hostile_plugins_are_contained_and_the_server_keeps_serving() {
    let dir = TestDir::new();
    let (a, b, config) = sqlite_bank(&dir, "[limits]\ntimeout_secs = 2\nmax_statements = 100\n");
    let server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(server.publish("hostile", "1.0.0", &guest(HOSTILE)).0, 201);
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    let flood = |name: &str, lines: u32, bytes: usize| json!({"attack": name, "lines": lines, "bytes": bytes});
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"attack": "infinite-loop"}),
            504,
            "deadline-exceeded",
            "deadline",
        ),
        (
            json!({"attack": "memory-bomb"}),
            422,
            "script-trapped",
            "memory limit",
        ),
        (
            json!({"attack": "recursion", "frame": "small"}),
            422,
            "script-trapped",
            "stack",
        ),
        (
            json!({"attack": "recursion", "frame": "large"}),
            422,
            "script-trapped",
            "out of bounds",
        ),
        (
            flood("stdout-flood", 10_000, 1_000),
            422,
            "script-aborted",
            "flooded stdout",
        ),
        (
            flood("stderr-flood", 10_000, 1_000),
            422,
            "script-aborted",
            "flooded stderr",
        ),
        (
            flood("log-flood", 100_000, 10),
            422,
            "script-aborted",
            "flooded the log",
        ),
        (
            json!({"attack": "many-statements", "count": 5_000}),
            422,
            "limit-exceeded",
            "limits.max_statements",
        ),
        (
            json!({"attack": "handle-flood", "count": 100_000}),
            422,
            "limit-exceeded",
            "limits.max_handles",
        ),
        (
            json!({"attack": "huge-output", "bytes": 10 << 20}),
            422,
            "limit-exceeded",
            "limits.max_output_bytes",
        ),
        (
            json!({"attack": "statement", "sql": "ATTACH DATABASE '/tmp/x.db' AS x"}),
            422,
            "statement-forbidden",
            "",
        ),
        (
            json!({"attack": "wasi-file", "paths": ["/etc/passwd"]}),
            422,
            "script-aborted",
            "denied: ",
        ),
    ];
    let mut expected = (100, 0);
    for (input, status, code, phrase) in cases {
        let (got, body) = server.invoke("hostile", json!({"input": input}));
        assert_eq!(got, status, "{input}: {body}");
        if !code.is_empty() {
            assert_eq!(body["code"], code, "{input}: {body}");
        }
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(phrase),
            "{input}: {body}"
        );
        assert_eq!(
            (balance(&a, "alice"), balance(&b, "bob")),
            expected,
            "{input} changed nothing"
        );
        let (ok, body) = server.invoke("transfer", transfer_body(("a", "alice"), ("b", "bob"), 1));
        assert_eq!(ok, 200, "after {input} the server keeps serving: {body}");
        expected = (expected.0 - 1, expected.1 + 1);
        assert_eq!((balance(&a, "alice"), balance(&b, "bob")), expected);
    }
    assert_eq!(http(&server.url, "GET", "/healthz", None, None).0, 200);
}

#[test]
fn a_superuser_participant_is_refused_unless_allowed() {
    let Some(pg) = postgres_db("wtx_srv_super") else {
        return;
    };
    let dir = TestDir::new();
    let config = write_config(&dir, &[("pg", pg.clone())], "node = \"srv-super\"");
    let mut command = dir.wasmtx();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config);
    let out = output_within(command, RUN_LIMIT);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connects as a superuser") && stderr.contains("allow_superuser"),
        "{stderr}"
    );
    let allowed = write_config(
        &dir,
        &[("pg", pg)],
        "node = \"srv-super\"\n[server]\nallow_superuser = [\"pg\"]\n",
    );
    let server = ServerProcess::start(&dir, &allowed, &[]);
    assert_eq!(http(&server.url, "GET", "/readyz", None, None).0, 200);
}

#[test]
fn without_tokens_the_server_refuses_to_listen_beyond_loopback() {
    let dir = TestDir::new();
    let a = dir.path("a.db");
    accounts_db(&a, &[("alice", 1)]);
    let out = output_within(
        {
            let mut command = dir.wasmtx();
            command
                .args(["serve", "--listen", "0.0.0.0:0", "-p"])
                .arg(format!("a=sqlite://{}", a.display()));
            command
        },
        RUN_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only listens on loopback"), "{stderr}");
}
