//! Least privilege on real PostgreSQL and MariaDB servers: a superuser participant is
//! detected and warned about, the role of README's recipe (`wasmtx_app`, created by
//! scripts/setup-databases.sh) is not, and that role is enough for two-phase commit and for
//! recovering a branch a crash left prepared.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{
    APP_ROLE, TestDir, block_on, guest, least_privilege, mysql_db, postgres_db, prepared_branches,
    server_accounts, server_balance, transfer_input,
};
use wasmtx::ParticipantSpec;
use wasmtx::participant::{ParticipantSlot, PrivilegeReport};

/// Each test's databases, `wtx_<node>` on both servers, with an `accounts` table: alice on
/// PostgreSQL, bob on MariaDB. Returns the superuser URLs.
fn bank(node: &str) -> Option<(String, String)> {
    let db = format!("wtx_{}", node.replace('-', "_"));
    let (pg, my) = (postgres_db(&db)?, mysql_db(&db)?);
    server_accounts(&pg, &[("alice", 100)]);
    server_accounts(&my, &[("bob", 100)]);
    Some((pg, my))
}

fn privileges(url: &str) -> PrivilegeReport {
    block_on(async {
        let spec = ParticipantSpec::new("p", url).unwrap();
        let slot = ParticipantSlot::connect(&spec, 1).await.unwrap();
        slot.privilege_check().await.unwrap()
    })
}

fn run_transfer(sb: &TestDir, node: &str, pg: &str, my: &str, fault: Option<&str>) -> Output {
    let mut command: Command = sb.wasmtx();
    command
        .env("WASMTX_NODE", node)
        .arg("run")
        .arg(guest("examples/transfer"))
        .arg("--json")
        .args(["--input", &transfer_input(("a", "alice"), ("b", "bob"), 30)])
        .args(["-p", &format!("a={pg}"), "-p", &format!("b={my}")]);
    if let Some(point) = fault {
        command
            .args(["--timeout", "1"])
            .env("WASMTX_FAULT", point)
            .stdout(Stdio::null());
    }
    command.output().expect("running wasmtx")
}

/// Checks that `output` ran to success with `expected` superuser warnings on stderr.
fn assert_warnings(output: &Output, expected: usize) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let warnings = stderr
        .lines()
        .filter(|l| l.starts_with("warning: participant") && l.contains("superuser"))
        .count();
    assert_eq!(warnings, expected, "{stderr}");
}

#[test]
fn a_superuser_is_detected_and_the_recipe_role_is_not() {
    let Some((pg, my)) = bank("lp-detect") else {
        return;
    };
    let pg_root = privileges(&pg);
    assert!(pg_root.superuser, "{pg_root:?}");
    assert!(pg_root.detail.contains("rolsuper"), "{pg_root:?}");
    let my_root = privileges(&my);
    assert!(my_root.superuser, "{my_root:?}");
    assert!(my_root.detail.contains("ALL PRIVILEGES"), "{my_root:?}");

    let pg_app = privileges(&least_privilege(&pg));
    assert!(!pg_app.superuser, "{pg_app:?}");
    assert!(pg_app.detail.contains(APP_ROLE), "{pg_app:?}");
    let my_app = privileges(&least_privilege(&my));
    assert!(!my_app.superuser, "{my_app:?}");

    let sb = TestDir::new();
    let sqlite = sb.path("a.db");
    common::accounts_db(&sqlite, &[("carol", 1)]);
    assert!(!privileges(&format!("sqlite://{}", sqlite.display())).superuser);
}

#[test]
fn run_warns_once_per_superuser_participant() {
    let Some((pg, my)) = bank("lp-warn") else {
        return;
    };
    let sb = TestDir::new();
    assert_warnings(&run_transfer(&sb, "lp-warn", &pg, &my, None), 2);
    let (pg_app, my_app) = (least_privilege(&pg), least_privilege(&my));
    assert_warnings(&run_transfer(&sb, "lp-warn", &pg_app, &my_app, None), 0);
    assert_eq!(
        (server_balance(&pg, "alice"), server_balance(&my, "bob")),
        (40, 160)
    );
}

/// Recovery must work with the participant's own role: PostgreSQL lets only the role that
/// prepared a branch (or a superuser) finish it; MariaDB lets any account.
#[test]
fn the_recipe_role_commits_and_recovers_prepared_branches() {
    if !cfg!(feature = "fault-injection") {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "this test needs the fault-injection feature under CI (scripts/test.sh enables it)"
        );
        eprintln!(
            "skipping: built without the fault-injection feature (scripts/test.sh enables it)"
        );
        return;
    }
    // A crash after the COMMIT decision: recovery commits both branches. A crash after both
    // prepares, before any decision: recovery rolls both back once the deadline has passed.
    let cases = [
        ("lp-commit", "after-decision", (70, 130)),
        ("lp-abort", "after-prepare-1", (100, 100)),
    ];
    std::thread::scope(|scope| {
        for (node, point, expected) in cases {
            scope.spawn(move || {
                let Some((pg, my)) = bank(node) else { return };
                let (pg_app, my_app) = (least_privilege(&pg), least_privilege(&my));
                let sb = TestDir::new();
                let crashed = run_transfer(&sb, node, &pg_app, &my_app, Some(point));
                assert_eq!(crashed.status.code(), Some(86), "{point}: {crashed:?}");
                assert_eq!(
                    prepared_branches(node).len(),
                    2,
                    "{point}: both branches prepared"
                );

                std::thread::sleep(Duration::from_millis(6_500)); // past the deadline and margin
                let recovered = sb
                    .wasmtx()
                    .env("WASMTX_NODE", node)
                    .args([
                        "recover",
                        "--json",
                        "-p",
                        &format!("a={pg_app}"),
                        "-p",
                        &format!("b={my_app}"),
                    ])
                    .output()
                    .unwrap();
                let report = String::from_utf8_lossy(&recovered.stdout);
                assert_eq!(
                    recovered.status.code(),
                    Some(0),
                    "{point}: {report} {recovered:?}"
                );
                assert!(prepared_branches(node).is_empty(), "{point}: {report}");
                let balances = (server_balance(&pg, "alice"), server_balance(&my, "bob"));
                assert_eq!(balances, expected, "{point}: {report}");
            });
        }
    });
}
