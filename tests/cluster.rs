//! A cluster of `wasmtx serve` processes sharing one PostgreSQL decision log: real server
//! processes on 127.0.0.1, the transfer example between PostgreSQL and MariaDB, a survivor
//! finishing a killed node's work, a paused node fenced off, a node id held twice refused;
//! and the shared store's rules checked in process against the real database.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use common::serve::*;
use common::*;
use serde_json::Value;
use wasmtx::cluster::{Cluster, LeaseStatus};
use wasmtx::decision_store::{
    DecisionError, DecisionSource, DecisionStore, DecisionTable, TableDecision,
};
use wasmtx::gid::{Gid, NodeId};

const TRANSFER: &str = "examples/transfer";

/// `count` nodes `{prefix}-1…`, each with its own state directory, the transfer published
/// on the first (the cluster shares its registry).
fn start_nodes(
    prefix: &str,
    count: usize,
    bank: &(String, String),
    log: &str,
    extra: &str,
) -> Vec<(TestDir, PathBuf, ServerProcess)> {
    start_nodes_with(prefix, count, bank, log, extra, None)
}

/// [`start_nodes`], node number `k` of `envs` (if any) started with those variables.
fn start_nodes_with(
    prefix: &str,
    count: usize,
    bank: &(String, String),
    log: &str,
    extra: &str,
    envs: Option<(usize, &[(&str, &str)])>,
) -> Vec<(TestDir, PathBuf, ServerProcess)> {
    (1..=count)
        .map(|i| {
            let dir = TestDir::new();
            let config = cluster_config(&dir, &format!("{prefix}-{i}"), bank, log, extra);
            let own: &[(&str, &str)] = match envs {
                Some((k, vars)) if k == i => vars,
                _ => &[],
            };
            let server = ServerProcess::start(&dir, &config, own);
            if i == 1 {
                assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
            }
            (dir, config, server)
        })
        .collect()
}

fn nodes(url: &str) -> Vec<Value> {
    let (status, body) = http(url, "GET", "/v1/nodes", Some(READER), None);
    assert_eq!(status, 200, "{body}");
    body["nodes"].as_array().cloned().unwrap_or_default()
}

fn node_row(url: &str, node: &str) -> Value {
    nodes(url)
        .into_iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} is listed"))
}

fn metric(url: &str, name: &str) -> f64 {
    metrics_text(url)
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_survivor_finishes_a_killed_nodes_work_within_lease_and_grace() {
    let Some(bank) = cluster_bank("cl_kill", &["clk-1", "clk-2", "clk-3"]) else {
        return;
    };
    let log = postgres_db("wtx_cl_kill_log").expect("PostgreSQL answered for the bank");
    // Enough money that no transfer of the stream aborts for funds.
    for url in [&bank.0, &bank.1] {
        server_sql(url, "UPDATE accounts SET balance = 100000");
    }
    // The victim holds each transaction a while after its COMMIT is recorded (with the
    // fault-injection build), so the kill surely leaves decided branches prepared.
    let pause: &[(&str, &str)] = &[("WASMTX_FAULT_PAUSE", "after-decision:3000")];
    let mut cluster = start_nodes_with(
        "clk",
        3,
        &bank,
        &log,
        "[limits]\ntimeout_secs = 2",
        Some((2, pause)),
    );
    let listed = nodes(&cluster[0].2.url);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|n| n["live"] == true), "{listed:?}");

    let urls: Vec<String> = cluster.iter().map(|(_, _, s)| s.url.clone()).collect();
    let stream =
        std::thread::spawn(move || runtime().block_on(transfer_stream_over(urls, 4000, 12)));
    std::thread::sleep(Duration::from_millis(1500));
    let (_, _, victim) = &mut cluster[1];
    victim.signal(libc::SIGKILL);
    victim.wait_exit(Duration::from_secs(10));
    let killed_at = Instant::now();
    let prepared_at_kill = prepared_branches("clk-2").len();
    if cfg!(feature = "fault-injection") {
        assert!(
            prepared_at_kill > 0,
            "the paused victim left decided branches"
        );
    }
    if prepared_at_kill > 0 {
        // Any node lists the dead node's branches and answers for its gids.
        let (status, in_doubt) = http(&cluster[0].2.url, "GET", "/v1/in-doubt", Some(READER), None);
        assert_eq!(status, 200, "{in_doubt}");
        let theirs: Vec<String> = in_doubt["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["gid"].as_str())
            .filter(|gid| gid.starts_with("wtx.clk-2."))
            .map(str::to_owned)
            .collect();
        assert!(!theirs.is_empty(), "{in_doubt}");
        let (status, tx) = http(
            &cluster[2].2.url,
            "GET",
            &format!("/v1/transactions/{}", theirs[0]),
            Some(READER),
            None,
        );
        assert_eq!((status, tx["node"].as_str()), (200, Some("clk-2")), "{tx}");
    }
    // Takeover after ttl + grace; undecided branches roll back once their deadline (2 s)
    // plus recovery's margin (5 s) has passed.
    let adopted = Instant::now();
    while node_row(&cluster[0].2.url, "clk-2")["adopted_by"].is_null() {
        assert!(
            adopted.elapsed() < Duration::from_secs(15),
            "nobody adopted clk-2"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let adopted_after = killed_at.elapsed();
    wait_no_prepared("clk-2", Duration::from_secs(30));
    let took = killed_at.elapsed();
    // Decided branches are committed as soon as the node is adopted: within the lease and
    // the grace, plus a sweep or two (every third of the lease).
    assert!(
        took <= Duration::from_millis(LEASE_TTL_MS + GRACE_MS + 2000),
        "the dead node's work took {took:?}"
    );
    let statuses = stream.join().unwrap();
    let committed = statuses.iter().filter(|s| **s == Ok(200)).count();
    assert!(committed > 0, "{statuses:?}");
    assert!(
        statuses.iter().any(Result::is_err),
        "the kill came while the stream still sent to the victim"
    );

    assert_eq!(bank_total(&bank.0, &bank.1), 200_000, "total conserved");
    assert!(
        server_balance(&bank.1, "bob") >= 100_000 + committed as i64,
        "every committed invoke's effect is there ({committed} answered 200)"
    );
    for node in ["clk-1", "clk-3"] {
        assert!(
            prepared_branches(node).is_empty(),
            "{node}: {:?}",
            prepared_branches(node)
        );
    }
    let dead = node_row(&cluster[0].2.url, "clk-2");
    assert_eq!(dead["live"], false, "{dead}");
    let adopter = dead["adopted_by"].as_str().unwrap_or_default().to_owned();
    assert!(["clk-1", "clk-3"].contains(&adopter.as_str()), "{dead}");
    let adopter_url = if adopter == "clk-1" {
        &cluster[0].2.url
    } else {
        &cluster[2].2.url
    };
    assert!(metric(adopter_url, "wasmtx_takeovers_total") >= 1.0);
    // A COMMIT whose branches are all committed is marked DONE once its deadline plus
    // recovery's margin has passed (a later sweep of the adopter).
    let started = Instant::now();
    loop {
        let pending: Vec<Vec<String>> = server_sql(
            &log,
            "SELECT gid FROM wasmtx.decision WHERE node_id = 'clk-2' AND outcome = 1 AND done_at IS NULL",
        );
        if pending.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the adopter did not mark every COMMIT of clk-2 done: {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "killed node adopted {:.1} s and its work finished {:.1} s after the kill ({prepared_at_kill} branches prepared at the kill); {committed} of 4000 committed",
        adopted_after.as_secs_f64(),
        took.as_secs_f64()
    );
}

#[test]
fn a_node_paused_past_its_lease_records_no_late_commit_and_rejoins_with_a_new_incarnation() {
    let Some(bank) = cluster_bank("cl_pause", &["clp-1", "clp-2"]) else {
        return;
    };
    let log = postgres_db("wtx_cl_pause_log").expect("PostgreSQL answered for the bank");
    // Deadlines far beyond the pause: what stops the paused node's COMMITs is its lease.
    let cluster = start_nodes("clp", 2, &bank, &log, "[limits]\ntimeout_secs = 30");
    let (paused, survivor) = (&cluster[0].2, &cluster[1].2);
    let url = paused.url.clone();
    let stream = std::thread::spawn(move || runtime().block_on(transfer_stream(url, 400, 8)));
    std::thread::sleep(Duration::from_millis(1500));
    let stopped_at: String = server_sql(&log, "SELECT clock_timestamp()::text")[0][0].clone();
    paused.signal(libc::SIGSTOP);
    // Past ttl + grace, and long enough for the survivor to adopt it.
    let started = Instant::now();
    loop {
        let row = node_row(&survivor.url, "clp-1");
        if row["adopted_by"] == "clp-2" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "clp-2 did not adopt clp-1: {row}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    paused.signal(libc::SIGCONT);
    let statuses = stream.join().unwrap();
    let committed = statuses.iter().filter(|s| **s == Ok(200)).count();

    // Back: a new incarnation, ready again once its own recovery ran.
    paused.wait_ready(Duration::from_secs(30));
    let row = node_row(&survivor.url, "clp-1");
    assert_eq!(row["incarnation"], 2, "{row}");
    assert_eq!(row["live"], true, "{row}");
    assert!(
        row["adopted_by"].is_null(),
        "claiming the id again ends the adoption: {row}"
    );
    assert!(metric(&paused.url, "wasmtx_node_lease_lost_total") >= 1.0);

    let late = server_sql(
        &log,
        &format!(
            "SELECT gid, decided_at::text FROM wasmtx.decision WHERE node_id = 'clp-1' AND decider_inc = 1 \
               AND outcome = 1 AND decided_at > '{stopped_at}'::timestamptz + interval '{LEASE_TTL_MS} milliseconds'"
        ),
    );
    assert!(
        late.is_empty(),
        "COMMITs recorded after the lease lapsed: {late:?}"
    );
    wait_no_prepared("clp-1", Duration::from_secs(45));
    assert_eq!(bank_total(&bank.0, &bank.1), 2000, "total conserved");
    assert!(server_balance(&bank.1, "bob") >= 1000 + committed as i64);
    let (status, body) =
        paused.invoke("transfer", transfer_body(("pg", "alice"), ("my", "bob"), 1));
    assert_eq!(status, 200, "the node decides again: {body}");
}

#[test]
fn a_second_process_with_a_live_node_id_refuses_to_start_and_a_clean_stop_frees_it() {
    let Some(bank) = cluster_bank("cl_twice", &["clt-1"]) else {
        return;
    };
    let log = postgres_db("wtx_cl_twice_log").expect("PostgreSQL answered for the bank");
    let mut first = start_nodes("clt", 1, &bank, &log, "");
    // Another state directory, the same node id and decision log.
    let dir = TestDir::new();
    let config = cluster_config(&dir, "clt-1", &bank, &log, "");
    let mut command = dir.wasmtx();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config);
    let out = output_within(command, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second holder of clt-1 must not start"
    );
    assert!(
        stderr.contains("node id `clt-1` is held by") && stderr.contains("incarnation 1"),
        "{stderr}"
    );

    let (_, _, server) = &mut first[0];
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    let again = ServerProcess::start(&dir, &config, &[]);
    let row = node_row(&again.url, "clt-1");
    assert_eq!(
        (row["incarnation"].as_i64(), row["live"].as_bool()),
        (Some(2), Some(true)),
        "{row}"
    );
}

#[test]
fn an_operator_resolves_a_dead_nodes_transactions_from_a_survivor() {
    if !fault_injection_built() {
        return;
    }
    let Some(bank) = cluster_bank("cl_ops", &["clo-1", "clo-2"]) else {
        return;
    };
    let log = postgres_db("wtx_cl_ops_log").expect("PostgreSQL answered for the bank");
    // One pair of accounts per transaction left in doubt: its branches hold their locks.
    open_accounts(&bank, &["expired", "decided", "overridden"]);
    let participants = [("pg", bank.0.clone()), ("my", bank.1.clone())];
    // The survivor adopts no one by itself and runs no periodic recovery: the operator acts.
    let cluster_of = |node: &str| {
        format!(
            "node = \"{node}\"\n[limits]\ntimeout_secs = 2\n[server]\nrecovery_interval_ms = 3600000\n\
             [decision_log]\nurl = \"{log}\"\n[cluster]\nlease_ttl_ms = {LEASE_TTL_MS}\ntakeover_grace_ms = 3600000\n"
        )
    };
    let survivor_dir = TestDir::new();
    let survivor_config = write_config(&survivor_dir, &participants, &cluster_of("clo-2"));
    let survivor = ServerProcess::start(&survivor_dir, &survivor_config, &[]);
    let url = &survivor.url;
    // Node clo-1 is a host that stops at a protocol step, each time taking its node id again.
    let dead_dir = TestDir::new();
    let dead_config = write_config(&dead_dir, &participants, &cluster_of("clo-1"));
    let crash = |point: &str, account: &str, amount: i64| {
        crash_transfer(&dead_dir, &dead_config, "clo-1", point, account, amount)
    };
    let started = now_ms();

    let (expired, expired_on) = crash("after-prepare-1", "expired", 80);
    let made_at = Instant::now();
    assert_resolve_refused(url, &expired, "commit", true, "undecided");

    // Decided on clo-1, finished from clo-2.
    let (decided, decided_on) = crash("after-decision", "decided", 10);
    assert_eq!(decided_on, ["pg", "my"]);
    let (status, tx) = tx_status(url, &decided);
    assert_eq!(
        (status, tx["status"].as_str(), tx["node"].as_str()),
        (200, Some("committing"), Some("clo-1")),
        "{tx}"
    );
    assert_retry_commits(url, &decided, 2);
    assert_eq!(pair_balance(&bank, "decided"), (990, 1010));

    // Decided on clo-1, rolled back from clo-2 only as a heuristic decision.
    let (overridden, _) = crash("after-decision", "overridden", 20);
    assert_resolve_refused(url, &overridden, "rollback", false, "decision-exists");
    let body = assert_resolved(url, &overridden, "rollback", true, "heuristic-rollback");
    assert_eq!(
        body["branches"],
        serde_json::json!({"pg": "rolled-back", "my": "rolled-back"})
    );
    assert!(
        prepared_branches("clo-1")
            .iter()
            .all(|b| gid_of_branch(b) != overridden),
        "the heuristic rollback acted on clo-1's branches"
    );
    assert_eq!(pair_balance(&bank, "overridden"), (1000, 1000));
    assert_resolution_recorded(url, &overridden, "heuristic-rollback", "rollback", started);

    // Undecided on clo-1 and past its deadline: committed from clo-2 only heuristically,
    // on exactly the branches that were prepared.
    std::thread::sleep(Duration::from_millis(2000 + 5000 + 500).saturating_sub(made_at.elapsed()));
    assert_resolve_refused(url, &expired, "commit", false, "would-commit-an-abort");
    let body = assert_resolved(url, &expired, "commit", true, "heuristic-commit");
    let mut committed: Vec<&str> = body["branches"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, what)| *what == "committed")
        .map(|(participant, _)| participant.as_str())
        .collect();
    committed.sort();
    let mut prepared = expired_on.clone();
    prepared.sort();
    assert_eq!(committed, prepared, "{body}");
    assert!(
        prepared_branches("clo-1").is_empty(),
        "nothing of clo-1 is left prepared"
    );
    assert_eq!(pair_balance(&bank, "expired"), applied(&expired_on, 80));
    assert_resolution_recorded(url, &expired, "heuristic-commit", "commit", started);
}

/// A component's bytes as the server at `url` serves them for download.
fn download(url: &str, name: &str, version: &str) -> Vec<u8> {
    runtime().block_on(async {
        let response = client()
            .get(format!("{url}/v1/plugins/{name}/versions/{version}/wasm"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.unwrap().to_vec()
    })
}

#[test]
fn a_plugin_published_on_one_node_is_served_by_every_node() {
    let Some(bank) = cluster_bank("cl_registry", &["clr-1", "clr-2", "clr-3"]) else {
        return;
    };
    let log = postgres_db("wtx_cl_registry_log").expect("PostgreSQL answered for the bank");
    // A node that ran on its own first, with a plugin of its own, later joins.
    let joiner = TestDir::new();
    let alone = write_config(
        &joiner,
        &[("pg", bank.0.clone()), ("my", bank.1.clone())],
        "node = \"clr-3\"",
    );
    let insert_user = guest("examples/insert-user");
    {
        let server = ServerProcess::start(&joiner, &alone, &[]);
        assert_eq!(server.publish("insert-user", "1.0.0", &insert_user).0, 201);
    }

    let nodes = start_nodes("clr", 2, &bank, &log, "");
    let (one, two) = (&nodes[0].2, &nodes[1].2);
    // Published on node 1 before node 2 started: node 2 invokes it.
    let (status, body) = two.invoke("transfer", transfer_body(("pg", "alice"), ("my", "bob"), 1));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        download(&two.url, "transfer", "1.0.0"),
        std::fs::read(guest(TRANSFER)).unwrap()
    );

    // Published on node 1 while node 2 runs: invocable there as soon as the publish returns.
    assert_eq!(one.publish("transfer", "2.0.0", &guest(TRANSFER)).0, 201);
    let mut body = transfer_body(("pg", "alice"), ("my", "bob"), 1);
    body["version"] = "2.0.0".into();
    let (status, answer) = two.invoke("transfer", body.clone());
    assert_eq!(
        (status, answer["plugin"]["version"].as_str()),
        (200, Some("2.0.0")),
        "{answer}"
    );
    // Versions stay immutable across the cluster.
    let (status, refused) = two.publish("transfer", "2.0.0", &insert_user);
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("version-exists")),
        "{refused}"
    );
    assert_eq!(two.publish("transfer", "2.0.0", &guest(TRANSFER)).0, 200);

    // An alias set on node 2 is what node 1 shows and resolves.
    let (status, _) = http(
        &two.url,
        "PUT",
        "/v1/plugins/transfer/aliases/stable",
        Some(ADMIN),
        Some(serde_json::json!({"version": "1.0.0"})),
    );
    assert_eq!(status, 200);
    let (status, detail) = http(&one.url, "GET", "/v1/plugins/transfer", Some(READER), None);
    assert_eq!(
        (status, detail["aliases"]["stable"].as_str()),
        (200, Some("1.0.0")),
        "{detail}"
    );

    // Withdrawn on node 2: node 1 refuses it within the mirror's poll.
    let (status, _) = http(
        &two.url,
        "DELETE",
        "/v1/plugins/transfer/versions/2.0.0",
        Some(ADMIN),
        None,
    );
    assert_eq!(status, 200);
    let withdrawn = Instant::now();
    loop {
        let (status, answer) = one.invoke("transfer", body.clone());
        if status == 410 {
            assert_eq!(answer["code"], "plugin-withdrawn", "{answer}");
            break;
        }
        assert_eq!(status, 200, "{answer}");
        assert!(
            withdrawn.elapsed() < Duration::from_secs(3),
            "node 1 still invokes a version withdrawn on node 2"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The joining node's own plugin becomes the cluster's, bytes and all.
    let config = cluster_config(&joiner, "clr-3", &bank, &log, "");
    let three = ServerProcess::start(&joiner, &config, &[]);
    let (status, version) = http(
        &one.url,
        "GET",
        "/v1/plugins/insert-user/versions/1.0.0",
        Some(READER),
        None,
    );
    assert_eq!(status, 200, "{version}");
    assert_eq!(
        download(&one.url, "insert-user", "1.0.0"),
        std::fs::read(&insert_user).unwrap()
    );
    let (status, listed) = http(&three.url, "GET", "/v1/plugins", Some(READER), None);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!((status, names), (200, vec!["insert-user", "transfer"]));
    assert_eq!(bank_total(&bank.0, &bank.1), 2000);
}

// ── the shared store, in process ─────────────────────────────────────────────────────────

fn store_config(dir: &TestDir, node: &str, log: &str) -> wasmtx::Config {
    let path = dir.path("store.toml");
    std::fs::write(
        &path,
        format!(
            "node = \"{node}\"\nstate_dir = {:?}\n[decision_log]\nurl = \"{log}\"\n[cluster]\nlease_ttl_ms = {LEASE_TTL_MS}\n",
            dir.path("state")
        ),
    )
    .unwrap();
    wasmtx::Config::load(&path).unwrap()
}

/// Runs `sql` on the decision database from async code; the first column of each row.
async fn log_sql(log: &str, sql: &str) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(log).await.unwrap();
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&mut conn)
        .await
        .expect(sql);
    rows.iter()
        .map(|r| {
            r.try_get::<String, _>(0)
                .or_else(|_| r.try_get::<i64, _>(0).map(|v| v.to_string()))
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn the_shared_store_keeps_the_rules_of_a_decision_log() {
    let Some(log) = postgres_db("wtx_cl_store_log") else {
        return;
    };
    let dir = TestDir::new();
    let config = store_config(&dir, "cls-1", &log);
    let node = NodeId::new("cls-1").unwrap();
    runtime().block_on(async {
        let cluster = Cluster::open(&config.node, &config.decision_log, &config.cluster).await.unwrap().expect("a URL is configured");
        let store = cluster.store().clone();
        let soon = || SystemTime::now() + Duration::from_secs(30);

        // Recorded, read back, pending until DONE.
        let gid = Gid::new(&node, soon());
        store.record_commit(&gid, gid.deadline()).await.unwrap();
        assert!(store.is_committed(&gid).await.unwrap());
        assert!(store.snapshot().await.unwrap().pending.contains(&gid));
        store.record_done(&gid).await.unwrap();
        store.flush().await.unwrap();
        assert!(!store.snapshot().await.unwrap().pending.contains(&gid));
        // Recording it twice is idempotent; arbitration finds COMMIT.
        store.record_commit(&gid, gid.deadline()).await.unwrap();
        assert_eq!(store.abort_unless_committed(&gid).await.unwrap(), TableDecision::Commit);

        // Past its deadline: refused.
        let late = Gid::new(&node, SystemTime::now() - Duration::from_millis(1));
        let refused = store.record_commit(&late, late.deadline()).await.unwrap_err();
        assert!(matches!(refused, DecisionError::NotRecorded(_)), "{refused}");
        assert!(!store.is_committed(&late).await.unwrap());

        // ABORT first: the COMMIT loses.
        let aborted = Gid::new(&node, soon());
        assert_eq!(store.abort_unless_committed(&aborted).await.unwrap(), TableDecision::Abort);
        let refused = store.record_commit(&aborted, aborted.deadline()).await.unwrap_err();
        assert!(matches!(refused, DecisionError::NotRecorded(_)), "{refused}");
        assert!(!store.is_committed(&aborted).await.unwrap());

        // Many at once share batches.
        let before = store.stats();
        let gids: Vec<Gid> = (0..200).map(|_| Gid::new(&node, soon())).collect();
        let results = futures::future::join_all(gids.iter().map(|g| store.record_commit(g, g.deadline()))).await;
        assert!(results.iter().all(Result::is_ok));
        let after = store.stats();
        assert_eq!(after.commits_written - before.commits_written, 200);
        assert!(after.batches_written - before.batches_written < 200, "{before:?} → {after:?}");

        // A second holder of the id is refused while the lease is live.
        let again = Cluster::open(&config.node, &config.decision_log, &config.cluster).await;
        let err = again.err().expect("the id is held").to_string();
        assert!(err.contains("is held by"), "{err}");

        // The lease lapses behind the host's back (a pause): the database refuses the
        // COMMIT even though the host still believes it holds the lease.
        log_sql(&log, "UPDATE wasmtx.node SET lease_until = clock_timestamp() - interval '1 second' WHERE node_id = 'cls-1'").await;
        let fenced = Gid::new(&node, soon());
        let refused = store.record_commit(&fenced, fenced.deadline()).await.unwrap_err();
        assert!(matches!(refused, DecisionError::NotRecorded(_)), "{refused}");
        assert!(refused.to_string().contains("no longer holds its lease"), "{refused}");
        assert_eq!(cluster.lease().status(), LeaseStatus::Lost);
        assert!(!store.is_committed(&fenced).await.unwrap());

        // Claimed again: a new incarnation decides.
        cluster.lease().reclaim().await.unwrap();
        assert_eq!(cluster.lease().incarnation(), 2);
        store.record_commit(&fenced, fenced.deadline()).await.unwrap();
        let rows = log_sql(&log, &format!("SELECT decider_inc FROM wasmtx.decision WHERE gid = '{fenced}'")).await;
        assert_eq!(rows, ["2"]);
        cluster.close().await;
    });
}
