//! The plugin registry: script components published as immutable `name@version`, found
//! again by version, alias or digest. It lives in the state directory, no server needed:
//!
//! ```text
//! <dir>/index.json               versions, aliases, withdrawals (replaced atomically)
//! <dir>/blobs/sha256/<hex>.wasm  each component once, named by its content digest
//! <dir>/staging/                 uploads being checked (removed when refused)
//! <dir>/lock                     serialises writers across processes
//! ```
//!
//! Rules:
//! - a component is checked when published — a component, of the script world, that
//!   compiles — by [`Sandbox::load`], which also stores its compiled form in the cache, so
//!   the first invocation costs no compile. A refused upload leaves nothing behind;
//! - `name@version` is immutable: the same bytes again are accepted and change nothing
//!   (`created: false`), other bytes are [`RegistryError::VersionExists`];
//! - `latest` is kept by the registry: the highest version not withdrawn, releases before
//!   pre-releases; other aliases are set by hand and may not point at a withdrawn version;
//! - withdrawing keeps the bytes and the version's digest (history still names them), but
//!   resolving it — directly, through an alias or by digest — is [`RegistryError::Withdrawn`];
//! - every write is durable before it returns: blobs and the index are written to a temporary
//!   file, synced, renamed into place and their directory synced, the blob before the index
//!   that names it.
//!
//! A [`Registry`] is shared behind an `Arc`; several processes may open the same directory
//! (writers take `lock` in turn and re-read the index first; readers notice a replaced index).

mod durable;
mod error;
mod index;
mod names;
mod plugins;
mod postgres;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::script::Sandbox;
pub use error::RegistryError;
use index::{Index, PublishCheck, VersionEntry};
pub use names::{LATEST, Selector};
pub use plugins::Plugins;

/// Staged uploads older than this are left by a crash and removed when a registry opens.
const STALE_UPLOAD: Duration = Duration::from_secs(3600);

/// The plugin registry in one directory. `Send + Sync`; share it behind an `Arc`.
pub struct Registry {
    dir: PathBuf,
    cached: Mutex<Cached>,
    /// One writer at a time: this process's writers queue here, then take `lock` (a file
    /// lock) against other processes' writers.
    writer: Mutex<File>,
}

/// The index as last read, and which file it was read from.
struct Cached {
    index: Index,
    file: Option<FileId>,
}

/// Identifies one version of the index file: every write renames a new file into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    inode: u64,
    modified_ns: i128,
    size: u64,
}

/// What [`Registry::check_upload`] found.
pub(crate) enum Upload {
    /// The same bytes are published under this version already.
    Same(Published),
    New(NewVersion),
}

/// A checked upload of a version not in the index as last read.
pub(crate) struct NewVersion {
    name: String,
    version: String,
    entry: VersionEntry,
    /// The bytes, in the staging directory until kept.
    staged: NamedTempFile,
}

impl NewVersion {
    /// Adds the version to `index`, unless it was published meanwhile (then the same bytes
    /// are `created: false`, other bytes [`RegistryError::VersionExists`]). As a change of
    /// an index: what was published, and whether the index changed.
    fn record(&self, index: &mut Index) -> Result<(Published, bool), RegistryError> {
        let (name, version, digest) = (&self.name, &self.version, &self.entry.digest);
        if let PublishCheck::Same(info) = index.check_publish(name, version, digest)? {
            let published = Published {
                info,
                created: false,
            };
            return Ok((published, false));
        }
        index.insert(name, version, self.entry.clone());
        tracing::info!(plugin = %name, %version, %digest, "published");
        let published = Published {
            info: self.entry.info(name, version),
            created: true,
        };
        Ok((published, true))
    }
}

/// What [`Registry::publish`] did.
#[derive(Debug, Clone)]
pub struct Published {
    pub info: VersionInfo,
    /// `false`: these bytes were published under this version already; nothing changed.
    pub created: bool,
}

/// A selector resolved to one published, usable version.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub version: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The component file, for [`Sandbox::load`].
    pub path: PathBuf,
}

/// One published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
    /// `sha256:<hex>` of the component's bytes.
    pub digest: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub published_at: String,
    pub published_by: Option<String>,
    /// RFC 3339, UTC; set once a version is withdrawn.
    pub withdrawn_at: Option<String>,
}

/// A plugin in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PluginSummary {
    pub name: String,
    /// The highest version not withdrawn.
    pub latest: Option<String>,
    /// How many versions were published, withdrawn ones included.
    pub versions: usize,
    /// Alias → version, `latest` included.
    pub aliases: BTreeMap<String, String>,
}

/// A plugin with all its versions (lowest first) and aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PluginDetail {
    pub name: String,
    pub versions: Vec<VersionInfo>,
    /// Alias → version, `latest` included.
    pub aliases: BTreeMap<String, String>,
}

impl Registry {
    /// Opens the registry under `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        durable::create_dir(&dir.join("blobs").join("sha256"))?;
        durable::create_dir(&dir.join("staging"))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| RegistryError::io(&lock_path, "open", e))?;
        let registry = Registry {
            dir: dir.to_owned(),
            cached: Mutex::new(Cached {
                index: Index::default(),
                file: None,
            }),
            writer: Mutex::new(lock),
        };
        if let Err(e) = durable::remove_stale(&registry.staging_dir(), STALE_UPLOAD) {
            tracing::warn!(dir = %registry.staging_dir().display(), "cannot clear old uploads: {e}");
        }
        drop(registry.current()?);
        Ok(registry)
    }

    /// Checks a component and publishes it as `name@version`. The check is
    /// [`Sandbox::load`]: a component, of the script world, that compiles (which also fills
    /// the compiled cache).
    pub fn publish(
        &self,
        sandbox: &Sandbox,
        name: &str,
        version: &str,
        bytes: &[u8],
        published_by: Option<&str>,
    ) -> Result<Published, RegistryError> {
        let upload = match self.check_upload(sandbox, name, version, bytes, published_by)? {
            Upload::Same(published) => return Ok(published),
            Upload::New(upload) => upload,
        };
        self.write(|index| {
            let (published, created) = upload.record(index)?;
            if created {
                self.keep_blob(upload.staged, &upload.entry.digest)?;
            }
            Ok((published, created))
        })
    }

    /// The part of publishing before the index is written: the names checked, a repeat of
    /// the same bytes answered from the index as read now, otherwise the bytes staged and
    /// checked by [`Sandbox::load`]. A refused upload leaves nothing behind.
    pub(crate) fn check_upload(
        &self,
        sandbox: &Sandbox,
        name: &str,
        version: &str,
        bytes: &[u8],
        published_by: Option<&str>,
    ) -> Result<Upload, RegistryError> {
        names::check_name(name)?;
        let version = names::parse_version(version)?.to_string();
        let digest = digest_of(bytes);
        // Answer a repeat or a conflict without compiling anything.
        if let PublishCheck::Same(info) = self
            .current()?
            .index
            .check_publish(name, &version, &digest)?
        {
            return Ok(Upload::Same(Published {
                info,
                created: false,
            }));
        }
        let staged = durable::stage(&self.staging_dir(), bytes)?;
        sandbox
            .load_published(staged.path(), &digest)
            .map_err(|e| {
                RegistryError::Rejected(error::relabel(e, &format!("{name}@{version}")))
            })?;
        Ok(Upload::New(NewVersion {
            name: name.to_owned(),
            version,
            entry: VersionEntry {
                digest,
                size: bytes.len() as u64,
                published_at: now(),
                published_by: published_by.map(str::to_owned),
                withdrawn_at: None,
            },
            staged,
        }))
    }

    /// Stores a checked upload as the blob of `digest`, unless these bytes are stored
    /// already (under another version).
    pub(crate) fn keep_blob(
        &self,
        staged: NamedTempFile,
        digest: &str,
    ) -> Result<(), RegistryError> {
        if self.has_blob(digest) {
            drop(staged);
            Ok(())
        } else {
            durable::install(staged, &self.blob_path(digest))
        }
    }

    /// Stores `bytes` as the blob of `digest` (`sha256:<hex>`), after checking that they
    /// are: a mirror's copy of a blob kept elsewhere.
    pub(crate) fn store_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        check_blob(digest, bytes, self.blob_path(digest))?;
        self.keep_blob(durable::stage(&self.staging_dir(), bytes)?, digest)
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The index as it is now.
    pub(crate) fn snapshot(&self) -> Result<Index, RegistryError> {
        Ok(self.current()?.index.clone())
    }

    /// Replaces the index with `index`, durably: a mirror taking a shared registry's
    /// state. Every blob it names must be stored first.
    pub(crate) fn mirror(&self, index: Index) -> Result<(), RegistryError> {
        self.write(|current| {
            *current = index;
            Ok(((), true))
        })
    }

    /// Resolves `selector` (`None` is `latest`) — an exact version, an alias or
    /// `sha256:<hex>` of a component published under `name` — to a usable version.
    pub fn resolve(&self, name: &str, selector: Option<&str>) -> Result<Resolved, RegistryError> {
        names::check_name(name)?;
        let selector = Selector::parse(selector)?;
        let cached = self.current()?;
        let (version, entry) = cached.index.resolve(name, &selector)?;
        let path = self.blob_path(&entry.digest);
        if !path.is_file() {
            let e = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the index names it but the file is missing",
            );
            return Err(RegistryError::io(path, "read the component", e));
        }
        Ok(Resolved {
            name: name.to_owned(),
            version,
            digest: entry.digest.clone(),
            path,
        })
    }

    /// Every plugin, by name. An index that cannot be re-read leaves the last one read.
    pub fn list(&self) -> Vec<PluginSummary> {
        match self.current() {
            Ok(cached) => cached.index.summaries(),
            Err(e) => {
                tracing::warn!("cannot re-read the plugin index, listing the last one read: {e}");
                self.lock_cached().index.summaries()
            }
        }
    }

    /// A plugin's versions and aliases.
    pub fn show(&self, name: &str) -> Result<PluginDetail, RegistryError> {
        names::check_name(name)?;
        self.current()?.index.detail(name)
    }

    /// One version's metadata, withdrawn or not.
    pub fn version(&self, name: &str, version: &str) -> Result<VersionInfo, RegistryError> {
        names::check_name(name)?;
        let version = names::parse_version(version)?.to_string();
        Ok(self
            .current()?
            .index
            .entry(name, &version)?
            .info(name, &version))
    }

    /// Points `alias` at `name@version` (existing, not withdrawn). `latest` cannot be set.
    pub fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<PluginDetail, RegistryError> {
        self.write(alias_change(name, alias, version)?)
    }

    /// Withdraws `name@version`: it can no longer be resolved, but its bytes and digest stay.
    /// Withdrawing it again changes nothing.
    pub fn withdraw(&self, name: &str, version: &str) -> Result<VersionInfo, RegistryError> {
        self.write(withdrawal(name, version)?)
    }

    /// The component file stored for `digest` (`sha256:<hex>`), for download. A string that
    /// is not such a digest gets a path inside the registry that never exists.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        match names::digest_hex(digest) {
            Some(hex) => self.blob_dir().join(format!("{hex}.wasm")),
            None => self.blob_dir().join("not-a-digest"),
        }
    }

    fn blob_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    fn staging_dir(&self) -> PathBuf {
        self.dir.join("staging")
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn lock_cached(&self) -> MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached index, re-read first if another writer replaced the file.
    fn current(&self) -> Result<MutexGuard<'_, Cached>, RegistryError> {
        let mut cached = self.lock_cached();
        let path = self.index_path();
        let file = match fs::metadata(&path) {
            Ok(meta) => Some(FileId::of(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(RegistryError::io(path, "read", e)),
        };
        if file != cached.file {
            cached.index = match file {
                Some(_) => read_index(&path)?,
                None => Index::default(),
            };
            cached.file = file;
        }
        Ok(cached)
    }

    /// Runs `change` on the current index under the cross-process lock and, when it reports
    /// a change, writes the index durably before returning. A failed write leaves the index
    /// as it was.
    fn write<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<(T, bool), RegistryError>,
    ) -> Result<T, RegistryError> {
        let lock = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        lock.lock()
            .map_err(|e| RegistryError::io(self.dir.join("lock"), "lock", e))?;
        let result = self.write_locked(change);
        if let Err(e) = lock.unlock() {
            tracing::warn!("cannot unlock the plugin registry's lock file: {e}");
        }
        result
    }

    fn write_locked<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<(T, bool), RegistryError>,
    ) -> Result<T, RegistryError> {
        // Readers are not held up by the syncs below: they keep reading the cache (or the
        // old file) until the new index is in place.
        let mut index = self.current()?.index.clone();
        let (result, changed) = change(&mut index)?;
        if changed {
            let path = self.index_path();
            let mut text = serde_json::to_vec_pretty(&index).expect("the index serialises");
            text.push(b'\n');
            durable::replace(&path, &text)?;
            let meta = fs::metadata(&path).map_err(|e| RegistryError::io(&path, "read", e))?;
            let mut cached = self.lock_cached();
            cached.index = index;
            cached.file = Some(FileId::of(&meta));
        }
        Ok(result)
    }
}

/// Setting an alias, its names checked, as a change of an index (which reports whether it
/// changed anything).
pub(crate) fn alias_change(
    name: &str,
    alias: &str,
    version: &str,
) -> Result<impl FnOnce(&mut Index) -> Result<(PluginDetail, bool), RegistryError>, RegistryError> {
    names::check_name(name)?;
    names::check_alias(alias)?;
    let version = names::parse_version(version)?.to_string();
    let (name, alias) = (name.to_owned(), alias.to_owned());
    Ok(move |index: &mut Index| {
        index.set_alias(&name, &alias, &version)?;
        tracing::info!(plugin = name, alias, version, "alias set");
        Ok((index.detail(&name)?, true))
    })
}

/// Withdrawing a version, its names checked, as a change of an index.
pub(crate) fn withdrawal(
    name: &str,
    version: &str,
) -> Result<impl FnOnce(&mut Index) -> Result<(VersionInfo, bool), RegistryError>, RegistryError> {
    names::check_name(name)?;
    let version = names::parse_version(version)?.to_string();
    let name = name.to_owned();
    Ok(move |index: &mut Index| {
        let changed = index.withdraw(&name, &version, &now())?;
        if changed {
            tracing::info!(plugin = name, version, "withdrawn");
        }
        Ok((index.entry(&name, &version)?.info(&name, &version), changed))
    })
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            inode: meta.ino(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            size: meta.size(),
        }
    }
}

fn read_index(path: &Path) -> Result<Index, RegistryError> {
    let text = fs::read(path).map_err(|e| RegistryError::io(path, "read", e))?;
    let index: Index = serde_json::from_slice(&text).map_err(|e| {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a plugin index: {e}"),
        );
        RegistryError::io(path, "parse", e)
    })?;
    if index.format != index::FORMAT {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "index format {} is not {} (written by another wasmtx version)",
                index.format,
                index::FORMAT
            ),
        );
        return Err(RegistryError::io(path, "parse", e));
    }
    Ok(index)
}

/// `sha256:<hex>` of `bytes`: how the registry names a component.
fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An error about `path` unless `bytes` are the component named `digest`.
fn check_blob(digest: &str, bytes: &[u8], path: impl Into<PathBuf>) -> Result<(), RegistryError> {
    let actual = digest_of(bytes);
    if actual == digest {
        return Ok(());
    }
    let e = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the bytes have digest {actual}, not {digest}"),
    );
    Err(RegistryError::io(path, "store", e))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
