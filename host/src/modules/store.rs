//! The gateway's module versions on disk: one file per version, named by
//! its id, and a small record of which is current and which came before.
//! Files are written to a temporary name and renamed, and their digest is
//! checked when read back, so a crash or a damaged disk never serves a
//! module other than the one deployed.

use super::ModuleId;
use crate::manifest::{ABI_VERSION, Manifest, ModuleSummary};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Versions kept: the current one and the four before it (rollback goes
/// back one at a time, like `kubectl rollout undo`).
pub const KEPT_VERSIONS: usize = 5;

/// The record of the deploys, next to the module files.
const RECORD: &str = "deploys.json";

/// One module version.
#[derive(Debug)]
pub struct Version {
    /// Its id.
    pub id: ModuleId,
    /// The module's bytes, as nodes fetch them.
    pub wasm: Bytes,
    /// What the module says about itself.
    pub manifest: Manifest,
    /// Its hash, methods and cacheable functions.
    pub summary: Arc<ModuleSummary>,
}

impl Version {
    /// Checks that `wasm` is a madrpc module for this host's ABI, without
    /// running or compiling it (the gateway runs no guest code).
    pub fn check(wasm: Bytes) -> Result<Self, StoreError> {
        let manifest = Manifest::read(&wasm).map_err(|e| StoreError::NotAModule(e.to_string()))?;
        if manifest.abi != ABI_VERSION {
            return Err(StoreError::NotAModule(format!(
                "it was built for guest ABI {}, and this madrpc runs ABI {ABI_VERSION}; rebuild it with this version of `madrpc build`",
                manifest.abi
            )));
        }
        Ok(Self {
            id: ModuleId::of(&wasm),
            summary: Arc::new(ModuleSummary::of(&wasm, &manifest)),
            manifest,
            wasm,
        })
    }
}

/// Why a version could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bytes are not a module this host can serve.
    #[error("not a module this grid can serve: {0}")]
    NotAModule(String),
    /// The store's folder could not be written or read.
    #[error(
        "the module store at {path} failed: {source}; check the folder, or choose another with --data-dir"
    )]
    Io {
        /// The file or folder.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Which version is current and which were current before it, oldest
/// first, with when each was first deployed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    current: Option<ModuleId>,
    #[serde(default)]
    history: Vec<ModuleId>,
    #[serde(default)]
    deployed: HashMap<ModuleId, u64>,
}

/// The versions a gateway serves and has served.
#[derive(Debug, Default)]
pub struct Store {
    /// Where versions are kept; `None` keeps them in memory (`serve`).
    dir: Option<PathBuf>,
    versions: HashMap<ModuleId, Arc<Version>>,
    record: Record,
}

impl Store {
    /// Opens the store in `dir` (created if missing), reading back the
    /// versions it kept; `None` keeps versions in memory only. A version
    /// file that is missing or damaged is left out, with a warning.
    pub fn open(dir: Option<&Path>) -> Result<Self, StoreError> {
        let Some(dir) = dir else {
            return Ok(Self::default());
        };
        std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        let record_path = dir.join(RECORD);
        let mut record: Record = match std::fs::read(&record_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(file = %record_path.display(), %error, "the deploy record is damaged; starting without a deployed module");
                Record::default()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Record::default(),
            Err(source) => return Err(io(&record_path, source)),
        };
        let mut versions = HashMap::new();
        for id in record.current.iter().chain(&record.history) {
            let path = dir.join(file_name(*id));
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    if ModuleId::of(&bytes) == *id {
                        Version::check(Bytes::from(bytes)).map_err(|e| e.to_string())
                    } else {
                        Err("its bytes do not match its name".into())
                    }
                });
            match read {
                Ok(version) => {
                    versions.insert(*id, Arc::new(version));
                }
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "left out a stored module version")
                }
            }
        }
        record.history.retain(|id| versions.contains_key(id));
        if record.current.is_some_and(|id| !versions.contains_key(&id)) {
            record.current = None;
        }
        Ok(Self {
            dir: Some(dir.to_owned()),
            versions,
            record,
        })
    }

    /// The current version.
    pub fn current(&self) -> Option<Arc<Version>> {
        self.record.current.and_then(|id| self.get(id))
    }

    /// The version before the current one: where a rollback goes.
    pub fn previous(&self) -> Option<Arc<Version>> {
        self.record.history.last().and_then(|id| self.get(*id))
    }

    /// A version the store holds.
    pub fn get(&self, id: ModuleId) -> Option<Arc<Version>> {
        self.versions.get(&id).cloned()
    }

    /// When `id` was first made current, in seconds since the epoch.
    pub fn deployed_at(&self, id: ModuleId) -> Option<u64> {
        self.record.deployed.get(&id).copied()
    }

    /// The versions kept, current first, then newest to oldest.
    pub fn list(&self) -> Vec<Arc<Version>> {
        self.record
            .current
            .iter()
            .chain(self.record.history.iter().rev())
            .filter_map(|id| self.get(*id))
            .collect()
    }

    /// Keeps `version` (written to disk first), without making it current.
    pub fn put(&mut self, version: Arc<Version>) -> Result<(), StoreError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(file_name(version.id));
            if !path.exists() {
                write_atomically(&path, &version.wasm)?;
            }
        }
        self.versions.insert(version.id, version);
        Ok(())
    }

    /// Makes the version `id` (already [`Store::put`]) current; the one it
    /// replaces becomes the previous. Versions past [`KEPT_VERSIONS`] are
    /// dropped, with their files.
    pub fn make_current(&mut self, id: ModuleId) -> Result<(), StoreError> {
        let record = &mut self.record;
        if record.current == Some(id) {
            return Ok(());
        }
        record.history.retain(|old| *old != id);
        if let Some(old) = record.current.replace(id) {
            record.history.push(old);
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        record.deployed.entry(id).or_insert(now);
        let excess = record.history.len().saturating_sub(KEPT_VERSIONS - 1);
        let dropped: Vec<ModuleId> = record.history.drain(..excess).collect();
        for id in &dropped {
            record.deployed.remove(id);
        }
        // Versions put but never made current, and those past the limit.
        let kept: Vec<ModuleId> = record
            .current
            .iter()
            .chain(&record.history)
            .copied()
            .collect();
        self.versions.retain(|id, _| kept.contains(id));
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let record = serde_json::to_vec_pretty(&self.record).unwrap_or_default();
        write_atomically(&dir.join(RECORD), &record)?;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let stale = name
                    .strip_suffix(".wasm")
                    .and_then(ModuleId::parse)
                    .is_some_and(|id| !kept.contains(&id));
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}

fn file_name(id: ModuleId) -> String {
    format!("{id}.wasm")
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames
/// it over `path`: a reader sees the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io(path, e))?;
    temp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str) -> Bytes {
        Bytes::from(Manifest::test_module(name))
    }

    #[test]
    fn the_current_version_and_its_history_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(Some(dir.path())).unwrap();
        let ids: Vec<ModuleId> = (0..7)
            .map(|n| {
                let version = Arc::new(Version::check(module(&format!("v{n}.js"))).unwrap());
                let id = version.id;
                store.put(version).unwrap();
                store.make_current(id).unwrap();
                id
            })
            .collect();
        let store = Store::open(Some(dir.path())).unwrap();
        assert_eq!(store.current().unwrap().id, ids[6]);
        assert_eq!(store.previous().unwrap().id, ids[5]);
        let listed: Vec<ModuleId> = store.list().iter().map(|v| v.id).collect();
        assert_eq!(listed, [ids[6], ids[5], ids[4], ids[3], ids[2]]);
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, KEPT_VERSIONS + 1, "old versions' files are removed");
    }

    #[test]
    fn a_damaged_file_is_left_out_and_a_rollback_swaps_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(Some(dir.path())).unwrap();
        let a = Arc::new(Version::check(module("a.js")).unwrap());
        let b = Arc::new(Version::check(module("b.js")).unwrap());
        let (a_id, b_id) = (a.id, b.id);
        store.put(a).unwrap();
        store.make_current(a_id).unwrap();
        store.put(b).unwrap();
        store.make_current(b_id).unwrap();
        store.make_current(a_id).unwrap();
        assert_eq!(store.current().unwrap().id, a_id);
        assert_eq!(store.previous().unwrap().id, b_id);
        std::fs::write(dir.path().join(file_name(b_id)), b"damaged").unwrap();
        let store = Store::open(Some(dir.path())).unwrap();
        assert_eq!(store.current().unwrap().id, a_id);
        assert!(store.previous().is_none());
    }

    #[test]
    fn text_is_refused() {
        assert!(matches!(
            Version::check(Bytes::from_static(b"madrpc.register()")),
            Err(StoreError::NotAModule(_))
        ));
    }
}
