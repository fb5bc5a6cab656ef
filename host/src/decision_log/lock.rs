//! The decision log's advisory `flock`s (std's `File::lock*`).
//!
//! - The log file itself: every open [`DecisionLog`](super::DecisionLog) holds a **shared**
//!   lock on it; compaction needs it **exclusively** (no one else has the file open).
//! - `<log>.lock`, the *append lock*: exclusive to append, shared to read, so a reader never
//!   sees a batch half-written.
//!
//! A compaction renames a new file over the log, so after taking a lock on the log every
//! opener checks that the path still names the inode it locked, and re-opens if not.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::DecisionLogError;

/// The open `<log>.lock` file.
pub(super) struct AppendLockFile {
    file: File,
    path: PathBuf,
}

impl AppendLockFile {
    /// Opens (creating) the append lock file at `path`.
    pub(super) fn open(path: PathBuf) -> Result<Self, DecisionLogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| DecisionLogError::io(&path, "open the append lock of", e))?;
        Ok(AppendLockFile { file, path })
    }

    /// Waits for the append lock: `exclusive` to append, shared to read. `flock`s taken
    /// through one open file are one lock, whatever the thread: callers serialize.
    pub(super) fn lock(&self, exclusive: bool) -> Result<AppendLock<'_>, DecisionLogError> {
        let locked = if exclusive {
            self.file.lock()
        } else {
            self.file.lock_shared()
        };
        locked.map_err(|e| DecisionLogError::io(&self.path, "lock the append lock of", e))?;
        Ok(AppendLock(&self.file))
    }
}

/// Holds the append lock; unlocks on drop.
pub(super) struct AppendLock<'a>(&'a File);

impl Drop for AppendLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Opens (creating) the log for read and append with a shared lock, making sure the locked
/// file is still the one the path names: a compaction may rename a new file over it between
/// the open and the lock.
pub(super) fn open_locked(path: &Path) -> Result<File, DecisionLogError> {
    for _ in 0..100 {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| DecisionLogError::io(path, "open", e))?;
        file.lock_shared()
            .map_err(|e| DecisionLogError::io(path, "lock", e))?;
        if same_file(&file, path).map_err(|e| DecisionLogError::io(path, "inspect", e))? {
            return Ok(file);
        }
    }
    let e = io::Error::other("the file kept being replaced while it was opened");
    Err(DecisionLogError::io(path, "open", e))
}

/// Whether `file` is the file `path` names now.
pub(super) fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Trades the shared lock held on `file` (the log at `path`) for an exclusive one if no one
/// else holds a lock on it: `Ok(false)` if someone does. Either way the shared lock is given
/// up first (std leaves converting a held lock unspecified, and Linux drops the shared lock
/// when an upgrade fails): afterwards the caller holds the exclusive lock or none, and must
/// [`relock_shared`] before going on without it.
pub(super) fn try_lock_exclusive(file: &File, path: &Path) -> Result<bool, DecisionLogError> {
    file.unlock()
        .map_err(|e| DecisionLogError::io(path, "unlock", e))?;
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(DecisionLogError::io(path, "lock", e)),
    }
}

/// Takes the shared lock on `file` again (after it was unlocked or held exclusively), and
/// says whether `path` still names `file`: if not, a compaction replaced it in the meantime
/// and the caller must re-open the log.
pub(super) fn relock_shared(file: &File, path: &Path) -> Result<bool, DecisionLogError> {
    file.unlock()
        .map_err(|e| DecisionLogError::io(path, "unlock", e))?;
    file.lock_shared()
        .map_err(|e| DecisionLogError::io(path, "lock", e))?;
    same_file(file, path).map_err(|e| DecisionLogError::io(path, "inspect", e))
}
