//! The operator console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromedriver`, driven through Selenium by `tests/console/browser_check.py`) against a real
//! `wasmtx serve` on PostgreSQL and MariaDB. The browser signs in, sees a committed and an
//! aborted transaction with their details, filters and pages the history, publishes a
//! version from a file, sets an alias and withdraws a version, finds the branches
//! a host stopped after its COMMIT decision left prepared and forces them through with a
//! reason; a read-only token sees no action and a forged one is refused; sign-out ends the
//! session; axe-core finds no WCAG 2 A/AA violation (contrast included) on any page, at 1280
//! px and at a phone's 390. This test then checks what the databases hold and what the
//! server recorded.
//! Screenshots of each page go to `target/console-screenshots/` (or
//! `WASMTX_SCREENSHOTS`; docs/console/ holds the committed ones).
//!
//! scripts/test.sh installs chromium, chromedriver, Selenium (pinned in
//! tests/console/requirements.txt, in the virtualenv named by `WASMTX_CONSOLE_TOOLS`) and
//! axe-core (tests/console/package-lock.json).
//! Without them the test fails under `CI=true`, else skips saying why.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::serve::*;
use common::*;
use serde_json::json;

const TRANSFER: &str = "examples/transfer";

/// The virtualenv's Python with Selenium, chromium and chromedriver; `None` (skip) when one
/// is missing outside CI.
fn browser_tools() -> Option<PathBuf> {
    let venv = std::env::var_os("WASMTX_CONSOLE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/toolchains/console"));
    let python = venv.join("bin/python");
    let needed = [
        python.clone(),
        PathBuf::from("/usr/bin/chromium"),
        PathBuf::from("/usr/bin/chromedriver"),
        repo().join("tests/console/node_modules/axe-core/axe.min.js"),
    ];
    installed(&needed).then_some(python)
}

#[test]
fn an_operator_uses_the_console_in_a_real_browser() {
    if !fault_injection_built() {
        return;
    }
    let Some(python) = browser_tools() else {
        return;
    };
    let node = "console";
    let Some(bank) = cluster_bank("console", &[node]) else {
        return;
    };
    open_accounts(&bank, &["stuck"]);
    let dir = TestDir::new();
    // No periodic recovery while the test runs: the operator acts, not the server.
    let config = write_config(
        &dir,
        &[("pg", bank.0.clone()), ("my", bank.1.clone())],
        &format!("node = \"{node}\"\n[server]\nrecovery_interval_ms = 3600000\n"),
    );
    let server = ServerProcess::start(&dir, &config, &[]);
    let url = &server.url;
    let (status, published) = server.publish("transfer", "1.0.0", &guest(TRANSFER));
    assert_eq!(status, 201, "{published}");

    // An aborted transaction, then more than a page of committed ones.
    let (status, aborted) = server.invoke(
        "transfer",
        transfer_body(("pg", "alice"), ("my", "bob"), 5000),
    );
    assert_eq!(status, 422, "{aborted}");
    let mut committed = String::new();
    for _ in 0..60 {
        let (status, body) =
            server.invoke("transfer", transfer_body(("pg", "alice"), ("my", "bob"), 1));
        assert_eq!(status, 200, "{body}");
        committed = body["gid"].as_str().unwrap().to_owned();
    }
    // A host that stopped after recording COMMIT: both branches stay prepared.
    let (in_doubt, on) = crash_transfer(&dir, &config, node, "after-decision", "stuck", 10);
    assert_eq!(on, ["pg", "my"], "both prepared before the decision");
    let since = now_ms();

    let screenshots = std::env::var_os("WASMTX_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/console-screenshots"));
    let args = json!({
        "url": url,
        "admin": ADMIN,
        "reader": READER,
        "committed": committed,
        "aborted": aborted["gid"],
        "in_doubt": in_doubt,
        "plugin": "transfer",
        "wasm": guest(TRANSFER),
        "screenshots": screenshots,
    });
    let mut command = Command::new(&python);
    command
        .arg(repo().join("tests/console/browser_check.py"))
        .arg(args.to_string());
    let out = output_within(command, Duration::from_secs(300));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{printed}");
    assert!(
        out.status.success(),
        "the browser checks failed:\n{printed}\nserver: {}",
        server.stderr_text()
    );

    // What the console said it did is what the databases hold.
    assert_eq!(branches_of(node, &in_doubt), 0, "nothing left prepared");
    assert_eq!(
        pair_balance(&bank, "stuck"),
        (990, 1010),
        "the transfer was committed"
    );
    let (status, tx) = tx_status(url, &in_doubt);
    assert_eq!(
        (status, tx["status"].as_str()),
        (200, Some("committed")),
        "{tx}"
    );
    let resolution = &tx["resolution"];
    assert_eq!(resolution["by"], "ops", "{tx}");
    assert_eq!(resolution["asked"], "commit", "{tx}");
    assert_eq!(resolution["heuristic"], false, "{tx}");
    assert_eq!(
        resolution["reason"], "ticket OPS-7: host lost after COMMIT",
        "{tx}"
    );
    assert!(resolution["at"].as_i64().unwrap() >= since, "{tx}");
    // Sixty transfers of 1 and nothing of the aborted one.
    assert_eq!(
        (
            server_balance(&bank.0, "alice"),
            server_balance(&bank.1, "bob")
        ),
        (940, 1060)
    );
    // What the plugin pages did, as the API sees it.
    let (status, plugin) = http(url, "GET", "/v1/plugins/transfer", Some(READER), None);
    assert_eq!(status, 200, "{plugin}");
    assert_eq!(plugin["aliases"]["stable"], "1.0.0", "{plugin}");
    let versions = plugin["versions"].as_array().unwrap();
    let withdrawn: Vec<&str> = versions
        .iter()
        .filter(|v| !v["withdrawn_at"].is_null())
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!((versions.len(), withdrawn), (2, vec!["1.0.1"]), "{plugin}");
    assert_eq!(versions[1]["published_by"], "ops", "{plugin}");
    for shot in [
        "overview",
        "transactions",
        "in-doubt",
        "in-doubt-confirm",
        "plugins",
    ] {
        assert!(
            Path::new(&screenshots)
                .join(format!("{shot}.png"))
                .is_file(),
            "screenshot {shot}"
        );
    }
}
