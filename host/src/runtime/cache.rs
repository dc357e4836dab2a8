//! The on-disk cache of compiled modules (`.cwasm`), so a module is compiled
//! by Cranelift once per machine and engine configuration, not per start.

use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// A directory of precompiled modules keyed by module content and engine.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The default location: `$MADRPC_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/madrpc/modules`, else `~/.cache/madrpc/modules`.
    pub fn default_location() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("MADRPC_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
        Some(base.join("madrpc").join("modules"))
    }

    /// Returns the compiled form of `wasm`, from the cache when a valid entry
    /// exists, else compiling it and storing the result, with the path of
    /// the entry when there is one. A cache that cannot be read or written
    /// only costs a compilation.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Module, Option<PathBuf>)> {
        let path = self.dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
        if path.exists() {
            match load_entry(engine, &path) {
                Ok(module) => return Ok((module, Some(path))),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unusable cached module");
                }
            }
        }
        let module = {
            let _progress =
                crate::progress::Progress::start("compiling the module (once per machine)");
            Module::new(engine, wasm)?
        };
        match self.store(&path, &module) {
            Ok(()) => Ok((module, Some(path))),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "could not cache the compiled module");
                Ok((module, None))
            }
        }
    }

    fn store(&self, path: &Path, module: &Module) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = module.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
        // Write then rename, so a concurrent reader never sees half a file.
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, path)?;
        Ok(())
    }
}

/// Loads a cache entry written by [`ModuleCache::load_or_compile`]. Each
/// load is a new module (its own identity in the instance pool).
///
/// The entry is read into memory rather than mapped: Wasmtime then keeps
/// the memory image in an anonymous file of small pages. Mapped from the
/// cache file, the image would sit in the file system's page cache, which
/// recent kernels hold in large folios, and a call's first read of the
/// heap maps a whole folio (up to megabytes) into the sandbox's slot at
/// once. Every page mapped there is a page the per-call reset scans:
/// on a trivial script that made a `noop` call about 60% slower.
pub fn load_entry(engine: &Engine, path: &Path) -> wasmtime::Result<Module> {
    let bytes = std::fs::read(path)?;
    // SAFETY: entries are written only by `ModuleCache::store` from
    // `Module::serialize` of this engine configuration (the key covers it);
    // Wasmtime checks the header and version on load.
    unsafe { Module::deserialize(engine, &bytes) }
}

/// Hex SHA-256 over the Wasmtime version, the engine's compatibility hash
/// and the module bytes.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hasher = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hasher);
    let mut digest = Sha256::new();
    digest.update(env!("CARGO_PKG_VERSION").as_bytes());
    digest.update(engine_hasher.finish().to_le_bytes());
    digest.update(wasm);
    digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
