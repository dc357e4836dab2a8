//! The on-disk cache of compiled modules (`.cwasm`), so a module is compiled
//! by Cranelift once per machine and engine configuration, not per start.

use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wasmtime::{Engine, Module};

/// Bytes the cache may hold before its least recently used entries are
/// removed: 2 GiB, a few hundred modules. `MADRPC_CACHE_MAX_MB` sets it.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// A partial entry older than this was left by a process that died while
/// writing it.
const STALE_PARTIAL: Duration = Duration::from_secs(3600);

/// A directory of precompiled modules keyed by module content and engine.
/// Every deploy or edit of a script adds an entry; entries are used in
/// place of a compilation, so the least recently used go first when the
/// directory passes its size limit.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl ModuleCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let max_bytes = std::env::var("MADRPC_CACHE_MAX_MB")
            .ok()
            .and_then(|mb| mb.trim().parse::<u64>().ok())
            .map_or(DEFAULT_MAX_BYTES, |mb| mb.saturating_mul(1 << 20));
        Self {
            dir: dir.into(),
            max_bytes,
        }
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
                Ok(module) => {
                    // Marks the entry as used for the least-recently-used order.
                    let _ = std::fs::File::options()
                        .write(true)
                        .open(&path)
                        .and_then(|file| file.set_modified(SystemTime::now()));
                    return Ok((module, Some(path)));
                }
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
        self.prune(path);
        Ok(())
    }

    /// Removes the least recently used entries until the cache fits its
    /// limit, never `keep` (the entry just written), and partial entries
    /// left by processes that died. An entry in use elsewhere is safe to
    /// remove: loaded modules are read into memory, and a process that
    /// finds its entry gone compiles again.
    fn prune(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut cached = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let modified = meta.modified().unwrap_or(now);
            let is_partial = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.starts_with("partial-"));
            if is_partial {
                if now.duration_since(modified).unwrap_or_default() > STALE_PARTIAL {
                    let _ = std::fs::remove_file(&path);
                }
            } else if path.extension().is_some_and(|e| e == "cwasm") && meta.is_file() {
                cached.push((modified, meta.len(), path));
            }
        }
        let mut total: u64 = cached.iter().map(|(_, len, _)| len).sum();
        cached.sort();
        for (_, len, path) in cached {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total = total.saturating_sub(len);
                    tracing::debug!(path = %path.display(), "removed a least recently used cached module");
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "could not remove a cached module")
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entries_go_first_and_never_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache {
            dir: dir.path().to_path_buf(),
            max_bytes: 2500,
        };
        let now = SystemTime::now();
        let entry = |name: &str, age_s: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; 1000]).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(now - Duration::from_secs(age_s)).unwrap();
            path
        };
        let oldest = entry("a.cwasm", 300);
        let older = entry("b.cwasm", 200);
        let recent = entry("c.cwasm", 100);
        // Just written, yet given the oldest time: it stays all the same.
        let new = entry("d.cwasm", 400);
        let stale_partial = entry("e.partial-1", 7200);
        let fresh_partial = entry("f.partial-2", 10);
        cache.prune(&new);
        assert!(!oldest.exists() && !older.exists());
        assert!(recent.exists() && new.exists());
        assert!(!stale_partial.exists() && fresh_partial.exists());
    }
}
