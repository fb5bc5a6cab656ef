//! The `wasmtx` CLI on hostile input, end to end: random bytes and truncated components as the
//! script, a core module, invalid UTF-8 and deeply nested or huge JSON as `--input`, invalid
//! UTF-8 in `-p` values and in configuration files. Each run must exit with status 2 and a
//! message on stderr naming the problem, never panic or die by a signal, and leave the
//! participants' SQLite files byte for byte as they were.
//!
//! Random cases are drawn afresh on every run (`PROPTEST_RNG_SEED` fixes them);
//! `scripts/fuzz.sh` runs this file in a loop.

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{RUN_LIMIT, TestDir, accounts_db, guest, output_within};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// Two SQLite participants with the transfer example's accounts, and their bytes as created.
struct Bank {
    dir: TestDir,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Bank {
    fn new() -> Self {
        let dir = TestDir::new();
        let files = ["a", "b"]
            .iter()
            .map(|name| {
                let path = dir.path(&format!("{name}.db"));
                accounts_db(&path, &[("alice", 10), ("bob", 10)]);
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        Bank { dir, files }
    }

    fn participant_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        for (name, (path, _)) in ["a", "b"].iter().zip(&self.files) {
            args.push("-p".into());
            args.push(format!("{name}=sqlite://{}", path.display()).into());
        }
        args
    }

    /// `wasmtx run SCRIPT -p a=… -p b=… ARGS…`.
    fn run(&self, script: &Path, args: &[OsString]) -> Output {
        let mut command = self.dir.wasmtx();
        command
            .arg("run")
            .arg(script)
            .args(self.participant_args())
            .args(args);
        output_within(command, RUN_LIMIT)
    }

    /// Runs and checks the outcome of bad input: status 2, `expected` (one of) on stderr, no
    /// panic, the files unchanged. `case` describes the input in failure messages.
    fn refused(&self, case: &str, script: &Path, args: &[OsString], expected: &[&str]) {
        let output = self.run(script, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let report = format!("{case}: status {:?}\nstderr: {stderr:.2000}", output.status);
        assert!(!stderr.contains("panicked"), "{report}");
        assert_eq!(output.status.code(), Some(2), "{report}");
        assert!(
            expected.iter().any(|message| stderr.contains(message)),
            "{report}\nexpected one of {expected:?}"
        );
        self.assert_untouched(case);
    }

    fn assert_untouched(&self, case: &str) {
        for (path, before) in &self.files {
            let after = std::fs::read(path).unwrap();
            assert!(&after == before, "{case}: {} changed", path.display());
        }
    }

    /// Writes `bytes` to a file in the test directory and returns its path.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// `count` values of `strategy`, drawn at random (or from `PROPTEST_RNG_SEED`).
fn samples<T: std::fmt::Debug>(strategy: impl Strategy<Value = T>, count: usize) -> Vec<T> {
    let mut runner = TestRunner::default();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

fn describe(bytes: &[u8]) -> String {
    let head: String = bytes.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("{} bytes starting {head}", bytes.len())
}

const NOT_A_COMPONENT: &[&str] = &[
    "is not a WebAssembly file",
    "is not a valid component",
    "is a core WebAssembly module",
    "does not implement the world",
];

fn args<const N: usize>(args: [&OsStr; N]) -> Vec<OsString> {
    args.iter().map(|arg| arg.to_os_string()).collect()
}

#[test]
fn random_bytes_are_refused_as_a_script() {
    let bank = Bank::new();
    let magic = prop_oneof![
        Just(Vec::new()),
        Just(b"\0asm".to_vec()),
        Just(b"\0asm\x0d\0\x01\0".to_vec()),
        Just(b"\0asm\x01\0\0\0".to_vec()),
    ];
    let bytes = (magic, prop::collection::vec(any::<u8>(), 0..512))
        .prop_map(|(magic, rest)| [magic, rest].concat());
    for (i, bytes) in samples(bytes, 6).into_iter().enumerate() {
        let script = bank.file(&format!("random-{i}.wasm"), &bytes);
        bank.refused(&describe(&bytes), &script, &[], NOT_A_COMPONENT);
    }
}

#[test]
fn truncated_components_are_refused() {
    let bank = Bank::new();
    let component = std::fs::read(guest("examples/transfer")).unwrap();
    let mut cuts = samples(0..component.len(), 5);
    cuts.extend([0, 4, 8, component.len() - 1]);
    for cut in cuts {
        let script = bank.file(&format!("cut-{cut}.wasm"), &component[..cut]);
        let case = format!(
            "the transfer component cut to {cut} of {} bytes",
            component.len()
        );
        bank.refused(&case, &script, &[], NOT_A_COMPONENT);
    }
}

#[test]
fn a_core_module_is_refused_with_what_to_do() {
    let bank = Bank::new();
    // The smallest core module: magic and version 1, no sections.
    let script = bank.file("core.wasm", b"\0asm\x01\0\0\0");
    bank.refused(
        "a core module",
        &script,
        &[],
        &["is a core WebAssembly module, not a component; build the script for wasm32-wasip2"],
    );
}

#[test]
fn bad_input_json_is_refused_before_anything_runs() {
    let bank = Bank::new();
    let script = guest("examples/transfer");
    let input = |value: &OsStr| args([OsStr::new("--input"), value]);
    let invalid_utf8 = OsStr::from_bytes(b"{\"amount\": \"\xff\xfe\"}");
    bank.refused(
        "invalid UTF-8 in --input",
        &script,
        &input(invalid_utf8),
        &["invalid UTF-8"],
    );
    let deep = "[".repeat(100_000);
    bank.refused(
        "100,000 [ as --input",
        &script,
        &input(OsStr::new(&deep)),
        &["the input is not valid JSON: EOF while parsing a list"],
    );
    let huge_broken = format!("[{}", "1,".repeat(8 << 20));
    let path = bank.file("huge.json", huge_broken.as_bytes());
    bank.refused(
        "16 MiB of unterminated JSON as --input @FILE",
        &script,
        &input(OsStr::new(&format!("@{}", path.display()))),
        &["the input is not valid JSON: EOF while parsing"],
    );
    let path = bank.file("invalid-utf8.json", b"{\"a\": \"\xc3\x28\"}");
    bank.refused(
        "invalid UTF-8 in an --input file",
        &script,
        &input(OsStr::new(&format!("@{}", path.display()))),
        &["cannot read input file", "not valid JSON"],
    );
    for (i, bytes) in samples(prop::collection::vec(any::<u8>(), 1..64), 4)
        .into_iter()
        .enumerate()
    {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
            continue;
        }
        let path = bank.file(&format!("random-{i}.json"), &bytes);
        bank.refused(
            &format!("--input @FILE of {}", describe(&bytes)),
            &script,
            &input(OsStr::new(&format!("@{}", path.display()))),
            &["cannot read input file", "the input is not valid JSON"],
        );
    }
}

/// Valid JSON too large for the script's memory: the run aborts with a typed error (it is
/// not bad input), without a panic, and the files stay as they were.
#[test]
fn huge_valid_json_is_a_typed_failure_not_a_crash() {
    let bank = Bank::new();
    let script = guest("examples/transfer");
    let huge = format!("[{}1]", "1,".repeat(12 << 20));
    let path = bank.file("huge.json", huge.as_bytes());
    let output = bank.run(
        &script,
        &args([
            OsStr::new("--memory"),
            OsStr::new("8"),
            OsStr::new("--input"),
            OsStr::new(&format!("@{}", path.display())),
        ]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr:.2000}");
    assert_eq!(output.status.code(), Some(1), "{stderr:.2000}");
    bank.assert_untouched("24 MiB of JSON for a script with 8 MiB of memory");
}

#[test]
fn invalid_utf8_in_participants_and_configuration_is_refused() {
    let bank = Bank::new();
    let script = guest("examples/transfer");
    let participant = OsStr::from_bytes(b"c=sqlite://\xff.db");
    bank.refused(
        "invalid UTF-8 in a -p value",
        &script,
        &args([OsStr::new("-p"), participant]),
        &["invalid UTF-8"],
    );
    let config = bank.file("config.toml", b"node = \"n\xff\"\n[participants]\n");
    bank.refused(
        "invalid UTF-8 in the configuration file",
        &script,
        &args([OsStr::new("--config"), config.as_os_str()]),
        &["config.toml"],
    );
    for (i, bytes) in samples(prop::collection::vec(any::<u8>(), 1..64), 3)
        .into_iter()
        .enumerate()
    {
        let config = bank.file(&format!("random-{i}.toml"), &bytes);
        let output = bank.run(&script, &args([OsStr::new("--config"), config.as_os_str()]));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let case = format!("a configuration file of {}", describe(&bytes));
        assert!(!stderr.contains("panicked"), "{case}: {stderr:.2000}");
        // Random bytes can happen to be an empty or trivial TOML file: then the -p
        // participants run the transfer, which aborts on the default input.
        assert!(
            matches!(output.status.code(), Some(1 | 2)),
            "{case}: {:?} {stderr:.2000}",
            output.status
        );
        bank.assert_untouched(&case);
    }
}
