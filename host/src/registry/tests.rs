//! The registry's rules, on real components built from the repository's guest crates and
//! real directories.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex, OnceLock};

use super::*;
use crate::limits::Limits;
use crate::script::CacheState;

/// Builds a guest crate of the repository (once per test process) and returns its bytes.
fn guest(crate_dir: &str) -> Vec<u8> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = built.entry(crate_dir.to_owned()).or_insert_with(|| {
        crate::guest_build::build_guest(
            &repo.join(crate_dir),
            true,
            Some(&repo.join("target/guests")),
        )
        .unwrap_or_else(|e| panic!("building {crate_dir}: {e}"))
    });
    std::fs::read(path).unwrap()
}

fn transfer() -> Vec<u8> {
    guest("examples/transfer")
}

fn insert_user() -> Vec<u8> {
    guest("examples/insert-user")
}

/// A registry and a sandbox with its own compiled cache, in a fresh directory.
struct Fixture {
    dir: tempfile::TempDir,
    sandbox: Sandbox,
    registry: Registry,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(&Limits::default(), 2, dir.path().join("cache")).unwrap();
        let registry = Registry::open(&dir.path().join("plugins")).unwrap();
        Fixture {
            dir,
            sandbox,
            registry,
        }
    }

    fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    fn publish(&self, name: &str, version: &str, bytes: &[u8]) -> Result<Published, RegistryError> {
        self.registry
            .publish(&self.sandbox, name, version, bytes, Some("tester"))
    }

    fn reopen(&mut self) {
        self.registry = Registry::open(&self.plugins()).unwrap();
    }

    fn files_under(&self, sub: &str) -> Vec<PathBuf> {
        std::fs::read_dir(self.plugins().join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, RegistryError>) -> &'static str {
    result.expect_err("expected an error").code()
}

#[test]
fn a_published_component_resolves_by_version_alias_latest_and_digest() {
    let f = Fixture::new();
    let bytes = transfer();
    let published = f.publish("transfer", "1.0.0", &bytes).unwrap();
    assert!(published.created);
    let info = &published.info;
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("transfer", "1.0.0")
    );
    assert_eq!(info.digest, digest_of(&bytes));
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.published_by.as_deref(), Some("tester"));
    assert!(chrono::DateTime::parse_from_rfc3339(&info.published_at).is_ok());
    assert_eq!(info.withdrawn_at, None);

    // Stored once, by digest, with the same bytes.
    let blob = f.registry.blob_path(&info.digest);
    assert_eq!(
        blob,
        f.plugins()
            .join(format!("blobs/sha256/{}.wasm", &info.digest[7..]))
    );
    assert_eq!(std::fs::read(&blob).unwrap(), bytes);

    f.registry.set_alias("transfer", "stable", "1.0.0").unwrap();
    for selector in [
        None,
        Some("latest"),
        Some("1.0.0"),
        Some("stable"),
        Some(info.digest.as_str()),
    ] {
        let resolved = f.registry.resolve("transfer", selector).unwrap();
        assert_eq!(resolved.version, "1.0.0", "{selector:?}");
        assert_eq!(resolved.digest, info.digest);
        assert_eq!(resolved.path, blob);
    }
    // The check filled the compiled cache: the first invocation loads without compiling
    // (as the server loads it: keyed by the digest the registry checked).
    let resolved = f.registry.resolve("transfer", None).unwrap();
    let script = f
        .sandbox
        .load_published(&resolved.path, &resolved.digest)
        .unwrap();
    assert_eq!(script.cache, CacheState::Hit);

    assert_eq!(f.registry.version("transfer", "1.0.0").unwrap(), *info);
    let detail = f.registry.show("transfer").unwrap();
    assert_eq!(detail.versions, vec![info.clone()]);
    let aliases: Vec<_> = detail
        .aliases
        .iter()
        .map(|(a, v)| (a.as_str(), v.as_str()))
        .collect();
    assert_eq!(aliases, [("latest", "1.0.0"), ("stable", "1.0.0")]);
    let list = f.registry.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].latest.as_deref(), Some("1.0.0"));
    assert_eq!(list[0].versions, 1);
}

#[test]
fn the_same_bytes_again_change_nothing_and_other_bytes_conflict() {
    let f = Fixture::new();
    let first = f.publish("transfer", "1.0.0", &transfer()).unwrap();
    let again = f.publish("transfer", "1.0.0", &transfer()).unwrap();
    assert!(!again.created);
    assert_eq!(again.info, first.info, "the original publication is kept");

    let other = insert_user();
    match f.publish("transfer", "1.0.0", &other) {
        Err(RegistryError::VersionExists {
            name,
            version,
            existing_digest,
        }) => {
            assert_eq!((name.as_str(), version.as_str()), ("transfer", "1.0.0"));
            assert_eq!(existing_digest, first.info.digest);
        }
        other => panic!("expected version-exists, got {other:?}"),
    }
    let resolved = f.registry.resolve("transfer", Some("1.0.0")).unwrap();
    assert_eq!(std::fs::read(resolved.path).unwrap(), transfer());
    assert!(!f.registry.blob_path(&digest_of(&other)).exists());

    // The same bytes under another version or name are stored once.
    f.publish("transfer", "1.0.1", &transfer()).unwrap();
    f.publish("transfer-copy", "0.1.0", &transfer()).unwrap();
    assert_eq!(f.files_under("blobs/sha256").len(), 1);
}

#[test]
fn a_refused_upload_leaves_nothing_behind() {
    let f = Fixture::new();
    let component = transfer();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("not wasm", b"#!/bin/sh\necho hi\n".to_vec(), "not-wasm"),
        ("a core module", b"\0asm\x01\0\0\0".to_vec(), "core-module"),
        (
            "a cut component",
            component[..component.len() / 2].to_vec(),
            "invalid-component",
        ),
        (
            "another world",
            guest("tests/guests/other-world"),
            "wrong-world",
        ),
        ("empty", Vec::new(), "not-wasm"),
    ];
    for (case, bytes, expected) in cases {
        let error = f.publish("bad", "1.0.0", &bytes).expect_err(case);
        assert_eq!(error.code(), expected, "{case}: {error}");
        assert!(error.to_string().contains("bad@1.0.0"), "{case}: {error}");
        assert!(!error.to_string().contains("staging"), "{case}: {error}");
    }
    assert_eq!(code(f.registry.show("bad")), "plugin-not-found");
    assert!(f.registry.list().is_empty());
    assert!(f.files_under("blobs/sha256").is_empty());
    assert!(f.files_under("staging").is_empty());
    assert!(!f.plugins().join("index.json").exists());
    // A refused upload does not block a good one under the same name and version.
    assert!(f.publish("bad", "1.0.0", &component).unwrap().created);
}

#[test]
fn names_versions_and_selectors_are_checked() {
    let f = Fixture::new();
    let t = transfer();
    let refused_publish = [
        ("Bad Name", "1.0.0", "invalid-name"),
        ("../etc", "1.0.0", "invalid-name"),
        ("transfer", "1.0", "invalid-version"),
        ("transfer", "latest", "invalid-version"),
    ];
    for (name, version, expected) in refused_publish {
        assert_eq!(
            code(f.publish(name, version, &t)),
            expected,
            "{name}@{version}"
        );
    }
    f.publish("transfer", "1.0.0", &t).unwrap();
    let unknown_digest = format!("sha256:{}", "0".repeat(64));
    let r = &f.registry;
    let refused = [
        (
            "resolve 1.0",
            code(r.resolve("transfer", Some("1.0"))),
            "invalid-version",
        ),
        (
            "resolve 2.0.0",
            code(r.resolve("transfer", Some("2.0.0"))),
            "version-not-found",
        ),
        (
            "resolve beta",
            code(r.resolve("transfer", Some("beta"))),
            "version-not-found",
        ),
        (
            "resolve a digest",
            code(r.resolve("transfer", Some(&unknown_digest))),
            "version-not-found",
        ),
        (
            "resolve nobody",
            code(r.resolve("nobody", None)),
            "plugin-not-found",
        ),
        (
            "version 1.0.1",
            code(r.version("transfer", "1.0.1")),
            "version-not-found",
        ),
        (
            "alias latest",
            code(r.set_alias("transfer", "latest", "1.0.0")),
            "invalid-alias",
        ),
        (
            "alias 1.0.0",
            code(r.set_alias("transfer", "1.0.0", "1.0.0")),
            "invalid-alias",
        ),
        (
            "alias to 9.9.9",
            code(r.set_alias("transfer", "beta", "9.9.9")),
            "version-not-found",
        ),
        (
            "alias of nobody",
            code(r.set_alias("nobody", "beta", "1.0.0")),
            "plugin-not-found",
        ),
        (
            "withdraw 9.9.9",
            code(r.withdraw("transfer", "9.9.9")),
            "version-not-found",
        ),
    ];
    for (case, found, expected) in refused {
        assert_eq!(found, expected, "{case}");
    }

    // A digest published under another name does not resolve under this one.
    f.publish("other", "1.0.0", &insert_user()).unwrap();
    assert_eq!(
        code(
            f.registry
                .resolve("transfer", Some(&digest_of(&insert_user())))
        ),
        "version-not-found"
    );
    // blob_path never leaves the blob directory.
    let outside = f.registry.blob_path("sha256:../../index");
    assert!(outside.starts_with(f.plugins().join("blobs/sha256")) && !outside.exists());
}

#[test]
fn latest_is_the_highest_release_not_withdrawn() {
    let f = Fixture::new();
    let latest = |f: &Fixture| f.registry.resolve("transfer", None).map(|r| r.version);
    f.publish("transfer", "2.0.0-rc.1", &transfer()).unwrap();
    assert_eq!(
        latest(&f).unwrap(),
        "2.0.0-rc.1",
        "a pre-release while there is no release"
    );
    f.publish("transfer", "1.2.0", &transfer()).unwrap();
    f.publish("transfer", "1.10.0", &transfer()).unwrap();
    f.publish("transfer", "1.9.0", &transfer()).unwrap();
    assert_eq!(
        latest(&f).unwrap(),
        "1.10.0",
        "semver order, releases first"
    );
    let versions: Vec<_> = f
        .registry
        .show("transfer")
        .unwrap()
        .versions
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, ["1.2.0", "1.9.0", "1.10.0", "2.0.0-rc.1"]);

    f.registry.withdraw("transfer", "1.10.0").unwrap();
    assert_eq!(latest(&f).unwrap(), "1.9.0");
    assert_eq!(f.registry.list()[0].latest.as_deref(), Some("1.9.0"));
    for version in ["1.9.0", "1.2.0"] {
        f.registry.withdraw("transfer", version).unwrap();
    }
    assert_eq!(latest(&f).unwrap(), "2.0.0-rc.1");
    f.registry.withdraw("transfer", "2.0.0-rc.1").unwrap();
    match f.registry.resolve("transfer", None) {
        Err(RegistryError::Withdrawn { version, .. }) => assert_eq!(version, "2.0.0-rc.1"),
        other => panic!("every version is withdrawn, expected plugin-withdrawn: {other:?}"),
    }
    let summary = &f.registry.list()[0];
    assert_eq!((summary.latest.as_deref(), summary.versions), (None, 4));
    assert!(!summary.aliases.contains_key("latest"));
}

#[test]
fn a_withdrawn_version_keeps_its_bytes_but_no_longer_resolves() {
    let f = Fixture::new();
    let old = f.publish("transfer", "1.0.0", &transfer()).unwrap().info;
    f.publish("transfer", "1.1.0", &insert_user()).unwrap();
    f.registry.set_alias("transfer", "stable", "1.0.0").unwrap();

    let withdrawn = f.registry.withdraw("transfer", "1.0.0").unwrap();
    let at = withdrawn.withdrawn_at.clone().expect("withdrawn_at is set");
    assert!(chrono::DateTime::parse_from_rfc3339(&at).is_ok());
    assert_eq!(withdrawn.digest, old.digest, "the history keeps its digest");
    let again = f.registry.withdraw("transfer", "1.0.0").unwrap();
    assert_eq!(
        again.withdrawn_at,
        Some(at),
        "withdrawing again keeps the first time"
    );

    for selector in ["1.0.0", "stable", old.digest.as_str()] {
        match f.registry.resolve("transfer", Some(selector)) {
            Err(RegistryError::Withdrawn { name, version }) => {
                assert_eq!(
                    (name.as_str(), version.as_str()),
                    ("transfer", "1.0.0"),
                    "{selector}"
                )
            }
            other => panic!("{selector}: expected plugin-withdrawn, got {other:?}"),
        }
    }
    assert_eq!(
        std::fs::read(f.registry.blob_path(&old.digest)).unwrap(),
        transfer()
    );
    assert_eq!(f.registry.version("transfer", "1.0.0").unwrap(), withdrawn);
    assert_eq!(
        f.registry.resolve("transfer", None).unwrap().version,
        "1.1.0"
    );
    assert_eq!(
        code(f.registry.set_alias("transfer", "canary", "1.0.0")),
        "plugin-withdrawn"
    );
    // The same bytes again are still recognised; other bytes still conflict.
    assert!(!f.publish("transfer", "1.0.0", &transfer()).unwrap().created);
    assert_eq!(
        code(f.publish("transfer", "1.0.0", &insert_user())),
        "version-exists"
    );
    // Moving the alias to a usable version makes it resolve again.
    f.registry.set_alias("transfer", "stable", "1.1.0").unwrap();
    assert_eq!(
        f.registry
            .resolve("transfer", Some("stable"))
            .unwrap()
            .version,
        "1.1.0"
    );
}

#[test]
fn a_digest_published_under_several_versions_resolves_to_a_usable_one() {
    let f = Fixture::new();
    let digest = f
        .publish("transfer", "1.0.0", &transfer())
        .unwrap()
        .info
        .digest;
    f.publish("transfer", "1.0.1", &transfer()).unwrap();
    f.registry.withdraw("transfer", "1.0.0").unwrap();
    assert_eq!(
        f.registry
            .resolve("transfer", Some(&digest))
            .unwrap()
            .version,
        "1.0.1"
    );
}

#[test]
fn the_registry_survives_a_restart() {
    let mut f = Fixture::new();
    let one = f.publish("transfer", "1.0.0", &transfer()).unwrap().info;
    f.publish("transfer", "1.1.0", &insert_user()).unwrap();
    f.publish("insert-user", "0.1.0", &insert_user()).unwrap();
    f.registry.set_alias("transfer", "stable", "1.0.0").unwrap();
    f.registry.withdraw("transfer", "1.1.0").unwrap();
    let (list, detail) = (f.registry.list(), f.registry.show("transfer").unwrap());

    f.reopen();
    assert_eq!(f.registry.list(), list);
    assert_eq!(f.registry.show("transfer").unwrap(), detail);
    assert_eq!(
        f.registry
            .resolve("transfer", Some("stable"))
            .unwrap()
            .digest,
        one.digest
    );
    assert_eq!(
        code(f.registry.resolve("transfer", Some("1.1.0"))),
        "plugin-withdrawn"
    );
    assert!(!f.publish("transfer", "1.0.0", &transfer()).unwrap().created);
    assert_eq!(
        code(f.publish("transfer", "1.0.0", &insert_user())),
        "version-exists"
    );
    // A restarted host with an empty compiled cache still loads what resolve returns.
    let fresh = Sandbox::new(&Limits::default(), 1, f.dir.path().join("fresh-cache")).unwrap();
    let script = fresh
        .load(&f.registry.resolve("insert-user", None).unwrap().path)
        .unwrap();
    assert_eq!(script.cache, CacheState::Compiled);
}

#[test]
fn an_unreadable_index_is_an_error_not_an_empty_registry() {
    let f = Fixture::new();
    f.publish("transfer", "1.0.0", &transfer()).unwrap();
    std::fs::write(f.plugins().join("index.json"), b"{ not json").unwrap();
    let error = Registry::open(&f.plugins())
        .err()
        .expect("a corrupt index is refused");
    assert_eq!(error.code(), "registry-io");
    assert!(error.to_string().contains("index.json"), "{error}");
}

#[test]
fn two_threads_publishing_one_version_with_different_bytes_one_wins() {
    let f = Arc::new(Fixture::new());
    let candidates = [transfer(), insert_user()];
    let barrier = Arc::new(Barrier::new(candidates.len()));
    let threads: Vec<_> = candidates
        .iter()
        .cloned()
        .map(|bytes| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f.publish("race", "1.0.0", &bytes)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(winners[0].created);
    let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(loser.code(), "version-exists");
    let resolved = f.registry.resolve("race", Some("1.0.0")).unwrap();
    assert_eq!(resolved.digest, winners[0].info.digest);
    assert_eq!(f.registry.show("race").unwrap().versions.len(), 1);
    assert!(f.files_under("staging").is_empty());
}

#[test]
fn two_registries_on_one_directory_see_each_others_writes() {
    let f = Fixture::new();
    let other = Registry::open(&f.plugins()).unwrap();
    f.publish("transfer", "1.0.0", &transfer()).unwrap();
    assert_eq!(other.resolve("transfer", None).unwrap().version, "1.0.0");
    other
        .publish(&f.sandbox, "transfer", "1.1.0", &insert_user(), None)
        .unwrap();
    other.set_alias("transfer", "stable", "1.0.0").unwrap();
    // The first registry re-reads the index before writing: nothing of the other's is lost.
    f.registry.withdraw("transfer", "1.1.0").unwrap();
    let detail = other.show("transfer").unwrap();
    assert_eq!(detail.versions.len(), 2);
    assert_eq!(
        detail.aliases.get("stable").map(String::as_str),
        Some("1.0.0")
    );
    assert_eq!(
        code(other.resolve("transfer", Some("1.1.0"))),
        "plugin-withdrawn"
    );
}

#[test]
fn joining_a_shared_index_adds_what_it_lacks_and_keeps_its_own_bytes_on_a_conflict() {
    let entry = |digest: &str| VersionEntry {
        digest: digest.into(),
        size: 1,
        published_at: "2026-01-01T00:00:00.000Z".into(),
        published_by: None,
        withdrawn_at: None,
    };
    let mut shared = Index::default();
    shared.insert("p", "1.0.0", entry("sha256:aa"));
    let mut ours = Index::default();
    ours.insert("p", "1.0.0", entry("sha256:bb"));
    ours.insert("p", "1.1.0", entry("sha256:cc"));
    ours.insert("q", "0.1.0", entry("sha256:dd"));
    ours.set_alias("p", "stable", "1.1.0").unwrap();

    let (added, conflicts) = shared.merge_missing(&ours);
    assert!(added);
    assert_eq!(conflicts, ["p@1.0.0"]);
    assert_eq!(shared.entry("p", "1.0.0").unwrap().digest, "sha256:aa");
    assert_eq!(shared.entry("p", "1.1.0").unwrap().digest, "sha256:cc");
    assert_eq!(shared.entry("q", "0.1.0").unwrap().digest, "sha256:dd");
    assert_eq!(shared.plugins["p"].aliases["stable"], "1.1.0");
    assert_eq!(
        shared.digests().into_iter().collect::<Vec<_>>(),
        ["sha256:aa", "sha256:cc", "sha256:dd"]
    );
    // Merging again adds nothing.
    assert_eq!(
        shared.merge_missing(&ours),
        (false, vec!["p@1.0.0".to_owned()])
    );
}
