//! Warm instances, end to end through `wasmtx serve`: plugins configured in
//! `[server.warm.<name>]` reuse an instance for several transactions, and nothing else does.
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
