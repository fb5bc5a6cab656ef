//! The decision log: the durable record of which global transactions decided to COMMIT.
//!
//! # The rule
//!
//! A COMMIT decision is appended here and made durable (`fdatasync`) before any participant
//! commits in phase 2, and only while the transaction's deadline has not passed. No COMMIT
//! record means abort (presumed abort): recovery rolls back prepared branches that have no
//! record once their deadline (plus a margin) has passed, so a COMMIT must never be recorded
//! late. [`DecisionLog::record_commit`] checks the deadline at the last moment, under the
//! append lock, right before the write; see [`Snapshot::as_of`] for how recovery uses that.
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

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use tokio::sync::oneshot;

use crate::gid::Gid;

const MAGIC: &[u8; 8] = b"WTXDLOG\0";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: u64 = 12;
const FRAME_HEADER_LEN: usize = 8;
/// The smallest payload: one record with a one-byte gid.
const MIN_FRAME_PAYLOAD: usize = 3;
/// Larger lengths are damage, not data: batches and compaction frames stay far below.
const MAX_FRAME_PAYLOAD: usize = 1 << 20;
/// Most COMMITs (and, separately, DONEs) one batch takes from the queue.
const MAX_BATCH: usize = 4096;
/// Compaction splits the pending COMMITs into frames of about this many payload bytes.
const COMPACTION_FRAME_PAYLOAD: usize = 64 << 10;
const KIND_COMMIT: u8 = 1;
const KIND_DONE: u8 = 2;

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
    /// Whether a COMMIT answered by this error may be in the log all the same. If so, the
    /// transaction is in doubt: leave its prepared branches to recovery, which reads the log.
    /// If not, nothing was recorded and the coordinator rolls back.
    pub fn may_be_recorded(&self) -> bool {
        matches!(
            self,
            DecisionLogError::InDoubt { .. } | DecisionLogError::WriterStopped { .. }
        )
    }
}

/// The pending COMMITs, and the time at which they were read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Gids with a COMMIT and no DONE: the transactions recovery must commit.
    pub pending: BTreeSet<Gid>,
    /// The wall clock, read while the append lock was still held. A COMMIT is only appended
    /// after its writer, holding the append lock exclusively, saw `now < deadline`. So a
    /// transaction not in `pending` whose deadline is `<= as_of` can never get a COMMIT:
    /// recovery may roll it back (keep a margin for clock steps).
    pub as_of: SystemTime,
}

/// Counters since open, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionLogStats {
    pub commits_written: u64,
    pub dones_written: u64,
    /// Frames (batches) appended.
    pub frames_written: u64,
    /// `fdatasync`/`fsync` calls on the log by this instance.
    pub fsyncs: u64,
    pub compactions: u64,
}

/// The decision log of one state directory. Cheap to clone (an `Arc` inside); `Send + Sync`.
///
/// The last clone to go flushes queued DONEs and joins the writer thread, which can block
/// for up to one `fdatasync`.
#[derive(Clone)]
pub struct DecisionLog {
    handle: Arc<Handle>,
}

impl fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionLog")
            .field("path", &self.handle.shared.path)
            .finish()
    }
}

impl DecisionLog {
    /// Opens the log at `path` with default options; see [`DecisionLog::open_with`].
    pub fn open(path: &Path) -> Result<Self, DecisionLogError> {
        Self::open_with(path, DecisionLogOptions::default())
    }

    /// Opens the log at `path`, creating it (and its parent directories) if missing, and
    /// reads its records. A torn tail is ignored and truncated away; damage followed by intact
    /// records is refused ([`DecisionLogError::Damaged`]). Blocking: call it at startup or
    /// from `spawn_blocking`.
    pub fn open_with(path: &Path, options: DecisionLogOptions) -> Result<Self, DecisionLogError> {
        let path = path.to_path_buf();
        let lock_path = sibling(&path, ".lock")?;
        create_parent_dirs(&path).map_err(|e| io_error(&path, "create the directory of", e))?;
        let file = open_locked(&path)?;
        let append_lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, "open the append lock of", e))?;
        let shared = Arc::new(Shared {
            path,
            lock_path,
            options,
            append_lock,
            state: Mutex::new(State {
                file,
                end: 0,
                synced_end: 0,
                pending: BTreeSet::new(),
                next_compaction_at: 0,
            }),
            failure: OnceLock::new(),
            dones: Mutex::new(Vec::new()),
            stats: Counters::default(),
        });
        shared.load(&mut shared.lock_state())?;

        let (requests, receiver) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || run_writer(&writer_shared, &receiver))
            .map_err(|e| io_error(&shared.path, "start the writer thread of", e))?;
        Ok(DecisionLog {
            handle: Arc::new(Handle {
                shared,
                requests: Some(requests),
                writer: Some(writer),
            }),
        })
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.handle.shared.path
    }

    /// Appends COMMIT for `gid` and returns once it is durable. Refused (nothing written) if
    /// `deadline` has passed, checked again right before the write. Concurrent callers share
    /// one write and one `fdatasync` (group commit).
    ///
    /// On an error, [`DecisionLogError::may_be_recorded`] tells abort from in doubt. Dropping
    /// this future once polled does not withdraw the COMMIT: treat that as in doubt too.
    pub async fn record_commit(
        &self,
        gid: &Gid,
        deadline: SystemTime,
    ) -> Result<(), DecisionLogError> {
        if let Ok(late) = SystemTime::now().duration_since(deadline) {
            return Err(DecisionLogError::DeadlinePassed {
                gid: gid.clone(),
                late,
            });
        }
        self.handle.shared.check_usable()?;
        let (reply, answer) = oneshot::channel();
        self.send(Request::Commit(CommitRequest {
            gid: gid.clone(),
            deadline,
            reply,
        }))?;
        answer.await.map_err(|_| self.writer_stopped())?
    }

    /// Queues DONE for `gid` and returns at once, without waiting for the write: the DONE
    /// shares the next COMMIT batch's write, or is written within
    /// [`DecisionLogOptions::done_delay`]. [`DecisionLog::flush`] waits for it.
    pub async fn record_done(&self, gid: &Gid) -> Result<(), DecisionLogError> {
        let shared = &self.handle.shared;
        shared.check_usable()?;
        let waiting = {
            let mut dones = shared.lock_dones();
            dones.push(gid.clone());
            dones.len()
        };
        if waiting == 1 || waiting == MAX_BATCH {
            self.send(Request::DonesWaiting)?;
        }
        Ok(())
    }

    /// Writes and syncs every DONE queued before this call.
    pub async fn flush(&self) -> Result<(), DecisionLogError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Flush(reply))?;
        answer.await.map_err(|_| self.writer_stopped())?
    }

    /// The gids with a COMMIT and no DONE, as the file says now (records appended by other
    /// processes included), and when that was read. Blocking: it can wait for a batch being
    /// synced, here or in another process.
    pub fn snapshot(&self) -> Result<Snapshot, DecisionLogError> {
        self.read(|pending, as_of| Snapshot {
            pending: pending.clone(),
            as_of,
        })
    }

    /// The gids with a COMMIT and no DONE: what recovery must commit. See [`Self::snapshot`].
    pub fn pending_commits(&self) -> Result<BTreeSet<Gid>, DecisionLogError> {
        self.read(|pending, _| pending.clone())
    }

    /// Whether a COMMIT is recorded for `gid` and not yet cancelled by a DONE, as the file
    /// says now (records of other processes included). A DONE claims phase 2 finished on
    /// every participant, so no prepared branch of that transaction is left to find; write
    /// one only when that holds (a participant that could not be scanned does not count as
    /// finished). Read the clock for the deadline check *before* calling this, or use
    /// [`Self::snapshot`] and its `as_of`.
    pub fn is_committed(&self, gid: &Gid) -> Result<bool, DecisionLogError> {
        self.read(|pending, _| pending.contains(gid))
    }

    /// Catches up with the file under the shared append lock and hands `view` the pending
    /// COMMITs and the time, read before the lock is released (see [`Snapshot::as_of`]).
    fn read<T>(
        &self,
        view: impl FnOnce(&BTreeSet<Gid>, SystemTime) -> T,
    ) -> Result<T, DecisionLogError> {
        let shared = &self.handle.shared;
        let mut state = shared.lock_state();
        let append = shared.lock_appends(&state, false)?;
        shared.catch_up(&mut state, false)?;
        // A writer syncs before it lets go of the append lock, but one killed between its
        // write and its sync leaves an intact frame that is not durable. Never act on that.
        if state.synced_end < state.end {
            state.file.sync_data().map_err(|e| shared.io("sync", e))?;
            shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            state.synced_end = state.end;
        }
        let seen = view(&state.pending, SystemTime::now());
        drop(append);
        Ok(seen)
    }

    /// Counters since open.
    pub fn stats(&self) -> DecisionLogStats {
        self.handle.shared.stats.get()
    }

    fn send(&self, request: Request) -> Result<(), DecisionLogError> {
        let sender = self
            .handle
            .requests
            .as_ref()
            .ok_or_else(|| self.writer_stopped())?;
        sender.send(request).map_err(|_| self.writer_stopped())
    }

    fn writer_stopped(&self) -> DecisionLogError {
        DecisionLogError::WriterStopped {
            path: self.handle.shared.path.clone(),
        }
    }
}

struct Handle {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Closing the queue makes the writer flush queued DONEs and stop; joining it releases
        // the file's locks before the last handle is gone.
        self.requests = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

enum Request {
    Commit(CommitRequest),
    /// DONEs are waiting in [`Shared::dones`]: the first of them, or a full batch.
    DonesWaiting,
    Flush(oneshot::Sender<Result<(), DecisionLogError>>),
}

struct CommitRequest {
    gid: Gid,
    deadline: SystemTime,
    reply: oneshot::Sender<Result<(), DecisionLogError>>,
}

struct Shared {
    path: PathBuf,
    lock_path: PathBuf,
    options: DecisionLogOptions,
    /// `<log>.lock`: exclusive to append, shared to read. Only ever locked while `state` is
    /// held, since `flock`s taken through one open file are one lock, whatever the thread.
    append_lock: File,
    state: Mutex<State>,
    /// Set once a failure leaves the log's content unknown; no record is taken after it.
    failure: OnceLock<String>,
    /// DONEs waiting for a write. Queued here rather than sent, so that a DONE wakes the
    /// writer only when it is the first one waiting (to start the delay) or fills a batch.
    dones: Mutex<Vec<Gid>>,
    stats: Counters,
}

struct State {
    /// The log, open for read and append, with a shared `flock` held.
    file: File,
    /// The end of the last intact frame read or written.
    end: u64,
    /// How far the file is known to be durable.
    synced_end: u64,
    pending: BTreeSet<Gid>,
    /// Do not try to compact before the file reaches this size.
    next_compaction_at: u64,
}

#[derive(Default)]
struct Counters {
    commits_written: AtomicU64,
    dones_written: AtomicU64,
    frames_written: AtomicU64,
    fsyncs: AtomicU64,
    compactions: AtomicU64,
}

impl Counters {
    fn get(&self) -> DecisionLogStats {
        DecisionLogStats {
            commits_written: self.commits_written.load(Ordering::Relaxed),
            dones_written: self.dones_written.load(Ordering::Relaxed),
            frames_written: self.frames_written.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
        }
    }
}

/// Holds the append lock; unlocks on drop.
struct AppendLock<'a>(&'a File);

impl Drop for AppendLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Shared {
    fn lock_dones(&self) -> MutexGuard<'_, Vec<Gid>> {
        self.dones.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the append lock. `_held` witnesses that the caller holds `state`.
    fn lock_appends(
        &self,
        _held: &State,
        exclusive: bool,
    ) -> Result<AppendLock<'_>, DecisionLogError> {
        let locked = if exclusive {
            self.append_lock.lock()
        } else {
            self.append_lock.lock_shared()
        };
        locked.map_err(|e| io_error(&self.lock_path, "lock the append lock of", e))?;
        Ok(AppendLock(&self.append_lock))
    }

    fn io(&self, action: &'static str, e: io::Error) -> DecisionLogError {
        io_error(&self.path, action, e)
    }

    fn check_usable(&self) -> Result<(), DecisionLogError> {
        match self.failure.get() {
            Some(cause) => Err(DecisionLogError::Unusable {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&self, cause: String) {
        tracing::error!(path = %self.path.display(), %cause, "decision log takes no more records");
        let _ = self.failure.set(cause);
    }

    /// (Re)reads `state.file` from the start: writes the header of a new file, checks the
    /// header of an old one, reads every frame, truncates a torn tail.
    fn load(&self, state: &mut State) -> Result<(), DecisionLogError> {
        state.end = 0;
        state.synced_end = 0;
        state.pending.clear();
        let _append = self.lock_appends(state, true)?;
        self.init_header(state)?;
        self.catch_up(state, true)?;
        state.file.sync_data().map_err(|e| self.io("sync", e))?;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        state.synced_end = state.end;
        Ok(())
    }

    /// Needs the append lock held exclusively.
    fn init_header(&self, state: &mut State) -> Result<(), DecisionLogError> {
        let file = &state.file;
        let len = file.metadata().map_err(|e| self.io("inspect", e))?.len();
        let mut found = vec![0; len.min(HEADER_LEN) as usize];
        file.read_exact_at(&mut found, 0)
            .map_err(|e| self.io("read", e))?;
        let header = header_bytes();
        if len < HEADER_LEN {
            if !header.starts_with(&found) {
                return Err(self.not_a_log(&found));
            }
            // A new file, or one whose creation a crash interrupted: write the header.
            file.set_len(0).map_err(|e| self.io("initialize", e))?;
            (&*file)
                .write_all(&header)
                .map_err(|e| self.io("initialize", e))?;
            file.sync_all().map_err(|e| self.io("sync", e))?;
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            // The file's directory entry must be durable before any COMMIT is.
            sync_dir(parent_dir(&self.path)).map_err(|e| self.io("sync the directory of", e))?;
        } else if found[..8] != MAGIC[..] {
            return Err(self.not_a_log(&found));
        } else {
            let version = u32::from_le_bytes(found[8..12].try_into().expect("4 bytes"));
            if version != FORMAT_VERSION {
                return Err(DecisionLogError::UnsupportedVersion {
                    path: self.path.clone(),
                    found: version,
                });
            }
        }
        state.end = HEADER_LEN;
        Ok(())
    }

    fn not_a_log(&self, found: &[u8]) -> DecisionLogError {
        DecisionLogError::NotADecisionLog {
            path: self.path.clone(),
            found: String::from_utf8_lossy(&found[..found.len().min(8)]).into_owned(),
        }
    }

    /// Reads the frames appended since `state.end`. A torn tail is left unread, and with
    /// `repair` (append lock held exclusively) truncated away. Needs the append lock.
    fn catch_up(&self, state: &mut State, repair: bool) -> Result<(), DecisionLogError> {
        let len = state
            .file
            .metadata()
            .map_err(|e| self.io("inspect", e))?
            .len();
        if len < state.end {
            return Err(self.damaged(
                len,
                "the file is shorter than the records already read from it".into(),
            ));
        }
        if len == state.end {
            return Ok(());
        }
        let mut tail = vec![0; (len - state.end) as usize];
        state
            .file
            .read_exact_at(&mut tail, state.end)
            .map_err(|e| self.io("read", e))?;
        let scan =
            scan_frames(&tail).map_err(|d| self.damaged(state.end + d.at as u64, d.detail))?;
        for (kind, gid) in scan.records {
            apply(&mut state.pending, kind, gid);
        }
        state.end += scan.intact_len as u64;
        if scan.torn && repair {
            tracing::warn!(
                path = %self.path.display(),
                offset = state.end,
                bytes = len - state.end,
                "ignoring and truncating the torn tail of the decision log"
            );
            state
                .file
                .set_len(state.end)
                .map_err(|e| self.io("truncate the torn tail of", e))?;
            state.file.sync_data().map_err(|e| self.io("sync", e))?;
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn damaged(&self, offset: u64, detail: String) -> DecisionLogError {
        DecisionLogError::Damaged {
            path: self.path.clone(),
            offset,
            detail,
        }
    }

    /// Appends one frame with the COMMITs still before their deadline and `dones`, syncs it,
    /// and answers the COMMITs. The `Err` is for the batch as a whole (flushes).
    fn write_batch(
        &self,
        commits: Vec<CommitRequest>,
        dones: &[Gid],
    ) -> Result<(), DecisionLogError> {
        let refuse_all = |commits: Vec<CommitRequest>, error: &DecisionLogError| {
            for commit in commits {
                let _ = commit.reply.send(Err(error.clone()));
            }
        };
        if let Err(error) = self.check_usable() {
            refuse_all(commits, &error);
            return Err(error);
        }
        let mut state = self.lock_state();
        let append = match self.lock_appends(&state, true) {
            Ok(append) => append,
            Err(error) => {
                refuse_all(commits, &error);
                return Err(error);
            }
        };
        if let Err(error) = self.catch_up(&mut state, true) {
            drop(append);
            refuse_all(commits, &error);
            return Err(error);
        }

        // The deadline check that counts: under the append lock, right before the write.
        let now = SystemTime::now();
        let (late, commits): (Vec<_>, Vec<_>) = commits
            .into_iter()
            .partition(|commit| now >= commit.deadline);
        for commit in late {
            let late = now.duration_since(commit.deadline).unwrap_or_default();
            let _ = commit.reply.send(Err(DecisionLogError::DeadlinePassed {
                gid: commit.gid,
                late,
            }));
        }
        if commits.is_empty() && dones.is_empty() {
            return Ok(());
        }

        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            commits
                .iter()
                .map(|c| (KIND_COMMIT, &c.gid))
                .chain(dones.iter().map(|g| (KIND_DONE, g))),
        );
        let start = state.end;
        if let Err(e) = (&state.file).write_all(&frame) {
            let e = Arc::new(e);
            // Remove what part of the frame made it, before anyone can append behind it.
            let error = match state.file.set_len(start) {
                Ok(()) => DecisionLogError::WriteFailed {
                    path: self.path.clone(),
                    source: e,
                },
                Err(truncate) => {
                    self.fail(format!("a write failed ({e}) and its partial frame could not be removed ({truncate})"));
                    DecisionLogError::InDoubt {
                        path: self.path.clone(),
                        action: "writing",
                        source: e,
                    }
                }
            };
            drop(append);
            refuse_all(commits, &error);
            return Err(error);
        }
        // Sync before letting go of the append lock: then only the last frame in the file can
        // be not yet durable, and a crash can only tear the tail (see the module docs).
        if let Err(e) = state.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: the content on
            // disk is unknown, and a later fsync could report success regardless.
            self.fail(format!("fdatasync failed: {e}"));
            let error = DecisionLogError::InDoubt {
                path: self.path.clone(),
                action: "fdatasync",
                source: Arc::new(e),
            };
            drop(append);
            refuse_all(commits, &error);
            return Err(error);
        }
        drop(append);
        state.end = start + frame.len() as u64;
        state.synced_end = state.end;
        for commit in &commits {
            state.pending.insert(commit.gid.clone());
        }
        for gid in dones {
            state.pending.remove(gid);
        }
        drop(state);

        let stats = &self.stats;
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        stats.frames_written.fetch_add(1, Ordering::Relaxed);
        stats
            .commits_written
            .fetch_add(commits.len() as u64, Ordering::Relaxed);
        stats
            .dones_written
            .fetch_add(dones.len() as u64, Ordering::Relaxed);
        for commit in commits {
            let _ = commit.reply.send(Ok(()));
        }
        Ok(())
    }

    /// Compacts if the file is big, few COMMITs are pending, and no one else has it open.
    fn maybe_compact(&self) {
        if self.failure.get().is_some() {
            return;
        }
        let mut state = self.lock_state();
        let threshold = self.options.compact_threshold;
        if state.end < threshold.max(HEADER_LEN + 1) || state.end < state.next_compaction_at {
            return;
        }
        let retry_at = state.end + (threshold / 4).max(4096);
        if compacted_len(&state.pending).saturating_mul(4) > state.end {
            state.next_compaction_at = retry_at;
            return;
        }
        match self.try_compact(&mut state) {
            Ok(true) => {
                self.stats.compactions.fetch_add(1, Ordering::Relaxed);
                state.next_compaction_at = 0;
            }
            Ok(false) => state.next_compaction_at = retry_at,
            Err(error) => {
                tracing::warn!(%error, "decision log compaction failed; will retry");
                state.next_compaction_at = retry_at;
            }
        }
    }

    /// Returns `Ok(false)` if another `DecisionLog` has the file open.
    fn try_compact(&self, state: &mut State) -> Result<bool, DecisionLogError> {
        // std leaves converting a held lock unspecified (and Linux drops the shared lock when
        // an upgrade fails), so unlock explicitly and take the exclusive lock afresh. In the
        // gap another process may compact: `relock_shared` notices and re-opens.
        state.file.unlock().map_err(|e| self.io("unlock", e))?;
        match state.file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                self.relock_shared(state)?;
                return Ok(false);
            }
            Err(TryLockError::Error(e)) => {
                self.relock_shared(state)?;
                return Err(self.io("lock", e));
            }
        }
        let current = same_file(&state.file, &self.path).map_err(|e| self.io("inspect", e));
        if !matches!(current, Ok(true)) {
            // Replaced while unlocked: ours is a dead inode, so do not rename it over the live one.
            self.relock_shared(state)?;
            return current.map(|_| false);
        }
        match self.rewrite(state) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.relock_shared(state)?;
                Ok(false)
            }
            Err(error) => {
                let _ = fs::remove_file(sibling(&self.path, ".compact")?);
                self.relock_shared(state)?;
                Err(error)
            }
        }
    }

    /// Holding the exclusive lock: writes the pending COMMITs to a new file and renames it
    /// over the log. `Ok(true)`: `state.file` is the new file, with a shared lock held.
    /// `Ok(false)`: records read just now leave too much pending; nothing was changed.
    fn rewrite(&self, state: &mut State) -> Result<bool, DecisionLogError> {
        {
            let _append = self.lock_appends(state, true)?;
            self.catch_up(state, true)?;
        }
        if compacted_len(&state.pending).saturating_mul(4) > state.end {
            return Ok(false);
        }
        let temp_path = sibling(&self.path, ".compact")?;
        let temp_error = |action, e| io_error(&temp_path, action, e);
        let temp = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&temp_path)
            .map_err(|e| temp_error("create", e))?;
        temp.set_len(0).map_err(|e| temp_error("truncate", e))?;
        let mut content = header_bytes().to_vec();
        let pending: Vec<&Gid> = state.pending.iter().collect();
        let mut start = 0;
        while start < pending.len() {
            let mut end = start;
            let mut payload = 0;
            while end < pending.len() && payload < COMPACTION_FRAME_PAYLOAD {
                payload += 2 + pending[end].as_str().len();
                end += 1;
            }
            encode_frame(
                &mut content,
                pending[start..end].iter().map(|gid| (KIND_COMMIT, *gid)),
            );
            start = end;
        }
        (&temp)
            .write_all(&content)
            .map_err(|e| temp_error("write", e))?;
        temp.sync_all().map_err(|e| temp_error("sync", e))?;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        // Lock the new file before it has a name: no one can slip in and compact it.
        temp.lock_shared().map_err(|e| temp_error("lock", e))?;
        fs::rename(&temp_path, &self.path).map_err(|e| temp_error("rename", e))?;
        // From here the path names the new file, which is complete and durable. The rename
        // itself must be durable before anything is appended to the new file, or a crash could
        // bring back the old file without the new appends.
        let synced = sync_dir(parent_dir(&self.path));
        state.file = temp; // drops the old file and its exclusive lock
        state.end = content.len() as u64;
        state.synced_end = state.end;
        if let Err(e) = synced {
            self.fail(format!(
                "the directory could not be synced after compaction ({e})"
            ));
            return Err(self.io("sync the directory of", e));
        }
        tracing::info!(path = %self.path.display(), pending = state.pending.len(), "compacted the decision log");
        Ok(true)
    }

    /// Takes the shared lock on `state.file` again after it was unlocked or held exclusively,
    /// and re-opens the log if a compaction replaced the file in the meantime.
    fn relock_shared(&self, state: &mut State) -> Result<(), DecisionLogError> {
        let relocked = (|| {
            state.file.unlock().map_err(|e| self.io("unlock", e))?;
            state.file.lock_shared().map_err(|e| self.io("lock", e))?;
            if !same_file(&state.file, &self.path).map_err(|e| self.io("inspect", e))? {
                state.file = open_locked(&self.path)?;
                self.load(state)?;
            }
            Ok(())
        })();
        if let Err(error) = &relocked {
            // Without a verified lock this process might append to a replaced file.
            self.fail(format!(
                "could not lock the log again after trying to compact it ({error})"
            ));
        }
        relocked
    }
}

/// The group-commit writer: takes every request queued while the previous batch was being
/// written and synced, and writes them as one frame with one `fdatasync`.
fn run_writer(shared: &Shared, requests: &mpsc::Receiver<Request>) {
    // When the DONEs waiting now must be written if no COMMIT batch takes them first.
    let mut dones_due: Option<Instant> = None;
    loop {
        let mut commits = Vec::new();
        let mut flushes = Vec::new();
        let mut closed = false;
        let first = match dones_due {
            None => requests
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(due) => requests.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        let delay = shared.options.done_delay;
        let mut take = |request, commits: &mut Vec<_>, flushes: &mut Vec<_>| match request {
            Request::Commit(commit) => commits.push(commit),
            Request::DonesWaiting => {
                dones_due.get_or_insert_with(|| Instant::now() + delay);
            }
            Request::Flush(reply) => flushes.push(reply),
        };
        match first {
            Ok(request) => take(request, &mut commits, &mut flushes),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
        }
        while !closed && commits.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => take(request, &mut commits, &mut flushes),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => closed = true,
            }
        }
        let waiting = shared.lock_dones().len();
        if waiting == 0 {
            // The wake-up was for DONEs an earlier batch already took.
            dones_due = None;
        }
        let dones_overdue =
            waiting >= MAX_BATCH || dones_due.is_some_and(|due| Instant::now() >= due);
        let write = dones_overdue || closed || !flushes.is_empty() || !commits.is_empty();
        if !write {
            continue;
        }
        // A flush or the end takes every DONE queued so far; otherwise one batch's worth.
        let dones: Vec<Gid> = {
            let mut queued = shared.lock_dones();
            let take = if closed || !flushes.is_empty() {
                queued.len()
            } else {
                queued.len().min(MAX_BATCH)
            };
            dones_due = (queued.len() > take).then(Instant::now);
            queued.drain(..take).collect()
        };
        let mut batches = dones.chunks(MAX_BATCH);
        let mut result = shared.write_batch(commits, batches.next().unwrap_or_default());
        for batch in batches {
            result = result.and_then(|()| shared.write_batch(Vec::new(), batch));
        }
        if let Err(error) = &result
            && !dones.is_empty()
        {
            // Harmless: recovery re-checks those transactions and finds nothing to do.
            tracing::warn!(%error, dropped = dones.len(), "DONE records not written");
        }
        for flush in flushes {
            let _ = flush.send(result.clone());
        }
        if closed {
            return;
        }
        shared.maybe_compact();
    }
}

fn apply(pending: &mut BTreeSet<Gid>, kind: u8, gid: Gid) {
    if kind == KIND_COMMIT {
        pending.insert(gid);
    } else {
        pending.remove(&gid);
    }
}

fn header_bytes() -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

fn frame_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize()
}

fn encode_frame<'a>(out: &mut Vec<u8>, records: impl Iterator<Item = (u8, &'a Gid)>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    for (kind, gid) in records {
        let gid = gid.as_str().as_bytes();
        out.push(kind);
        out.push(u8::try_from(gid.len()).expect("a validated gid is at most 47 bytes"));
        out.extend_from_slice(gid);
    }
    let payload_len = out.len() - start - FRAME_HEADER_LEN;
    debug_assert!((MIN_FRAME_PAYLOAD..=MAX_FRAME_PAYLOAD).contains(&payload_len));
    let len = u32::try_from(payload_len)
        .expect("frames are small")
        .to_le_bytes();
    let crc = frame_crc(len, &out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn compacted_len(pending: &BTreeSet<Gid>) -> u64 {
    let records: usize = pending.iter().map(|gid| 2 + gid.as_str().len()).sum();
    let frames = records / COMPACTION_FRAME_PAYLOAD + 1;
    HEADER_LEN + (records + frames * FRAME_HEADER_LEN) as u64
}

/// A frame that passes its checksum: its payload and its size in the file.
fn checked_frame(buf: &[u8]) -> Result<(&[u8], usize), &'static str> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err("incomplete frame header");
    }
    let len: [u8; 4] = buf[..4].try_into().expect("4 bytes");
    let payload_len = u32::from_le_bytes(len) as usize;
    if !(MIN_FRAME_PAYLOAD..=MAX_FRAME_PAYLOAD).contains(&payload_len) {
        return Err("impossible frame length");
    }
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + payload_len) else {
        return Err("incomplete frame");
    };
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc != frame_crc(len, payload) {
        return Err("checksum mismatch");
    }
    Ok((payload, FRAME_HEADER_LEN + payload_len))
}

/// Whether an intact frame starts at `buf[0]`, for the search past a bad frame. Every frame
/// this format writes starts with a COMMIT or DONE record: checking that first skips almost
/// every offset before the checksum, keeping the search linear in practice.
fn intact_frame_at(buf: &[u8]) -> bool {
    matches!(buf.get(FRAME_HEADER_LEN), Some(&(KIND_COMMIT | KIND_DONE)))
        && checked_frame(buf).is_ok()
}

fn parse_records(mut payload: &[u8]) -> Result<Vec<(u8, Gid)>, String> {
    let mut records = Vec::new();
    while !payload.is_empty() {
        let [kind, len, rest @ ..] = payload else {
            return Err("a record is cut short inside an intact frame".into());
        };
        if *kind != KIND_COMMIT && *kind != KIND_DONE {
            return Err(format!(
                "unknown record kind {kind} in an intact frame (written by a newer wasmtx?)"
            ));
        }
        let Some(gid) = rest.get(..*len as usize) else {
            return Err("a record is cut short inside an intact frame".into());
        };
        let gid = std::str::from_utf8(gid)
            .ok()
            .and_then(|text| Gid::parse(text).ok())
            .ok_or_else(|| {
                format!(
                    "an intact frame holds an invalid gid {:?}",
                    String::from_utf8_lossy(gid)
                )
            })?;
        records.push((*kind, gid));
        payload = &rest[*len as usize..];
    }
    Ok(records)
}

struct Scan {
    records: Vec<(u8, Gid)>,
    /// Bytes of intact frames from the start of the buffer.
    intact_len: usize,
    /// Whether bytes follow the intact frames (a torn tail).
    torn: bool,
}

struct Damage {
    at: usize,
    detail: String,
}

/// Reads frames until the end or a bad frame. A bad frame with no intact frame anywhere
/// after it is a torn tail; with one, it is damage.
fn scan_frames(buf: &[u8]) -> Result<Scan, Damage> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match checked_frame(&buf[at..]) {
            Ok((payload, size)) => {
                records.extend(parse_records(payload).map_err(|detail| Damage { at, detail })?);
                at += size;
            }
            Err(why) => {
                if let Some(next) = (at + 1..buf.len()).find(|&next| intact_frame_at(&buf[next..]))
                {
                    let detail = format!(
                        "{why}; an intact frame follows at byte offset +{}",
                        next - at
                    );
                    return Err(Damage { at, detail });
                }
                return Ok(Scan {
                    records,
                    intact_len: at,
                    torn: true,
                });
            }
        }
    }
    Ok(Scan {
        records,
        intact_len: at,
        torn: false,
    })
}

fn io_error(path: &Path, action: &'static str, e: io::Error) -> DecisionLogError {
    DecisionLogError::Io {
        path: path.to_path_buf(),
        action,
        source: Arc::new(e),
    }
}

/// `<path><suffix>`, in the same directory.
fn sibling(path: &Path, suffix: &str) -> Result<PathBuf, DecisionLogError> {
    let Some(name) = path.file_name() else {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file");
        return Err(io_error(path, "open", e));
    };
    let mut name = name.to_os_string();
    name.push(suffix);
    Ok(path.with_file_name(name))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the missing parent directories of `path` and makes their entries durable.
fn create_parent_dirs(path: &Path) -> io::Result<()> {
    let dir = parent_dir(path);
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    for created in missing {
        sync_dir(parent_dir(created))?;
    }
    Ok(())
}

/// Whether `file` is the file `path` names now.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens (creating) the log for read and append with a shared lock, making sure the locked
/// file is still the one the path names: a compaction may rename a new file over it between
/// the open and the lock.
fn open_locked(path: &Path) -> Result<File, DecisionLogError> {
    for _ in 0..100 {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io_error(path, "open", e))?;
        file.lock_shared().map_err(|e| io_error(path, "lock", e))?;
        if same_file(&file, path).map_err(|e| io_error(path, "inspect", e))? {
            return Ok(file);
        }
    }
    let e = io::Error::other("the file kept being replaced while it was opened");
    Err(io_error(path, "open", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gid::NodeId;

    fn node() -> NodeId {
        NodeId::new("test").unwrap()
    }

    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(60)
    }

    fn set(gids: &[&Gid]) -> BTreeSet<Gid> {
        gids.iter().map(|gid| (*gid).clone()).collect()
    }

    fn log_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("state").join("decisions.log")
    }

    fn file_len(path: &Path) -> u64 {
        fs::metadata(path).unwrap().len()
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<DecisionLog>();
    }

    #[tokio::test]
    async fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let log = DecisionLog::open(&path).unwrap();
        assert!(log.pending_commits().unwrap().is_empty());
        let (a, b, c) = (
            Gid::new(&node(), later()),
            Gid::new(&node(), later()),
            Gid::new(&node(), later()),
        );
        log.record_commit(&a, later()).await.unwrap();
        log.record_commit(&b, later()).await.unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&a, &b]));
        assert!(log.is_committed(&a).unwrap());
        assert!(!log.is_committed(&c).unwrap());
        assert_eq!(log.stats().commits_written, 2);
        assert!(path.with_file_name("decisions.log.lock").exists());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..12], &header_bytes());
    }

    #[tokio::test]
    async fn done_cancels_commit() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(&log_path(&dir)).unwrap();
        let (a, b) = (Gid::new(&node(), later()), Gid::new(&node(), later()));
        log.record_commit(&a, later()).await.unwrap();
        log.record_commit(&b, later()).await.unwrap();
        log.record_done(&a).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&b]));
        assert!(!log.is_committed(&a).unwrap());
        // A DONE without a COMMIT is harmless.
        log.record_done(&Gid::new(&node(), later())).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&b]));
    }

    #[tokio::test]
    async fn dones_ride_with_the_next_commit_or_go_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let with_delay = |delay| DecisionLogOptions {
            done_delay: delay,
            ..Default::default()
        };
        let log =
            DecisionLog::open_with(&log_path(&dir), with_delay(Duration::from_secs(600))).unwrap();
        let (a, b, c) = (
            Gid::new(&node(), later()),
            Gid::new(&node(), later()),
            Gid::new(&node(), later()),
        );
        log.record_commit(&a, later()).await.unwrap();
        log.record_commit(&b, later()).await.unwrap();
        let before = log.stats();
        log.record_done(&a).await.unwrap();
        log.record_commit(&c, later()).await.unwrap();
        let after = log.stats();
        assert_eq!(
            after.fsyncs - before.fsyncs,
            1,
            "DONE shared the COMMIT's write and sync"
        );
        assert_eq!(after.dones_written, 1);
        assert_eq!(log.pending_commits().unwrap(), set(&[&b, &c]));

        let log = DecisionLog::open_with(
            &dir.path().join("other.log"),
            with_delay(Duration::from_millis(20)),
        )
        .unwrap();
        log.record_commit(&a, later()).await.unwrap();
        log.record_done(&a).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.is_committed(&a).unwrap() {
            assert!(
                Instant::now() < deadline,
                "the DONE was never written on its own"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn more_dones_than_a_batch_are_written_in_several_frames_by_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open_with(
            &log_path(&dir),
            DecisionLogOptions {
                done_delay: Duration::from_secs(600),
                ..Default::default()
            },
        )
        .unwrap();
        let gids: Vec<Gid> = (0..MAX_BATCH + 5)
            .map(|_| Gid::new(&node(), later()))
            .collect();
        for gid in &gids[..3] {
            log.record_commit(gid, later()).await.unwrap();
        }
        let before = log.stats();
        for gid in &gids {
            log.record_done(gid).await.unwrap();
        }
        log.flush().await.unwrap();
        let after = log.stats();
        assert_eq!(
            after.dones_written - before.dones_written,
            gids.len() as u64
        );
        assert!(after.frames_written - before.frames_written >= 2);
        assert!(log.pending_commits().unwrap().is_empty());
        drop(log);
        let log = DecisionLog::open(&log_path(&dir)).unwrap();
        assert!(log.pending_commits().unwrap().is_empty());
    }

    #[tokio::test]
    async fn reopen_sees_records_and_drop_writes_queued_dones() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let (a, b, c) = (
            Gid::new(&node(), later()),
            Gid::new(&node(), later()),
            Gid::new(&node(), later()),
        );
        {
            let log = DecisionLog::open(&path).unwrap();
            log.record_commit(&a, later()).await.unwrap();
            log.record_commit(&b, later()).await.unwrap();
            log.record_commit(&c, later()).await.unwrap();
            log.record_done(&b).await.unwrap(); // not flushed: dropping the log writes it
        }
        let log = DecisionLog::open(&path).unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&a, &c]));
    }

    #[tokio::test]
    async fn torn_tail_is_ignored_and_truncated_so_later_appends_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let (a, b, c) = (
            Gid::new(&node(), later()),
            Gid::new(&node(), later()),
            Gid::new(&node(), later()),
        );
        {
            let log = DecisionLog::open(&path).unwrap();
            log.record_commit(&a, later()).await.unwrap();
            log.record_commit(&b, later()).await.unwrap();
        }
        // A crash in the middle of b's frame.
        let intact = file_len(&path);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(intact - 3)
            .unwrap();
        {
            let log = DecisionLog::open(&path).unwrap();
            assert_eq!(log.pending_commits().unwrap(), set(&[&a]));
            log.record_commit(&c, later()).await.unwrap();
        }
        let log = DecisionLog::open(&path).unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&a, &c]));
    }

    #[tokio::test]
    async fn garbage_tail_is_ignored_and_later_appends_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let (a, b) = (Gid::new(&node(), later()), Gid::new(&node(), later()));
        {
            let log = DecisionLog::open(&path).unwrap();
            log.record_commit(&a, later()).await.unwrap();
        }
        let intact = file_len(&path);
        // A frame header that promises more than follows, then zeros, as a crash can leave.
        let mut garbage = 200u32.to_le_bytes().to_vec();
        garbage.extend_from_slice(&[0xab; 20]);
        garbage.extend_from_slice(&[0; 100]);
        append_raw(&path, &garbage);
        {
            let log = DecisionLog::open(&path).unwrap();
            assert_eq!(
                file_len(&path),
                intact,
                "the torn tail was truncated at open"
            );
            assert_eq!(log.pending_commits().unwrap(), set(&[&a]));
            log.record_commit(&b, later()).await.unwrap();
        }
        let log = DecisionLog::open(&path).unwrap();
        assert_eq!(log.pending_commits().unwrap(), set(&[&a, &b]));
    }

    #[tokio::test]
    async fn torn_tail_left_while_others_have_the_log_open_is_repaired_by_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let (a, b) = (Gid::new(&node(), later()), Gid::new(&node(), later()));
        let writer = DecisionLog::open(&path).unwrap();
        let reader = DecisionLog::open(&path).unwrap();
        writer.record_commit(&a, later()).await.unwrap();
        // A third process dies half-way through writing a frame.
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            std::iter::once((KIND_COMMIT, &Gid::new(&node(), later()))),
        );
        append_raw(&path, &frame[..frame.len() - 5]);
        assert_eq!(reader.pending_commits().unwrap(), set(&[&a]));
        writer.record_commit(&b, later()).await.unwrap();
        assert_eq!(reader.pending_commits().unwrap(), set(&[&a, &b]));
        assert_eq!(
            DecisionLog::open(&path).unwrap().pending_commits().unwrap(),
            set(&[&a, &b])
        );
    }

    #[tokio::test]
    async fn damage_followed_by_intact_records_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        {
            let log = DecisionLog::open(&path).unwrap();
            for _ in 0..3 {
                log.record_commit(&Gid::new(&node(), later()), later())
                    .await
                    .unwrap();
            }
        }
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_LEN as usize + 20] ^= 0x40; // inside the first frame's gid
        fs::write(&path, &bytes).unwrap();
        let error = DecisionLog::open(&path).unwrap_err();
        assert!(
            matches!(
                error,
                DecisionLogError::Damaged {
                    offset: HEADER_LEN,
                    ..
                }
            ),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("checksum"),
            "{message}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "a damaged log is left as it is"
        );
    }

    #[tokio::test]
    async fn intact_frame_with_unreadable_records_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        drop(DecisionLog::open(&path).unwrap());
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            std::iter::once((7, &Gid::new(&node(), later()))),
        );
        append_raw(&path, &frame);
        let error = DecisionLog::open(&path).unwrap_err();
        assert!(
            error.to_string().contains("unknown record kind 7"),
            "{error}"
        );
    }

    #[test]
    fn foreign_files_and_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.log");
        fs::write(&path, b"hello, this is not a log").unwrap();
        assert!(matches!(
            DecisionLog::open(&path),
            Err(DecisionLogError::NotADecisionLog { .. })
        ));
        let mut newer = header_bytes();
        newer[8] = 2;
        fs::write(&path, newer).unwrap();
        assert!(matches!(
            DecisionLog::open(&path),
            Err(DecisionLogError::UnsupportedVersion { found: 2, .. })
        ));
        // A header torn during creation is finished.
        fs::write(&path, &header_bytes()[..5]).unwrap();
        DecisionLog::open(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), header_bytes());
    }

    #[tokio::test]
    async fn commit_after_the_deadline_is_refused_and_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let log = DecisionLog::open(&path).unwrap();
        let gid = Gid::new(&node(), later());
        let past = SystemTime::now() - Duration::from_millis(1);
        let error = log.record_commit(&gid, past).await.unwrap_err();
        assert!(
            matches!(error, DecisionLogError::DeadlinePassed { .. }),
            "{error}"
        );
        assert!(!error.may_be_recorded());

        // The writer checks again right before writing (a batch may wait behind an fsync).
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest {
            gid: gid.clone(),
            deadline: past,
            reply,
        };
        log.send(Request::Commit(request)).unwrap();
        let error = answer.await.unwrap().unwrap_err();
        assert!(
            matches!(error, DecisionLogError::DeadlinePassed { .. }),
            "{error}"
        );

        assert!(!log.is_committed(&gid).unwrap());
        assert_eq!(file_len(&path), HEADER_LEN);
    }

    fn small_log(path: &Path) -> DecisionLog {
        let options = DecisionLogOptions {
            compact_threshold: 4096,
            ..Default::default()
        };
        DecisionLog::open_with(path, options).unwrap()
    }

    /// Commits 200 transactions and finishes all but `keep`; returns the unfinished ones.
    async fn commit_and_finish(log: &DecisionLog, keep: usize) -> BTreeSet<Gid> {
        let gids: Vec<Gid> = (0..200).map(|_| Gid::new(&node(), later())).collect();
        for gid in &gids {
            log.record_commit(gid, later()).await.unwrap();
        }
        for gid in &gids[keep..] {
            log.record_done(gid).await.unwrap();
        }
        log.flush().await.unwrap();
        gids[..keep].iter().cloned().collect()
    }

    #[tokio::test]
    async fn compaction_keeps_exactly_the_pending_commits_and_shrinks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let log = small_log(&path);
        let pending = commit_and_finish(&log, 5).await;
        // The batch after the DONEs noticed the size and compacted.
        log.record_commit(
            &Gid::new(&node(), later()),
            SystemTime::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
        log.flush().await.unwrap();
        assert!(log.stats().compactions >= 1, "{:?}", log.stats());
        assert!(file_len(&path) < 1024, "{} bytes", file_len(&path));
        let mut now_pending = log.pending_commits().unwrap();
        assert_eq!(now_pending.len(), 6);
        now_pending.retain(|gid| pending.contains(gid));
        assert_eq!(now_pending, pending);
        assert!(!path.with_file_name("decisions.log.compact").exists());
        // The new file is locked shared: no one else can compact it under our feet.
        let raw = File::open(&path).unwrap();
        assert!(matches!(raw.try_lock(), Err(TryLockError::WouldBlock)));
        drop(raw);
        drop(log);
        let reopened = DecisionLog::open(&path).unwrap();
        assert_eq!(reopened.pending_commits().unwrap().len(), 6);
        // Appends after compaction go to the new file.
        let more = Gid::new(&node(), later());
        reopened.record_commit(&more, later()).await.unwrap();
        drop(reopened);
        assert!(
            DecisionLog::open(&path)
                .unwrap()
                .is_committed(&more)
                .unwrap()
        );
    }

    #[tokio::test]
    async fn no_compaction_while_another_instance_has_the_log_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let log = small_log(&path);
        let other = DecisionLog::open(&path).unwrap();
        let pending = commit_and_finish(&log, 3).await;
        log.record_commit(&Gid::new(&node(), later()), later())
            .await
            .unwrap();
        assert_eq!(log.stats().compactions, 0);
        let big = file_len(&path);
        assert!(big > 4096);
        // The other instance still writes into the live file and sees everything.
        let theirs = Gid::new(&node(), later());
        other.record_commit(&theirs, later()).await.unwrap();
        assert!(log.is_committed(&theirs).unwrap());
        drop(other);
        // Alone now: the next batches compact (retries are spaced by file growth).
        for _ in 0..100 {
            if log.stats().compactions > 0 {
                break;
            }
            let gid = Gid::new(&node(), later());
            log.record_commit(&gid, later()).await.unwrap();
            log.record_done(&gid).await.unwrap();
            log.flush().await.unwrap();
        }
        assert!(log.stats().compactions > 0);
        assert!(file_len(&path) < big);
        let now_pending = log.pending_commits().unwrap();
        assert!(pending.is_subset(&now_pending) && now_pending.contains(&theirs));
        assert_eq!(now_pending.len(), 5);
    }

    #[tokio::test]
    async fn compaction_that_reads_new_pending_commits_changes_nothing_and_keeps_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let options = DecisionLogOptions {
            compact_threshold: u64::MAX,
            ..Default::default()
        };
        let log = DecisionLog::open_with(&path, options).unwrap();
        commit_and_finish(&log, 0).await;
        {
            // Another process appends many COMMITs and exits.
            let other = DecisionLog::open(&path).unwrap();
            for _ in 0..300 {
                other
                    .record_commit(&Gid::new(&node(), later()), later())
                    .await
                    .unwrap();
            }
        }
        let before = fs::read(&path).unwrap();
        let shared = &log.handle.shared;
        let mut state = shared.lock_state();
        assert!(state.pending.is_empty(), "has not read the new COMMITs yet");
        assert!(!shared.try_compact(&mut state).unwrap());
        drop(state);
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(log.pending_commits().unwrap().len(), 300);
        let raw = File::open(&path).unwrap();
        assert!(matches!(raw.try_lock(), Err(TryLockError::WouldBlock)));
    }

    #[tokio::test]
    async fn two_instances_on_one_file_see_each_others_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let first = DecisionLog::open(&path).unwrap();
        let second = DecisionLog::open(&path).unwrap();
        let (a, b) = (Gid::new(&node(), later()), Gid::new(&node(), later()));
        first.record_commit(&a, later()).await.unwrap();
        second.record_commit(&b, later()).await.unwrap();
        assert_eq!(first.pending_commits().unwrap(), set(&[&a, &b]));
        assert_eq!(second.pending_commits().unwrap(), set(&[&a, &b]));
        second.record_done(&a).await.unwrap();
        second.flush().await.unwrap();
        assert!(!first.is_committed(&a).unwrap());
        let snapshot = first.snapshot().unwrap();
        assert_eq!(snapshot.pending, set(&[&b]));
        assert!(snapshot.as_of <= SystemTime::now());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_are_all_durable_and_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let log = DecisionLog::open(&path).unwrap();
        let fsyncs_at_open = log.stats().fsyncs;
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for _ in 0..10 {
                        let gid = Gid::new(&node(), later());
                        log.record_commit(&gid, later()).await.unwrap();
                        mine.push(gid);
                    }
                    mine
                })
            })
            .collect();
        let mut all = BTreeSet::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        assert_eq!(all.len(), 640);
        let stats = log.stats();
        assert_eq!(stats.commits_written, 640);
        let fsyncs = stats.fsyncs - fsyncs_at_open;
        assert!(fsyncs < 640, "{fsyncs} fsyncs for 640 commits");
        drop(log);
        assert_eq!(
            DecisionLog::open(&path).unwrap().pending_commits().unwrap(),
            all
        );
    }

    /// Group-commit throughput. Run on the disk you care about (tmpfs makes fsync free):
    /// `DLOG_BENCH_DIR=/some/dir cargo test --release decision_log::tests::group_commit_throughput -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn group_commit_throughput() {
        let dir = match std::env::var_os("DLOG_BENCH_DIR") {
            Some(base) => tempfile::tempdir_in(base).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        println!("log in {}", dir.path().display());
        let run_for = Duration::from_secs(2);
        for tasks in [1usize, 16, 64] {
            let log = DecisionLog::open(&dir.path().join(format!("bench-{tasks}.log"))).unwrap();
            let before = log.stats();
            let started = Instant::now();
            let workers: Vec<_> = (0..tasks)
                .map(|_| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let mut count = 0u64;
                        while started.elapsed() < run_for {
                            log.record_commit(&Gid::new(&node(), later()), later())
                                .await
                                .unwrap();
                            count += 1;
                        }
                        count
                    })
                })
                .collect();
            let mut records = 0;
            for worker in workers {
                records += worker.await.unwrap();
            }
            let seconds = started.elapsed().as_secs_f64();
            let fsyncs = log.stats().fsyncs - before.fsyncs;
            println!(
                "tasks {tasks:>2}: {:>8.0} records/s, {:>6.0} fsyncs/s, {:>5.1} records per fsync",
                records as f64 / seconds,
                fsyncs as f64 / seconds,
                records as f64 / fsyncs as f64,
            );
        }
    }
}
