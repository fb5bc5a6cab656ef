//! The server's contract, checked by public tools nobody here wrote, against a real
//! `wasmtx serve` on SQLite participants with an admin and a read-only token:
//! - openapi-spec-validator on the document the server serves;
//! - schemathesis: every operation, positive and negative examples, `--checks all`, zero
//!   failures outside the exclusions of `tests/contract/schemathesis.toml` (README says
//!   which and why);
//! - a Python client generated from the document by openapi-python-client publishes a
//!   plugin, invokes a commit and an abort, reads status, history and the in-doubt list
//!   (`tests/contract/client_check.py`), and the test asserts on what the databases hold;
//! - `promtool check metrics` on `/metrics`, and a hundred made-up methods add no series;
//! - `examples/clients/go` (standard library only) built and run: one transfer per
//!   Idempotency-Key, a repeat answered from the first run.
//!
//! scripts/test.sh installs the tools pinned (`tests/contract/requirements.txt` in a
//! virtualenv under target/, named by `WASMTX_CONTRACT_TOOLS`; promtool from Debian's
//! `prometheus`, go from `golang-go`). Without them a test fails under `CI=true`, else skips saying why.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::serve::*;
use common::*;
use serde_json::Value;

const TRANSFER: &str = "examples/transfer";

/// A tool's path, or `None` (skip) when it is not installed outside CI.
fn tool(name: &str) -> Option<PathBuf> {
    // promtool and go are Debian's; the Python tools are in the virtualenv.
    let path = if matches!(name, "promtool" | "go") {
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| Path::new("/usr/bin").join(name))
    } else {
        let venv = std::env::var_os("WASMTX_CONTRACT_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target/toolchains/contract"));
        venv.join("bin").join(name)
    };
    installed(std::slice::from_ref(&path)).then_some(path)
}

/// Runs `command`, failing the test with its output unless it succeeds.
fn succeed(command: Command, what: &str) -> Output {
    succeed_with_input(command, b"", what)
}

/// Runs `command` with `input` on its standard input, failing the test with its output
/// unless it succeeds.
fn succeed_with_input(mut command: Command, input: &[u8], what: &str) -> Output {
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A server on two SQLite files (alice 100 on `a`, bob 0 on `b`) with `transfer` published.
fn bank() -> (TestDir, ServerProcess, PathBuf, PathBuf) {
    let dir = TestDir::new();
    let (a, b, config) = sqlite_bank(&dir, "");
    let server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    (dir, server, a, b)
}

/// The served document, written to `dir`.
fn served_document(dir: &TestDir, server: &ServerProcess) -> PathBuf {
    let (status, doc) = http(&server.url, "GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let local: Value = serde_json::from_str(&wasmtx::server::openapi_json()).unwrap();
    assert_eq!(
        doc, local,
        "the served document is the one built from the routes"
    );
    let path = dir.path("openapi.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

#[test]
fn the_served_document_passes_openapi_spec_validator() {
    let Some(validator) = tool("openapi-spec-validator") else {
        return;
    };
    let (dir, server, _, _) = bank();
    let doc = served_document(&dir, &server);
    let mut command = Command::new(validator);
    command.arg(&doc);
    let output = succeed(command, "openapi-spec-validator");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("OK"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// The series of a metrics text: every sample line's name and labels.
fn series(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[test]
fn metrics_pass_promtool_and_made_up_methods_add_no_series() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (_dir, server, _, _) = bank();
    let body = transfer_body(("a", "alice"), ("b", "bob"), 1);
    assert_eq!(server.invoke("transfer", body).0, 200);
    // Every family is there from the start, with its help line.
    let before = metrics_text(&server.url);
    for family in [
        "wasmtx_transactions_total",
        "wasmtx_pending_commits",
        "wasmtx_decision_log_commits_total",
        "wasmtx_in_doubt_branches",
    ] {
        assert!(
            before.contains(&format!("# HELP {family} ")),
            "{family}:\n{before}"
        );
    }
    // One request with a made-up method creates the `other` series; a hundred more, none.
    let made_up = |n: usize| {
        runtime().block_on(request(
            &server.url,
            &format!("XA{n}"),
            "/healthz",
            None,
            None,
            &[],
        ))
    };
    assert_eq!(made_up(0).0, 405);
    let after_one = series(&metrics_text(&server.url));
    for n in 1..=100 {
        made_up(n);
    }
    runtime().block_on(request(
        &server.url,
        "GET",
        "/no/such/route",
        None,
        None,
        &[],
    ));
    let after_one_more_route = series(&metrics_text(&server.url));
    let added: Vec<&String> = after_one_more_route.difference(&after_one).collect();
    assert!(
        added.iter().all(|s| s.contains("route=\"unmatched\"")),
        "series added by made-up methods: {added:?}"
    );
    let text = metrics_text(&server.url);
    let mut check = Command::new(promtool);
    check.args(["check", "metrics"]);
    succeed_with_input(check, text.as_bytes(), "promtool check metrics");
}

/// schemathesis against `server` with `token`; fails the test on any failure.
fn schemathesis(schemathesis: &Path, dir: &TestDir, server: &ServerProcess, token: &str) {
    let config = repo().join("tests/contract/schemathesis.toml");
    let mut command = Command::new(schemathesis);
    command
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            "--checks",
            "all",
            "--max-examples",
            "12",
            "--seed",
            "1",
        ])
        .args([
            "--generation-database",
            "none",
            "--no-color",
            "--workers",
            "2",
        ])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--report-dir")
        .arg(dir.path("schemathesis"))
        .arg(format!("{}/v1/openapi.json", server.url))
        .current_dir(dir.path(""));
    succeed(command, &format!("schemathesis with token {token}"));
}

#[test]
fn schemathesis_finds_no_failure_with_an_admin_and_a_read_only_token() {
    let Some(tool) = tool("schemathesis") else {
        return;
    };
    let (dir, server, _, _) = bank();
    schemathesis(&tool, &dir, &server, READER);
    schemathesis(&tool, &dir, &server, ADMIN);
    let (status, _) = http(&server.url, "GET", "/healthz", None, None);
    assert_eq!(status, 200, "the server survived");
}

#[test]
fn a_generated_python_client_publishes_invokes_and_reads() {
    let Some(generator) = tool("openapi-python-client") else {
        return;
    };
    let python = generator.with_file_name("python");
    let dir = TestDir::new();
    let (a, b, config) = sqlite_bank(&dir, "");
    let server = ServerProcess::start(&dir, &config, &[]);
    let doc = served_document(&dir, &server);
    let out = dir.path("wasmtx_client");
    let mut generate = Command::new(&generator);
    generate
        .args(["generate", "--meta", "none", "--path"])
        .arg(&doc)
        .arg("--output-path")
        .arg(&out)
        .arg("--config")
        .arg(repo().join("tests/contract/client-config.yaml"));
    succeed(generate, "openapi-python-client generate");
    let mut check = Command::new(&python);
    check
        .arg(repo().join("tests/contract/client_check.py"))
        .arg(&server.url)
        .arg(ADMIN)
        .arg(guest(TRANSFER))
        .env("PYTHONPATH", dir.path(""));
    let output = succeed(check, "the generated client's check");
    let report: Value = serde_json::from_slice(&output.stdout).expect("the check prints JSON");
    // The commit moved 30 from alice to bob; the abort (more than alice has) moved nothing.
    assert_eq!(balance(&a, "alice"), 70, "{report}");
    assert_eq!(balance(&b, "bob"), 30, "{report}");
    let committed = report["committed"].as_str().unwrap();
    let (status, tx) = http(
        &server.url,
        "GET",
        &format!("/v1/transactions/{committed}"),
        Some(READER),
        None,
    );
    assert_eq!((status, tx["status"].as_str()), (200, Some("committed")));
}

#[test]
fn the_go_client_example_invokes_once_per_key_and_prints_the_outcome() {
    let Some(go) = tool("go") else {
        return;
    };
    let dir = TestDir::new();
    let (a, b, config) = sqlite_bank(&dir, "");
    let server = ServerProcess::start(&dir, &config, &[]);
    assert_eq!(server.publish("transfer", "1.0.0", &guest(TRANSFER)).0, 201);
    let binary = dir.path("invoke-go");
    let mut build = Command::new(go);
    build
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(repo().join("examples/clients/go"))
        .env("GOCACHE", repo().join("target/go-cache"))
        .env("GOFLAGS", "-mod=mod");
    succeed(build, "go build examples/clients/go");
    let input = transfer_input(("a", "alice"), ("b", "bob"), 30);
    let run = || {
        let mut command = Command::new(&binary);
        command.args([
            "-url",
            &server.url,
            "-token",
            INVOKER,
            "-plugin",
            "transfer",
            "-key",
            "order-1",
            "-input",
            &input,
        ]);
        String::from_utf8(succeed(command, "the Go client").stdout).unwrap()
    };
    let first = run();
    assert!(
        first.starts_with("HTTP 200 key=order-1 replayed=false gid=wtx.")
            && first.contains("status=committed"),
        "{first}"
    );
    // The same key again (as after a lost answer): the first run's answer, nothing moved twice.
    let again = run();
    assert!(again.contains("replayed=true"), "{again}");
    assert_eq!(
        first.split_whitespace().nth(4),
        again.split_whitespace().nth(4),
        "one gid"
    );
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (70, 30));
}
