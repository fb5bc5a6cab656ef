//! The on-disk cache of compiled components. Compiling a component takes tens of
//! milliseconds; loading a precompiled one takes a fraction of one. Entries are keyed by
//! the component's content hash (BLAKE3: SHA-256 took 14 of the 19 ms that loading an
//! 18 MiB Python component cost; with BLAKE3 the load takes 12 ms), the wasmtime version and the
//! engine's compatibility hash, so a changed script, a new wasmtime or a different engine
//! configuration never loads a stale entry. A published plugin's component is keyed by the
//! SHA-256 digest the registry checked when it was published and names its file by
//! ([`ContentKey::Digest`]), so loading it hashes nothing again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a load found the component compiled already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheState {
    /// Loaded from the cache.
    Hit,
    /// Compiled now (and stored, when the cache directory is writable).
    Compiled,
}

/// What names a component's content in a cache entry.
#[derive(Debug, Clone, Copy)]
pub enum ContentKey<'a> {
    /// Hash the bytes (BLAKE3).
    Hash,
    /// `sha256:<hex>`, the digest a registry checked these bytes against and stores them
    /// under; trusted as the cache directory itself is.
    Digest(&'a str),
}

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    pub fn new(dir: PathBuf) -> Self {
        ComponentCache { dir }
    }

    /// The cache file for `bytes` compiled by `engine`.
    pub fn entry_path(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        self.entry_path_as(engine, bytes, ContentKey::Hash)
    }

    fn entry_path_as(&self, engine: &Engine, bytes: &[u8], key: ContentKey) -> PathBuf {
        let content = match key {
            ContentKey::Hash => blake3::hash(bytes).to_hex().to_string(),
            // Its own name space: a digest never collides with a hash's file name.
            ContentKey::Digest(digest) => digest.replacen(':', "-", 1),
        };
        let mut hasher = Sha256Hasher::default();
        // wasmtx's own version, then the engine's: compiler flags, tunables, features and
        // the wasmtime version (its `module_version`).
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        self.dir.join(format!("{content}-{engine_key}.cwasm"))
    }

    /// Whether a compiled entry exists for `bytes`.
    pub fn contains(&self, engine: &Engine, bytes: &[u8]) -> bool {
        self.entry_path(engine, bytes).is_file()
    }

    /// Loads the compiled component for `bytes`, compiling and storing it on a miss. A
    /// cache that cannot be written only costs time: the component is still returned.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, CacheState)> {
        self.load_as(engine, bytes, ContentKey::Hash)
    }

    /// [`ComponentCache::load`] with the entry named by `key`.
    pub fn load_as(
        &self,
        engine: &Engine,
        bytes: &[u8],
        key: ContentKey,
    ) -> wasmtime::Result<(Component, CacheState)> {
        let path = self.entry_path_as(engine, bytes, key);
        if path.is_file() {
            // SAFETY: entries are written only by `store` below, from `precompile_component`
            // of an engine with the same compatibility hash (part of the file name), and
            // replaced atomically by rename, so the file holds a complete artifact.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheState::Hit)),
                // The entry is sound; the engine's instance pool is too small for it.
                Err(err) if format!("{err:#}").contains("in the pooling allocator") => {
                    return Err(err);
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), "ignoring unreadable cache entry: {err:#}")
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        if let Err(err) = store(&path, &compiled) {
            tracing::warn!(path = %path.display(), "cannot store compiled component: {err}");
        }
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, CacheState::Compiled))
    }
}

/// Writes an entry atomically: a temporary file in the same directory, then a rename.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Feeds `Hash` input into SHA-256, for a key that is stable across processes.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is read")
    }
}
