//! The decision log: the durable record of which global transactions decided to COMMIT.
//!
//! # The rule
//!
//! A COMMIT decision is appended here and made durable (`fdatasync`) before any participant
//! commits in phase 2, and only while the transaction's deadline has not passed. No COMMIT
//! record means abort (presumed abort): recovery rolls back prepared branches that have no
//! record once their deadline (plus a margin) has passed, so a COMMIT must never be recorded
//! late. [`DecisionStore::record_commit`] checks the deadline at the last moment, under the
//! append lock, right before the write. A reader reads the clock for
//! [`Snapshot::as_of`] while it still holds the append lock (shared): a COMMIT is only
//! appended after its writer, holding that lock exclusively, saw `now < deadline`, so a
//! transaction not pending whose deadline is `<= as_of` can never get a COMMIT.
//!
//! A DONE record says phase 2 finished on every participant; it cancels the COMMIT. It is
//! not waited for: DONEs ride along with the next batch of COMMITs (or are written on their
//! own after [`DecisionLogOptions::done_delay`]). Losing one only makes recovery re-check a
//! transaction and find nothing to do.
//!
//! # File format (version 1, little-endian)
//!
//! ```text
//! header  = "WTXDLOG\0" (8 bytes) | version: u32 = 1
//! frame   = payload_len: u32 | crc32: u32 | payload          crc32 over payload_len ‖ payload
//! payload = record+
//! record  = kind: u8 (1 = COMMIT, 2 = DONE) | gid_len: u8 | gid (ASCII)
//! ```
//!
//! One frame is one group-commit batch: one `write`, then one `fdatasync`. The checksum
//! covers the length and every record (kind and gid), and a torn batch is rejected whole.
//!
//! # Torn tails and damage in the middle
//!
//! A frame that fails its checksum with no intact frame after it is a **torn tail** (a crash
//! or a `SIGKILL` during a write, or a write that failed half-way): it was never acknowledged,
//! so it is ignored. It must not stay there, or the next append would land behind it and a
//! reader that stops at the first bad frame would lose the new (acknowledged!) COMMIT. So every
//! writer, under the exclusive append lock, re-reads the tail before appending and truncates a
//! torn tail away; a writer whose own write fails truncates its partial frame before it lets
//! go of the lock. Writers also hold the append lock through their `fdatasync`, so across all
//! processes at most one frame is ever not yet durable, and it is the last one: a power loss
//! that writes back pages out of order can only garble the tail.
//!
//! Hence a bad frame **followed by an intact frame** cannot come from a crash of a wasmtx that
//! follows these rules: the disk or some other program changed the file. The damaged bytes
//! may have held a COMMIT that was acknowledged and acted on; skipping it would let recovery
//! roll back part of a committed transaction. The log refuses to open (or to read on) with
//! [`DecisionLogError::Damaged`], naming the file and the offset. A frame whose checksum
//! holds but whose records cannot be read (unknown kind, invalid gid) is treated the same way.
//! Damage confined to the last frame cannot be told from a torn write and is ignored like
//! one; the checksum still keeps it from being misread.
//!
//! # Several processes on one file
//!
//! Two `wasmtx run`s with the same state directory, or `wasmtx recover` during a run, share the
//! file. Each [`DecisionLog`]:
//! - opens the log with `O_APPEND` and holds a **shared** `flock` on it for its whole life;
//! - serializes appends through an exclusive `flock` on the sibling file `<log>.lock` (the
//!   *append lock*; readers take it shared, so they never see a batch half-written);
//! - reads records appended by anyone incrementally, from the end of what it has read, and
//!   syncs the file before trusting frames it did not sync itself (a writer killed between
//!   its write and its `fdatasync` leaves an intact frame that is not yet durable).
//!
//! **Compaction** rewrites the file with only the pending COMMITs into `<log>.compact`,
//! fsyncs it, renames it over the log and fsyncs the directory. A process that still had the
//! old file open would go on appending COMMITs to an unlinked inode that no one reads any
//! more: acknowledged decisions silently lost. So compaction runs only when an *exclusive*
//! `flock` on the log succeeds, i.e. no other `DecisionLog` has it open, and every opener
//! checks, after its shared lock is granted, that the path still names the inode it locked
//! (re-opening if a compaction replaced it in between). While another process keeps the log
//! open, compaction is skipped and retried as the file grows.
//!
//! Locks are advisory `flock`s (std's `File::lock*`): they work between processes on a local
//! file system, not over NFS.
//!
//! # Threads
//!
//! Opening, reading, writing and syncing block, so none of it runs on an async worker:
//! [`DecisionLog::open_async`], [`DecisionSource::is_committed`] and
//! [`DecisionStore::snapshot`] run on tokio's blocking pool, and records are written by the
//! log's own writer thread. The last clone of a [`DecisionLog`] to go closes the writer's
//! queue; the writer writes the DONEs still queued and stops. Dropped inside a tokio
//! runtime, the join waits on the blocking pool (which the runtime waits for when it shuts
//! down), and an open of the same log in this process waits for it first.
//!
//! # Layout
//!
//! `format` holds the bytes (pure functions), `lock` the `flock`s, `shared` what every handle
//! and the writer share (loading and catching up with the file), `writer` the group-commit
//! thread, `compaction` the rewrite, `files` the durable file-system steps.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use thiserror::Error;

use crate::decision_store::{
    DecisionError, DecisionSource, DecisionStats, DecisionStore, Snapshot,
};
use crate::gid::Gid;

mod compaction;
mod files;
mod format;
mod lock;
mod shared;
#[cfg(test)]
mod test_support;
mod writer;

use self::format::FORMAT_VERSION;
use self::shared::Shared;
use self::writer::Writer;

/// Tuning knobs; [`Default`] is right outside tests.
#[derive(Debug, Clone)]
pub struct DecisionLogOptions {
    /// Compact once the file is at least this many bytes and compaction would shrink it to a
    /// quarter or less (that is, when few COMMITs are still pending). Default 1 MiB.
    pub compact_threshold: u64,
    /// How long a DONE may wait for a COMMIT batch to share a write with before it is written
    /// (and synced) on its own. Default 100 ms.
    pub done_delay: Duration,
}

impl Default for DecisionLogOptions {
    fn default() -> Self {
        DecisionLogOptions {
            compact_threshold: 1 << 20,
            done_delay: Duration::from_millis(100),
        }
    }
}

/// What can go wrong. Every message names the file and says what to do.
#[derive(Debug, Clone, Error)]
pub enum DecisionLogError {
    #[error(
        "cannot {action} decision log {path}: {source}; check that the state directory is \
         writable and the disk is not full"
    )]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(
        "{path} is not a wasmtx decision log (it starts with {found:?}); refusing to touch it: \
         move it aside or point wasmtx at another state directory"
    )]
    NotADecisionLog { path: PathBuf, found: String },
    #[error(
        "decision log {path} has format version {found}, but this wasmtx reads version \
         {FORMAT_VERSION}: run the wasmtx release that wrote it"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error(
        "decision log {path} is damaged at byte {offset} ({detail}), and intact records follow, \
         so this is not a write torn by a crash: the disk or another program changed the file. \
         wasmtx will not guess whether the damaged bytes held a COMMIT. Stop every wasmtx using \
         this state directory, keep a copy of the file, settle the prepared transactions of \
         this node by hand (pg_prepared_xacts, XA RECOVER), then move the file aside"
    )]
    Damaged {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error(
        "COMMIT of {gid} refused: its deadline passed {late:?} ago; nothing was recorded, so the \
         transaction must abort"
    )]
    DeadlinePassed { gid: Gid, late: Duration },
    #[error(
        "writing to decision log {path} failed: {source}; the partial write was removed and \
         nothing was recorded, so the transaction must abort; check the disk"
    )]
    WriteFailed {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(
        "decision log {path}: {action} failed: {source}; the COMMITs of this batch may or may not \
         be durable, so leave their transactions prepared for `wasmtx recover`. The log takes no \
         more records: check the disk and restart wasmtx"
    )]
    InDoubt {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(
        "decision log {path} takes no more records since an earlier failure ({cause}); check the \
         disk and restart wasmtx (`wasmtx recover` finishes what is in doubt)"
    )]
    Unusable { path: PathBuf, cause: String },
    #[error(
        "decision log {path}: its writer thread stopped; whether this record was written is \
         unknown: restart wasmtx"
    )]
    WriterStopped { path: PathBuf },
}

impl DecisionLogError {
    fn io(path: &Path, action: &'static str, e: io::Error) -> Self {
        DecisionLogError::Io {
            path: path.to_path_buf(),
            action,
            source: Arc::new(e),
        }
    }

    /// This error as the answer to a COMMIT: one that may have been written is in doubt;
    /// any other was refused before the write.
    fn into_commit_error(self) -> DecisionError {
        match DecisionError::from(self) {
            DecisionError::Unavailable(cause) => DecisionError::NotRecorded(cause),
            decided => decided,
        }
    }
}

/// What the caller can act on: a record that may have been written is in doubt, one refused
/// or undone was not recorded, and anything else leaves the log unreadable or unopened.
impl From<DecisionLogError> for DecisionError {
    fn from(error: DecisionLogError) -> Self {
        match error {
            DecisionLogError::InDoubt { .. } | DecisionLogError::WriterStopped { .. } => {
                DecisionError::MaybeRecorded(Arc::new(error))
            }
            DecisionLogError::DeadlinePassed { .. } | DecisionLogError::WriteFailed { .. } => {
                DecisionError::NotRecorded(Arc::new(error))
            }
            DecisionLogError::Io { .. }
            | DecisionLogError::NotADecisionLog { .. }
            | DecisionLogError::UnsupportedVersion { .. }
            | DecisionLogError::Damaged { .. }
            | DecisionLogError::Unusable { .. } => DecisionError::Unavailable(Arc::new(error)),
        }
    }
}

/// The decision log of one state directory: a [`DecisionStore`]. Cheap to clone (an `Arc`
/// inside); `Send + Sync`.
///
/// The last clone to go flushes queued DONEs and stops the writer thread (see the module
/// docs on threads).
#[derive(Clone)]
pub struct DecisionLog {
    writer: Arc<Writer>,
}

impl fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionLog")
            .field("path", &self.path())
            .finish()
    }
}

impl DecisionLog {
    /// Opens the log at `path`, creating it (and its parent directories) if missing, and
    /// reads its records, on tokio's blocking pool. A torn tail is ignored and truncated
    /// away; damage followed by intact records is refused ([`DecisionLogError::Damaged`]).
    pub async fn open_async(
        path: &Path,
        options: DecisionLogOptions,
    ) -> Result<Self, DecisionLogError> {
        let path = path.to_path_buf();
        let opening = path.clone();
        run_blocking(&path, "open", move || {
            DecisionLog::open_blocking(&opening, options)
        })
        .await
    }

    /// [`DecisionLog::open_async`], blocking the calling thread: it creates directories,
    /// takes `flock`s (waiting for other processes' appends) and reads the whole file.
    pub(crate) fn open_blocking(
        path: &Path,
        options: DecisionLogOptions,
    ) -> Result<Self, DecisionLogError> {
        writer::wait_for_stopping_writers(path);
        let shared = Arc::new(Shared::open(path.to_path_buf(), options)?);
        Ok(DecisionLog {
            writer: Arc::new(Writer::start(shared)?),
        })
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.writer.shared.path
    }

    /// Reads the file on the blocking pool and hands `view` the pending COMMITs and the
    /// time (see [`Snapshot::as_of`]).
    async fn read<T: Send + 'static>(
        &self,
        view: impl FnOnce(&BTreeSet<Gid>, SystemTime) -> T + Send + 'static,
    ) -> Result<T, DecisionError> {
        let shared = Arc::clone(&self.writer.shared);
        Ok(run_blocking(self.path(), "read", move || shared.read(view)).await?)
    }
}

/// Runs `work` on tokio's blocking pool; a task that panicked or was cancelled is an
/// I/O error on the log at `path`.
async fn run_blocking<T: Send + 'static>(
    path: &Path,
    action: &'static str,
    work: impl FnOnce() -> Result<T, DecisionLogError> + Send + 'static,
) -> Result<T, DecisionLogError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(DecisionLogError::io(path, action, io::Error::other(e))))
}

#[async_trait]
impl DecisionSource for DecisionLog {
    fn describe(&self) -> String {
        format!("decision log {}", self.path().display())
    }

    /// Whether a COMMIT is recorded for `gid` and not yet cancelled by a DONE, as the file
    /// says now (records of other processes included). A DONE claims phase 2 finished on
    /// every participant, so no prepared branch of that transaction is left to find; write
    /// one only when that holds (a participant that could not be scanned does not count as
    /// finished).
    async fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionError> {
        let gid = gid.clone();
        self.read(move |pending, _| pending.contains(&gid)).await
    }
}

#[async_trait]
impl DecisionStore for DecisionLog {
    /// Appends COMMIT for `gid` and returns once it is durable. Concurrent callers share one
    /// write and one `fdatasync` (group commit).
    async fn record_commit(&self, gid: &Gid, deadline: SystemTime) -> Result<(), DecisionError> {
        self.writer
            .commit(gid, deadline)
            .await
            .map_err(DecisionLogError::into_commit_error)
    }

    /// Queues DONE for `gid` and returns at once, without waiting for the write: the DONE
    /// shares the next COMMIT batch's write, or is written within
    /// [`DecisionLogOptions::done_delay`]. [`DecisionStore::flush`] waits for it.
    async fn record_done(&self, gid: &Gid) -> Result<(), DecisionError> {
        Ok(self.writer.queue_done(gid)?)
    }

    /// The gids with a COMMIT and no DONE, as the file says now (records appended by other
    /// processes included), and when that was read.
    async fn snapshot(&self) -> Result<Snapshot, DecisionError> {
        self.read(|pending, as_of| Snapshot {
            pending: pending.clone(),
            as_of,
        })
        .await
    }

    async fn flush(&self) -> Result<(), DecisionError> {
        Ok(self.writer.flush().await?)
    }

    fn stats(&self) -> DecisionStats {
        self.writer.shared.stats.get()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::decision_log::test_support::*;
    use crate::decision_store::DecisionStore;

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<DecisionLog>();
    }

    #[tokio::test]
    async fn round_trip() {
        let (_dir, path) = temp_log();
        let log = DecisionLog::open(&path).unwrap();
        assert!(log.pending_commits().unwrap().is_empty());
        let (a, b, c) = (gid(), gid(), gid());
        log.record_commit(&a, later()).await.unwrap();
        log.record_commit(&b, later()).await.unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&a, &b]));
        assert!(log.is_committed(&a).await.unwrap());
        assert!(!log.is_committed(&c).await.unwrap());
        assert_eq!(log.stats().commits_written, 2);
        assert!(path.with_file_name("decisions.log.lock").exists());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..12], &format::header_bytes());
    }

    #[tokio::test]
    async fn done_cancels_commit() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(&log_path(&dir)).unwrap();
        let (a, b) = (gid(), gid());
        log.record_commit(&a, later()).await.unwrap();
        log.record_commit(&b, later()).await.unwrap();
        log.record_done(&a).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&b]));
        assert!(!log.is_committed(&a).await.unwrap());
        // A DONE without a COMMIT is harmless.
        log.record_done(&gid()).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&b]));
    }

    #[tokio::test]
    async fn two_instances_on_one_file_see_each_others_commits() {
        let (_dir, path) = temp_log();
        let first = DecisionLog::open(&path).unwrap();
        let second = DecisionLog::open(&path).unwrap();
        let (a, b) = (gid(), gid());
        first.record_commit(&a, later()).await.unwrap();
        second.record_commit(&b, later()).await.unwrap();
        assert_eq!(first.pending_commits().unwrap(), set(&[&a, &b]));
        assert_eq!(second.pending_commits().unwrap(), set(&[&a, &b]));
        second.record_done(&a).await.unwrap();
        second.flush().await.unwrap();
        assert!(!first.is_committed(&a).await.unwrap());
        let snapshot = first.snapshot().await.unwrap();
        assert_eq!(snapshot.pending, set(&[&b]));
        assert!(snapshot.as_of <= SystemTime::now());
    }

    #[tokio::test]
    async fn opens_on_the_blocking_pool_and_describes_itself() {
        let (dir, path) = temp_log();
        let log = DecisionLog::open_async(&path, DecisionLogOptions::default())
            .await
            .unwrap();
        assert_eq!(log.describe(), format!("decision log {}", path.display()));
        let a = gid();
        log.record_commit(&a, later()).await.unwrap();
        assert!(log.is_committed(&a).await.unwrap());
        let foreign = dir.path().join("foreign.log");
        fs::write(&foreign, b"hello, this is not a log").unwrap();
        let error = DecisionLog::open_async(&foreign, DecisionLogOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, DecisionLogError::NotADecisionLog { .. }),
            "{error}"
        );
    }

    #[test]
    fn errors_map_to_what_the_caller_acts_on() {
        let path = PathBuf::from("/state/decisions.log");
        let io = || Arc::new(io::Error::other("disk on fire"));
        let in_doubt = DecisionLogError::InDoubt {
            path: path.clone(),
            action: "fdatasync",
            source: io(),
        };
        let stopped = DecisionLogError::WriterStopped { path: path.clone() };
        let late = DecisionLogError::DeadlinePassed {
            gid: gid(),
            late: Duration::from_millis(1),
        };
        let write_failed = DecisionLogError::WriteFailed {
            path: path.clone(),
            source: io(),
        };
        let unusable = DecisionLogError::Unusable {
            path: path.clone(),
            cause: "fdatasync failed".into(),
        };
        let unreadable = DecisionLogError::io(&path, "read", io::Error::other("gone"));
        let class = |answer: DecisionError| match answer {
            DecisionError::MaybeRecorded(_) => "maybe recorded",
            DecisionError::NotRecorded(_) => "not recorded",
            DecisionError::Unavailable(_) => "unavailable",
        };
        // The error, what it means when reading or opening, and as the answer to a COMMIT.
        let expected = [
            (in_doubt, "maybe recorded", "maybe recorded"),
            (stopped, "maybe recorded", "maybe recorded"),
            (late, "not recorded", "not recorded"),
            (write_failed, "not recorded", "not recorded"),
            (unusable, "unavailable", "not recorded"),
            (unreadable, "unavailable", "not recorded"),
        ];
        for (error, read, commit) in expected {
            let message = error.to_string();
            assert_eq!(class(DecisionError::from(error.clone())), read, "{message}");
            let answer = error.into_commit_error();
            assert_eq!(answer.to_string(), message, "the message is the log's own");
            assert_eq!(class(answer), commit, "{message}");
        }
    }
}
