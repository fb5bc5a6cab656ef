//! Helpers shared by the decision log's unit tests.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{DecisionLog, DecisionLogError, DecisionLogOptions};
use crate::decision_store::DecisionStore;
use crate::gid::{Gid, NodeId};

/// The blocking API, for tests that open and read a log on the test's own thread.
impl DecisionLog {
    pub(super) fn open(path: &Path) -> Result<Self, DecisionLogError> {
        Self::open_blocking(path, DecisionLogOptions::default())
    }

    pub(super) fn open_with(
        path: &Path,
        options: DecisionLogOptions,
    ) -> Result<Self, DecisionLogError> {
        Self::open_blocking(path, options)
    }

    /// The gids with a COMMIT and no DONE, as the file says now.
    pub(super) fn pending_commits(&self) -> Result<BTreeSet<Gid>, DecisionLogError> {
        self.writer.shared.read(|pending, _| pending.clone())
    }
}

pub(super) fn node() -> NodeId {
    NodeId::new("test").unwrap()
}

pub(super) fn later() -> SystemTime {
    SystemTime::now() + Duration::from_secs(60)
}

/// A fresh gid of the test node.
pub(super) fn gid() -> Gid {
    Gid::new(&node(), later())
}

pub(super) fn set(gids: &[&Gid]) -> BTreeSet<Gid> {
    gids.iter().map(|gid| (*gid).clone()).collect()
}

/// A temporary directory (removed when dropped) and the path of a log inside it.
pub(super) fn temp_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    (dir, path)
}

pub(super) fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state").join("decisions.log")
}

pub(super) fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

pub(super) fn append_raw(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Opens the log at `path`, records COMMIT for each of `gids`, and closes it.
pub(super) async fn commit_and_close(path: &Path, gids: &[&Gid]) {
    let log = DecisionLog::open(path).unwrap();
    for gid in gids {
        log.record_commit(gid, later()).await.unwrap();
    }
}

/// The pending COMMITs a fresh open of the log at `path` reads.
pub(super) fn pending_after_reopening(path: &Path) -> BTreeSet<Gid> {
    DecisionLog::open(path).unwrap().pending_commits().unwrap()
}
