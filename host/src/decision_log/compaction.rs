//! Compaction: rewrites the log with only the pending COMMITs, when the file is big, few
//! COMMITs are pending, and no other `DecisionLog` has the file open (see the module docs of
//! [`super`] on why that last condition keeps acknowledged COMMITs from being lost).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::atomic::Ordering;

use super::DecisionLogError;
use super::files::{parent_dir, sibling, sync_dir};
use super::format::{self, FRAME_HEADER_LEN, HEADER_LEN, KIND_COMMIT};
use super::lock;
use super::shared::{Shared, State};
use crate::gid::Gid;

/// Compaction splits the pending COMMITs into frames of about this many payload bytes.
const COMPACTION_FRAME_PAYLOAD: usize = 64 << 10;

impl Shared {
    /// Compacts if the file is big, few COMMITs are pending, and no one else has it open.
    pub(super) fn maybe_compact(&self) {
        if self.has_failed() {
            return;
        }
        let mut state = self.lock_state();
        let threshold = self.options.compact_threshold;
        if state.end < threshold.max(HEADER_LEN + 1) || state.end < state.next_compaction_at {
            return;
        }
        let retry_at = state.end + (threshold / 4).max(4096);
        if !worth_compacting(&state) {
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
    pub(super) fn try_compact(&self, state: &mut State) -> Result<bool, DecisionLogError> {
        // In the gap between giving up the shared lock and taking the exclusive one another
        // process may compact: `relock_shared` notices and re-opens.
        let locked = lock::try_lock_exclusive(&state.file, &self.path);
        if !matches!(locked, Ok(true)) {
            self.relock_shared(state)?;
            return locked;
        }
        let current = lock::same_file(&state.file, &self.path).map_err(|e| self.io("inspect", e));
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
        if !worth_compacting(state) {
            return Ok(false);
        }
        let temp_path = sibling(&self.path, ".compact")?;
        let temp_error = |action, e| DecisionLogError::io(&temp_path, action, e);
        let temp = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&temp_path)
            .map_err(|e| temp_error("create", e))?;
        temp.set_len(0).map_err(|e| temp_error("truncate", e))?;
        let content = compacted(&state.pending);
        (&temp)
            .write_all(&content)
            .map_err(|e| temp_error("write", e))?;
        temp.sync_all().map_err(|e| temp_error("sync", e))?;
        self.stats.synced();
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
            if !lock::relock_shared(&state.file, &self.path)? {
                state.file = lock::open_locked(&self.path)?;
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

/// Whether compaction would shrink the file to a quarter or less.
fn worth_compacting(state: &State) -> bool {
    compacted_len(&state.pending).saturating_mul(4) <= state.end
}

/// The pending COMMITs, grouped into frames of about [`COMPACTION_FRAME_PAYLOAD`] bytes.
fn frames_of(pending: &BTreeSet<Gid>) -> Vec<Vec<&Gid>> {
    let mut frames = Vec::new();
    let mut frame = Vec::new();
    let mut payload = 0;
    for gid in pending {
        frame.push(gid);
        payload += format::record_len(gid);
        if payload >= COMPACTION_FRAME_PAYLOAD {
            frames.push(std::mem::take(&mut frame));
            payload = 0;
        }
    }
    if !frame.is_empty() {
        frames.push(frame);
    }
    frames
}

/// The content of the compacted log: the header and the pending COMMITs.
fn compacted(pending: &BTreeSet<Gid>) -> Vec<u8> {
    let mut content = format::header_bytes().to_vec();
    for frame in frames_of(pending) {
        format::encode_frame(
            &mut content,
            frame.into_iter().map(|gid| (KIND_COMMIT, gid)),
        );
    }
    content
}

/// An upper bound of the size of [`compacted`], computed without building it.
fn compacted_len(pending: &BTreeSet<Gid>) -> u64 {
    let records: usize = pending.iter().map(format::record_len).sum();
    let frames = records / COMPACTION_FRAME_PAYLOAD + 1;
    HEADER_LEN + (records + frames * FRAME_HEADER_LEN) as u64
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File, TryLockError};
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::decision_log::test_support::*;
    use crate::decision_log::{DecisionLog, DecisionLogOptions};
    use crate::decision_store::{DecisionSource, DecisionStore};

    fn small_log(path: &Path) -> DecisionLog {
        let options = DecisionLogOptions {
            compact_threshold: 4096,
            ..Default::default()
        };
        DecisionLog::open_with(path, options).unwrap()
    }

    /// Commits 200 transactions and finishes all but `keep`; returns the unfinished ones.
    async fn commit_and_finish(log: &DecisionLog, keep: usize) -> BTreeSet<Gid> {
        let gids: Vec<Gid> = (0..200).map(|_| gid()).collect();
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
        let (_dir, path) = temp_log();
        let log = small_log(&path);
        let pending = commit_and_finish(&log, 5).await;
        // The batch after the DONEs noticed the size and compacted.
        log.record_commit(&gid(), SystemTime::now() + Duration::from_secs(60))
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
        let more = gid();
        reopened.record_commit(&more, later()).await.unwrap();
        drop(reopened);
        assert!(
            DecisionLog::open(&path)
                .unwrap()
                .is_committed(&more)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn no_compaction_while_another_instance_has_the_log_open() {
        let (_dir, path) = temp_log();
        let log = small_log(&path);
        let other = DecisionLog::open(&path).unwrap();
        let pending = commit_and_finish(&log, 3).await;
        log.record_commit(&gid(), later()).await.unwrap();
        assert_eq!(log.stats().compactions, 0);
        let big = file_len(&path);
        assert!(big > 4096);
        // The other instance still writes into the live file and sees everything.
        let theirs = gid();
        other.record_commit(&theirs, later()).await.unwrap();
        assert!(log.is_committed(&theirs).await.unwrap());
        drop(other);
        // Alone now: the next batches compact (retries are spaced by file growth).
        for _ in 0..100 {
            if log.stats().compactions > 0 {
                break;
            }
            let gid = gid();
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
        let (_dir, path) = temp_log();
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
                other.record_commit(&gid(), later()).await.unwrap();
            }
        }
        let before = fs::read(&path).unwrap();
        let shared = &log.writer.shared;
        let mut state = shared.lock_state();
        assert!(state.pending.is_empty(), "has not read the new COMMITs yet");
        assert!(!shared.try_compact(&mut state).unwrap());
        drop(state);
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(log.pending_commits().unwrap().len(), 300);
        let raw = File::open(&path).unwrap();
        assert!(matches!(raw.try_lock(), Err(TryLockError::WouldBlock)));
    }
}
