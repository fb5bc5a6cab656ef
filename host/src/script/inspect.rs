//! What a component is and whether this host can run it: the report of `wasmtx inspect`.

use std::path::Path;

use serde::Serialize;

use super::{ContentKey, InstanceNeeds, LoadError, Sandbox, WORLD};

/// A component as this host sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub path: String,
    pub size_bytes: usize,
    /// The world a script must implement.
    pub world: &'static str,
    /// Whether it implements that world.
    pub implements_world: bool,
    /// Why this host cannot run it, when it cannot: another world, an import wasmtx does
    /// not provide, or more of the instance pool or memory than the limits allow.
    pub problem: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// What one instance takes from the instance pool, and its largest initial memory;
    /// checked against `limits.max_core_instances`, `max_memories`, `max_tables` and
    /// `memory_mib` as `run` checks them.
    pub needs: InstanceNeeds,
    /// Whether the compiled form was already cached, or compiled now.
    pub compiled_cache: CompiledCache,
    pub cache_file: String,
}

/// The compiled-component cache's state for an inspected component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CompiledCache {
    #[serde(rename = "cached")]
    Cached,
    #[serde(rename = "compiled now, cached for next time")]
    CompiledNow,
}

impl Sandbox {
    /// Reads and compiles `path` (through the cache) and checks it against [`WORLD`]. An
    /// error means it is not a component at all; a component of another world is an
    /// [`Inspection`] with `implements_world: false` and the problem.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut needs = self.needs(path, &bytes)?;
        let engine = &self.engine();
        let cached_before = self.cache().contains(engine, &bytes);
        // The same checks as `run`: pool budget and memory, then world and imports.
        let (imports, exports, failure) =
            match self.compile_for(path, &bytes, ContentKey::Hash, &mut needs) {
                Ok((sized, component, _)) => {
                    let engine = sized.engine.engine();
                    let ty = component.component_type();
                    let imports = ty.imports(engine).map(|(name, _)| name.to_owned());
                    let exports = ty.exports(engine).map(|(name, _)| name.to_owned());
                    (imports.collect(), exports.collect(), self.load(path).err())
                }
                Err(refused @ LoadError::Refused { .. }) => (Vec::new(), Vec::new(), Some(refused)),
                Err(err) => return Err(err),
            };
        let implements_world = !matches!(failure, Some(LoadError::WrongWorld { .. }));
        let problem = failure.map(|e| e.to_string());
        Ok(Inspection {
            path: path.display().to_string(),
            size_bytes: bytes.len(),
            world: WORLD,
            implements_world,
            problem,
            imports,
            exports,
            needs,
            compiled_cache: if cached_before {
                CompiledCache::Cached
            } else {
                CompiledCache::CompiledNow
            },
            cache_file: self
                .cache()
                .entry_path(engine, &bytes)
                .display()
                .to_string(),
        })
    }
}
