//! Warm instances, end to end through `wasmtx serve`: plugins configured in
//! `[server.warm.<name>]` reuse an instance for several transactions, and nothing else does;
//! and through the CLI's `--warm-uses` (`wasmtx bench` runs each script fresh and warm).
//!
//! The guest `tests/guests/warm-counter` counts its runs in a static, so each answer says how
//! many transactions its instance has served (1: a fresh instance). The same component is
//! published as several plugins and versions; only some of them are configured warm.

mod common;

use std::time::Duration;

use common::serve::*;
use common::*;
use serde_json::{Value, json};

const COUNTER: &str = "tests/guests/warm-counter";

/// A server with one SQLite participant, the counter published as `counter` 1.0.0 and
/// 1.0.1, `other` 1.0.0, `short` 1.0.0, `idle` 1.0.0 and `cold` 1.0.0 (the same bytes), all
/// warm but `cold`.
fn server(dir: &TestDir) -> ServerProcess {
    let db = dir.path("a.db");
    create_sqlite(&db, "CREATE TABLE t (x INTEGER)");
    let config = write_config(
        dir,
        &[("a", format!("sqlite://{}", db.display()))],
        "[limits]\nmax_statements = 20\n\n\
         [server.warm.counter]\n\
         [server.warm.other]\n\
         [server.warm.short]\nmax_uses = 3\n\n\
         [server.warm.idle]\nidle_secs = 1\n",
    );
    let server = ServerProcess::start(dir, &config, &[]);
    let wasm = guest(COUNTER);
    for (name, version) in [
        ("counter", "1.0.0"),
        ("counter", "1.0.1"),
        ("other", "1.0.0"),
        ("short", "1.0.0"),
        ("idle", "1.0.0"),
        ("cold", "1.0.0"),
    ] {
        let (status, body) = server.publish(name, version, &wasm);
        assert_eq!(status, 201, "publishing {name}@{version}: {body}");
    }
    server
}

/// Invokes `plugin` (at `version`, or latest) with `input`; the status and the answer.
fn invoke(
    server: &ServerProcess,
    plugin: &str,
    version: Option<&str>,
    input: &str,
) -> (u16, Value) {
    let mut body = json!({ "input": input });
    if let Some(version) = version {
        body["version"] = json!(version);
    }
    server.invoke(plugin, body)
}

/// How many transactions the instance that ran this one has served.
fn runs(server: &ServerProcess, plugin: &str, version: Option<&str>) -> u64 {
    let (status, body) = invoke(server, plugin, version, "count");
    assert_eq!(status, 200, "{plugin}: {body}");
    body["output"]
        .as_u64()
        .unwrap_or_else(|| panic!("{plugin}: no count in {body}"))
}

#[test]
fn an_instance_carries_state_only_within_its_plugin_version() {
    let dir = TestDir::new();
    let server = server(&dir);
    let counter_1_0_0 = |server: &ServerProcess| runs(server, "counter", Some("1.0.0"));

    assert_eq!(counter_1_0_0(&server), 1);
    assert_eq!(counter_1_0_0(&server), 2);
    assert_eq!(counter_1_0_0(&server), 3);
    // Another version of the plugin, another plugin with the same bytes: their own
    // instances, which start fresh.
    assert_eq!(runs(&server, "counter", Some("1.0.1")), 1);
    assert_eq!(runs(&server, "other", None), 1);
    // And the first version's instance was not disturbed by theirs.
    assert_eq!(counter_1_0_0(&server), 4);
    assert_eq!(runs(&server, "counter", Some("1.0.1")), 2);
    // A plugin not configured warm gets a fresh instance every time.
    for _ in 0..3 {
        assert_eq!(runs(&server, "cold", None), 1);
    }

    let metrics = metrics_text(&server.url);
    let reused = metrics
        .lines()
        .find(|l| {
            l.starts_with("wasmtx_warm_transactions_total")
                && l.contains("plugin=\"counter\"")
                && l.contains("instance=\"reused\"")
        })
        .unwrap_or_else(|| panic!("no reuse counted for counter in:\n{metrics}"));
    assert!(
        reused.ends_with(" 4"),
        "counter reused 4 times (3 on 1.0.0, 1 on 1.0.1): {reused}"
    );
    assert!(
        !metrics.contains("plugin=\"cold\",instance"),
        "a plugin not run warm has no warm counts"
    );
}

#[test]
fn an_instance_serves_at_most_max_uses_and_waits_at_most_idle_secs() {
    let dir = TestDir::new();
    let server = server(&dir);
    let seen: Vec<u64> = (0..7).map(|_| runs(&server, "short", None)).collect();
    assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1], "max_uses = 3");

    assert_eq!(runs(&server, "idle", None), 1);
    assert_eq!(runs(&server, "idle", None), 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        runs(&server, "idle", None),
        1,
        "idle longer than idle_secs = 1"
    );
}

#[test]
fn an_instance_is_never_reused_after_a_trap_a_limit_or_the_deadline() {
    let dir = TestDir::new();
    let server = server(&dir);
    // Each misbehaviour, the error it must be reported as, and its HTTP status.
    let cases: [(&str, Option<u64>, &str, u16); 4] = [
        ("trap", None, "trap", 422),
        ("statements 50", None, "limit", 422),
        ("memory", None, "memory", 422),
        ("spin", Some(500), "timeout", 504),
    ];
    for (input, timeout_ms, kind, http_status) in cases {
        let before = runs(&server, "counter", None);
        assert_eq!(
            runs(&server, "counter", None),
            before + 1,
            "before {input:?}"
        );
        let mut body = json!({ "input": input });
        if let Some(ms) = timeout_ms {
            body["timeout_ms"] = json!(ms);
        }
        let (status, answer) = server.invoke("counter", body);
        assert_eq!(status, http_status, "{input:?}: {answer}");
        assert_eq!(
            answer["transaction"]["error"]["kind"], kind,
            "{input:?}: {answer}"
        );
        assert_eq!(
            runs(&server, "counter", None),
            1,
            "the transaction after {input:?} got the instance that misbehaved"
        );
    }
}

#[test]
fn a_participant_handle_kept_for_a_later_transaction_traps_there() {
    let dir = TestDir::new();
    let server = server(&dir);
    let (status, kept) = invoke(&server, "counter", None, "keep");
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["output"], 1);
    let (status, answer) = invoke(&server, "counter", None, "use-kept");
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["transaction"]["error"]["kind"], "trap", "{answer}");
    let message = answer["transaction"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("participant handle from an earlier transaction"),
        "{message}"
    );
    assert_eq!(
        runs(&server, "counter", None),
        1,
        "the trapped instance is gone"
    );
}

/// `wasmtx COMMAND examples/transfer` on the bank, moving 1 from alice to bob, with `flags`.
fn transfer_command(
    dir: &TestDir,
    command: &str,
    participants: &[String],
    flags: &[&str],
) -> std::process::Command {
    let mut wasmtx = dir.wasmtx();
    wasmtx
        .arg(command)
        .arg(guest("examples/transfer"))
        .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 1)])
        .args(flags);
    for p in participants {
        wasmtx.args(["-p", p]);
    }
    wasmtx
}

#[test]
fn bench_warm_uses_runs_each_script_fresh_and_warm_and_counts_the_reuse() {
    let dir = TestDir::new();
    let (a, b, participants) = sqlite_accounts(&dir, 100_000);
    let bench = |flags: &[&str]| transfer_command(&dir, "bench", &participants, flags);
    let common = ["--concurrency", "2", "--warmup", "1", "--warm-uses", "50"];

    let (out, result) = json_within(
        bench(&[&common[..], &["--transactions", "200", "--json"]].concat()),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{result}");
    assert_eq!(variant_names(&result), ["wasm", "wasm-warm"], "{result}");
    let variants = result["variants"].as_array().unwrap();
    for v in variants {
        assert_eq!(v["commits"], 200, "{v}");
    }
    assert!(
        variants[0].get("warm").is_none(),
        "the fresh variant: {result}"
    );
    let warm = &variants[1]["warm"];
    assert_eq!(warm["max_uses"], 50, "{result}");
    let (fresh, reused) = (
        warm["fresh"].as_u64().unwrap(),
        warm["reused"].as_u64().unwrap(),
    );
    assert_eq!(fresh + reused, 200, "{result}");
    // No instance serves more than 50: the warm-up's left at most 49 of the 200.
    assert!((4..=10).contains(&fresh), "{result}");
    assert!(
        result["others_vs_wasm"]["wasm-warm"].as_f64().unwrap() > 0.0,
        "{result}"
    );

    let out = output_within(
        bench(&[&common[..], &["--transactions", "20"]].concat()),
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("wasm-warm: ")
            && l.contains("transactions reused an instance")
            && l.contains("(up to 50 per instance)")),
        "{text}"
    );

    let (out, json) = json_within(
        transfer_command(&dir, "run", &participants, &["--warm-uses", "3", "--json"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["outcome"], "committed", "{json}");

    // Every timed and warm-up transfer of both variants, both runs, and the one `run`.
    let moved = 2 * (200 + 1) + 2 * (20 + 1) + 1;
    assert_eq!(
        (balance(&a, "alice"), balance(&b, "bob")),
        (100_000 - moved, moved)
    );
}

#[test]
fn a_warm_uses_that_is_not_a_positive_number_is_refused_before_anything_runs() {
    let dir = TestDir::new();
    let (a, b, participants) = sqlite_accounts(&dir, 100_000);
    for command in ["bench", "run"] {
        for (value, says) in [
            ("0", "transactions per instance must be at least 1"),
            (
                "x",
                "a whole number of transactions per instance, at least 1",
            ),
            (
                "1.5",
                "a whole number of transactions per instance, at least 1",
            ),
        ] {
            let out = output_within(
                transfer_command(&dir, command, &participants, &["--warm-uses", value]),
                Duration::from_secs(60),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {value}: {stderr}");
            assert!(
                stderr.contains(&format!("'{value}' for '--warm-uses <N>'"))
                    && stderr.contains(says),
                "{command} --warm-uses {value}: {stderr}"
            );
        }
    }
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (100_000, 0));
}
