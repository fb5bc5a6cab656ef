//! File-system steps the decision log needs to be durable: sibling paths, directory syncs,
//! and creating the state directory.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::DecisionLogError;

/// `<path><suffix>`, in the same directory.
pub(super) fn sibling(path: &Path, suffix: &str) -> Result<PathBuf, DecisionLogError> {
    let Some(name) = path.file_name() else {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file");
        return Err(DecisionLogError::io(path, "open", e));
    };
    let mut name = name.to_os_string();
    name.push(suffix);
    Ok(path.with_file_name(name))
}

pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes the entries of `dir` (a rename, a new file) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the missing parent directories of `path` and makes their entries durable.
pub(super) fn create_parent_dirs(path: &Path) -> io::Result<()> {
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
