//! Durable file steps: a file is written whole to a temporary name, synced, renamed into
//! place and its directory synced, so after a crash a path holds either the old content or
//! the complete new one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

use super::RegistryError;

/// Creates `dir` (and its missing parents) and makes the new entries durable.
pub fn create_dir(dir: &Path) -> Result<(), RegistryError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    fs::create_dir_all(dir).map_err(|e| RegistryError::io(dir, "create", e))?;
    for created in missing {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Makes the entries of `dir` (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| RegistryError::io(dir, "sync the directory", e))
}

/// Writes `bytes` to a new temporary file in `dir` and syncs it; it is deleted when dropped
/// unless [`install`]ed.
pub fn stage(dir: &Path, bytes: &[u8]) -> Result<NamedTempFile, RegistryError> {
    let mut file =
        NamedTempFile::new_in(dir).map_err(|e| RegistryError::io(dir, "create a file in", e))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| RegistryError::io(file.path(), "write", e))?;
    Ok(file)
}

/// Renames a staged file to `path` and makes the rename durable.
pub fn install(staged: NamedTempFile, path: &Path) -> Result<(), RegistryError> {
    staged
        .persist(path)
        .map_err(|e| RegistryError::io(path, "rename a file to", e.error))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replaces `path` with `bytes`, atomically and durably.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    install(stage(dir, bytes)?, path)
}

/// Removes files in `dir` last modified longer than `age` ago: uploads a crash left staged.
pub fn remove_stale(dir: &Path, age: Duration) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let modified = entry.metadata()?.modified()?;
        let stale = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|elapsed| elapsed > age);
        if stale && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}
