//! What every handle on one open log shares with its writer thread: the open file, the
//! pending COMMITs read from it, the locks, the failure that stops it, and the counters.
//! Loading the file and catching up with what other processes appended live here.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::SystemTime;

use super::files::{create_parent_dirs, parent_dir, sibling, sync_dir};
use super::format::{self, HEADER_LEN, Header};
use super::lock::{AppendLock, AppendLockFile};
use super::{DecisionLogError, DecisionLogOptions};
use crate::decision_store::DecisionStats;
use crate::gid::Gid;

pub(super) struct Shared {
    pub(super) path: PathBuf,
    pub(super) options: DecisionLogOptions,
    /// `<log>.lock`: exclusive to append, shared to read. Only ever locked while `state` is
    /// held, since `flock`s taken through one open file are one lock, whatever the thread.
    append_lock: AppendLockFile,
    state: Mutex<State>,
    /// Set once a failure leaves the log's content unknown; no record is taken after it.
    failure: OnceLock<String>,
    /// DONEs waiting for a write. Queued here rather than sent, so that a DONE wakes the
    /// writer only when it is the first one waiting (to start the delay) or fills a batch.
    pub(super) dones: Mutex<Vec<Gid>>,
    pub(super) stats: Counters,
}

pub(super) struct State {
    /// The log, open for read and append, with a shared `flock` held.
    pub(super) file: File,
    /// The end of the last intact frame read or written.
    pub(super) end: u64,
    /// How far the file is known to be durable.
    pub(super) synced_end: u64,
    pub(super) pending: BTreeSet<Gid>,
    /// Do not try to compact before the file reaches this size.
    pub(super) next_compaction_at: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) commits_written: AtomicU64,
    pub(super) dones_written: AtomicU64,
    pub(super) batches_written: AtomicU64,
    /// `fdatasync`/`fsync` calls on the log by this instance.
    pub(super) syncs: AtomicU64,
    pub(super) compactions: AtomicU64,
}

impl Counters {
    pub(super) fn get(&self) -> DecisionStats {
        DecisionStats {
            commits_written: self.commits_written.load(Ordering::Relaxed),
            dones_written: self.dones_written.load(Ordering::Relaxed),
            batches_written: self.batches_written.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
        }
    }

    pub(super) fn synced(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// Opens the log's files at `path`, creating them and their directory if missing, and
    /// loads the log.
    pub(super) fn open(
        path: PathBuf,
        options: DecisionLogOptions,
    ) -> Result<Self, DecisionLogError> {
        let lock_path = sibling(&path, ".lock")?;
        create_parent_dirs(&path)
            .map_err(|e| DecisionLogError::io(&path, "create the directory of", e))?;
        let file = super::lock::open_locked(&path)?;
        let append_lock = AppendLockFile::open(lock_path)?;
        let shared = Shared {
            path,
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
        };
        shared.load(&mut shared.lock_state())?;
        Ok(shared)
    }

    pub(super) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the append lock. `_held` witnesses that the caller holds `state`.
    pub(super) fn lock_appends(
        &self,
        _held: &State,
        exclusive: bool,
    ) -> Result<AppendLock<'_>, DecisionLogError> {
        self.append_lock.lock(exclusive)
    }

    pub(super) fn io(&self, action: &'static str, e: io::Error) -> DecisionLogError {
        DecisionLogError::io(&self.path, action, e)
    }

    pub(super) fn check_usable(&self) -> Result<(), DecisionLogError> {
        match self.failure.get() {
            Some(cause) => Err(DecisionLogError::Unusable {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn has_failed(&self) -> bool {
        self.failure.get().is_some()
    }

    /// Stops the log taking records: after `cause`, its content is unknown.
    pub(super) fn fail(&self, cause: String) {
        tracing::error!(path = %self.path.display(), %cause, "decision log takes no more records");
        let _ = self.failure.set(cause);
    }

    /// (Re)reads `state.file` from the start: writes the header of a new file, checks the
    /// header of an old one, reads every frame, truncates a torn tail.
    pub(super) fn load(&self, state: &mut State) -> Result<(), DecisionLogError> {
        state.end = 0;
        state.synced_end = 0;
        state.pending.clear();
        let _append = self.lock_appends(state, true)?;
        self.init_header(state)?;
        self.catch_up(state, true)?;
        state.file.sync_data().map_err(|e| self.io("sync", e))?;
        self.stats.synced();
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
        match format::read_header(&found) {
            Header::Valid => {}
            Header::Missing => {
                file.set_len(0).map_err(|e| self.io("initialize", e))?;
                (&*file)
                    .write_all(&format::header_bytes())
                    .map_err(|e| self.io("initialize", e))?;
                file.sync_all().map_err(|e| self.io("sync", e))?;
                self.stats.synced();
                // The file's directory entry must be durable before any COMMIT is.
                sync_dir(parent_dir(&self.path))
                    .map_err(|e| self.io("sync the directory of", e))?;
            }
            Header::Foreign => {
                return Err(DecisionLogError::NotADecisionLog {
                    path: self.path.clone(),
                    found: String::from_utf8_lossy(&found[..found.len().min(8)]).into_owned(),
                });
            }
            Header::Version(found) => {
                return Err(DecisionLogError::UnsupportedVersion {
                    path: self.path.clone(),
                    found,
                });
            }
        }
        state.end = HEADER_LEN;
        Ok(())
    }

    /// Reads the frames appended since `state.end`. A torn tail is left unread, and with
    /// `repair` (append lock held exclusively) truncated away. Needs the append lock.
    pub(super) fn catch_up(&self, state: &mut State, repair: bool) -> Result<(), DecisionLogError> {
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
        let scan = format::scan_frames(&tail)
            .map_err(|d| self.damaged(state.end + d.at as u64, d.detail))?;
        for (kind, gid) in scan.records {
            format::apply(&mut state.pending, kind, gid);
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
            self.stats.synced();
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

    /// Catches up with the file under the shared append lock and hands `view` the pending
    /// COMMITs and the time, read before the lock is released (see the module docs of
    /// [`super`] on `as_of`). Blocking: it can wait for a batch being synced, here or in
    /// another process.
    pub(super) fn read<T>(
        &self,
        view: impl FnOnce(&BTreeSet<Gid>, SystemTime) -> T,
    ) -> Result<T, DecisionLogError> {
        let mut state = self.lock_state();
        let append = self.lock_appends(&state, false)?;
        self.catch_up(&mut state, false)?;
        // A writer syncs before it lets go of the append lock, but one killed between its
        // write and its sync leaves an intact frame that is not durable. Never act on that.
        if state.synced_end < state.end {
            state.file.sync_data().map_err(|e| self.io("sync", e))?;
            self.stats.synced();
            state.synced_end = state.end;
        }
        let seen = view(&state.pending, SystemTime::now());
        drop(append);
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::path::Path;

    use super::*;
    use crate::decision_log::format::{KIND_COMMIT, encode_frame};
    use crate::decision_log::test_support::*;
    use crate::decision_log::{DecisionLog, DecisionLogError};
    use crate::decision_store::DecisionStore;
    use crate::gid::Gid;

    #[tokio::test]
    async fn torn_tail_is_ignored_and_truncated_so_later_appends_survive() {
        let (_dir, path) = temp_log();
        let (a, b) = (gid(), gid());
        commit_and_close(&path, &[&a, &b]).await;
        // A crash in the middle of b's frame.
        let intact = file_len(&path);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(intact - 3)
            .unwrap();
        reads_only_and_later_appends_survive(&path, &a).await;
    }

    /// After its tail was torn: the log at `path` reads `only` as pending, and a COMMIT
    /// appended now is still there after the next open.
    async fn reads_only_and_later_appends_survive(path: &Path, only: &Gid) {
        let appended = gid();
        {
            let log = DecisionLog::open(path).unwrap();
            assert_eq!(log.pending_commits().unwrap(), set(&[only]));
            log.record_commit(&appended, later()).await.unwrap();
        }
        assert_eq!(pending_after_reopening(path), set(&[only, &appended]));
    }

    #[tokio::test]
    async fn garbage_tail_is_ignored_and_later_appends_survive() {
        let (_dir, path) = temp_log();
        let a = gid();
        commit_and_close(&path, &[&a]).await;
        let intact = file_len(&path);
        // A frame header that promises more than follows, then zeros, as a crash can leave.
        let mut garbage = 200u32.to_le_bytes().to_vec();
        garbage.extend_from_slice(&[0xab; 20]);
        garbage.extend_from_slice(&[0; 100]);
        append_raw(&path, &garbage);
        drop(DecisionLog::open(&path).unwrap());
        assert_eq!(
            file_len(&path),
            intact,
            "the torn tail was truncated at open"
        );
        reads_only_and_later_appends_survive(&path, &a).await;
    }

    #[tokio::test]
    async fn torn_tail_left_while_others_have_the_log_open_is_repaired_by_the_next_writer() {
        let (_dir, path) = temp_log();
        let (a, b) = (gid(), gid());
        let writer = DecisionLog::open(&path).unwrap();
        let reader = DecisionLog::open(&path).unwrap();
        writer.record_commit(&a, later()).await.unwrap();
        // A third process dies half-way through writing a frame.
        let mut frame = Vec::new();
        encode_frame(&mut frame, std::iter::once((KIND_COMMIT, &gid())));
        append_raw(&path, &frame[..frame.len() - 5]);
        assert_eq!(reader.pending_commits().unwrap(), set(&[&a]));
        writer.record_commit(&b, later()).await.unwrap();
        assert_eq!(reader.pending_commits().unwrap(), set(&[&a, &b]));
        assert_eq!(pending_after_reopening(&path), set(&[&a, &b]));
    }

    #[tokio::test]
    async fn damage_followed_by_intact_records_refuses_to_open() {
        let (_dir, path) = temp_log();
        commit_and_close(&path, &[&gid(), &gid(), &gid()]).await;
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
        let (_dir, path) = temp_log();
        drop(DecisionLog::open(&path).unwrap());
        let mut frame = Vec::new();
        encode_frame(&mut frame, std::iter::once((7, &gid())));
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
        let mut newer = format::header_bytes();
        newer[8] = 2;
        fs::write(&path, newer).unwrap();
        assert!(matches!(
            DecisionLog::open(&path),
            Err(DecisionLogError::UnsupportedVersion { found: 2, .. })
        ));
        // A header torn during creation is finished.
        fs::write(&path, &format::header_bytes()[..5]).unwrap();
        DecisionLog::open(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), format::header_bytes());
    }
}
