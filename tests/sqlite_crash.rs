//! SIGKILL of `wasmtx run` at random moments while it commits one transaction across three
//! SQLite files: afterwards every file holds all of the transaction or none of it.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{TestDir, create_sqlite, guest, sqlite};

const USER_TABLE: &str = "CREATE TABLE user (id INTEGER PRIMARY KEY AUTOINCREMENT, username VARCHAR(255) NOT NULL UNIQUE, \
     password VARCHAR(255) NOT NULL, created_at TIMESTAMP NULL, updated_at TIMESTAMP NULL);";
const KILLS_REQUIRED: usize = 20;

/// A small deterministic generator (xorshift), seeded from the clock; the seed is printed
/// so a failure can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_during_a_three_file_commit_never_tears_it() {
    let sb = TestDir::new();
    let files: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| sb.path(&format!("{n}.db")))
        .collect();
    for file in &files {
        create_sqlite(file, USER_TABLE);
    }
    let script = guest("examples/insert-user");
    let participants: Vec<String> = ["a", "b", "c"]
        .iter()
        .zip(&files)
        .map(|(n, f)| format!("{n}=sqlite://{}", f.display()))
        .collect();
    let command = |username: &str| {
        let mut command = sb.wasmtx();
        command.arg("run").arg(&script).args([
            "--input",
            &format!(r#"{{"username":"{username}","password":"p"}}"#),
        ]);
        for p in &participants {
            command.args(["-p", p]);
        }
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    };

    // How long one whole run takes here, so kills land across its whole life.
    let started = Instant::now();
    assert!(command("warmup").status().unwrap().success());
    let run_time = started.elapsed();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}, one run takes {run_time:?}");
    let mut random = Random(seed);
    let (mut kills, mut attempts, mut committed) = (0, 0, 0);
    while kills < KILLS_REQUIRED && attempts < KILLS_REQUIRED * 5 {
        attempts += 1;
        let username = format!("user-{attempts}");
        let delay =
            Duration::from_micros(random.next() % (run_time.as_micros() as u64 * 3 / 2).max(1));
        let mut child = command(&username).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();

        let present: Vec<bool> = files
            .iter()
            .map(|f| {
                !sqlite(
                    f,
                    &format!("SELECT 1 FROM user WHERE username = '{username}'"),
                )
                .is_empty()
            })
            .collect();
        assert!(
            present.iter().all(|&p| p) || present.iter().all(|&p| !p),
            "torn commit of {username} after a kill at {delay:?} (seed {seed}): present in a/b/c = {present:?}"
        );
        committed += usize::from(present[0]);
    }
    println!(
        "{kills} kills in {attempts} runs; {committed} transactions committed, the rest left no trace"
    );
    assert!(
        kills >= KILLS_REQUIRED,
        "only {kills} runs were still alive when killed"
    );

    // The files agree with each other row for row, and a run afterwards still commits.
    let rows: Vec<_> = files
        .iter()
        .map(|f| sqlite(f, "SELECT username FROM user ORDER BY username"))
        .collect();
    assert!(
        rows.iter().all(|r| r == &rows[0]),
        "files disagree: {rows:?}"
    );
    assert!(command("after").status().unwrap().success());
}
