//! A loaded module: compiled, linked and ready to instantiate per call.

use super::error::LoadError;
use super::resets::ResetWatch;
use super::state::CallState;
use crate::manifest::{ABI_VERSION, Manifest};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use wasmtime::{InstancePre, ModuleExport};

/// A module ready to serve calls. Cheap to share between threads.
#[derive(Clone)]
pub struct LoadedModule {
    pub(crate) id: crate::modules::ModuleId,
    pub(crate) manifest: Manifest,
    pub(crate) summary: Arc<crate::manifest::ModuleSummary>,
    pub(crate) slots: Arc<Slots>,
}

/// The compiled module linked for instantiation.
pub(crate) struct Linked {
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) exports: GuestExports,
}

/// Which pooled memory slots a module's calls land in.
///
/// Wasmtime's pool hands a module the slot it last used, and keeps that
/// slot's pages mapped between calls, restoring the written ones in place.
/// Without precise dirty tracking it treats every page a call ever wrote as
/// dirty again after every later call, so a single allocation-heavy call
/// leaves its slot restoring megabytes after each trivial call that
/// follows (tens of times their cost). When resets are lately that slow
/// (see `resets.rs`), the module is loaded again from its entry in the
/// compiled-module cache: the copy has a new identity, so its calls go to
/// clean slots, and the pool remaps the polluted slots before any other
/// module uses them. The old copy's code and memory image are freed once
/// its last call ends and the pool has taken its slots over, so memory
/// does not grow.
pub(crate) struct Slots {
    current: RwLock<Arc<Linked>>,
    /// The cache entry to load fresh copies from; without one (no cache,
    /// or the entry became unusable) the module keeps its slots.
    cached_at: Option<PathBuf>,
    gave_up: AtomicBool,
    resets: ResetWatch,
    last_refresh: Mutex<Option<Instant>>,
    refreshes: AtomicU64,
}

impl Slots {
    pub(crate) fn new(linked: Linked, cached_at: Option<PathBuf>) -> Self {
        Self {
            current: RwLock::new(Arc::new(linked)),
            cached_at,
            gave_up: AtomicBool::new(false),
            resets: ResetWatch::default(),
            last_refresh: Mutex::new(None),
            refreshes: AtomicU64::new(0),
        }
    }

    /// The linked module calls instantiate now.
    pub(crate) fn current(&self) -> Arc<Linked> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The cache entry to load a fresh copy from.
    pub(crate) fn cached_at(&self) -> Option<&Path> {
        if self.gave_up.load(Ordering::Relaxed) {
            return None;
        }
        self.cached_at.as_deref()
    }

    /// Stops refreshing: the cache entry could not be loaded.
    pub(crate) fn give_up_refreshing(&self) {
        self.gave_up.store(true, Ordering::Relaxed);
    }

    /// Counts a reset that took `reset`; whether resets have lately been
    /// well above what a clean slot costs.
    pub(crate) fn is_slow(&self, reset: Duration) -> bool {
        self.resets.lately_slow(reset)
    }

    /// Whether a refresh may start now: at most one per `interval`, and
    /// never while another runs.
    pub(crate) fn claim_refresh(&self, interval: Duration) -> bool {
        let Ok(mut last) = self.last_refresh.try_lock() else {
            return false;
        };
        if last.is_some_and(|at| at.elapsed() < interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Switches later calls to `linked`.
    pub(crate) fn replace(&self, linked: Linked) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(linked);
        self.resets.clear();
        self.refreshes.fetch_add(1, Ordering::Relaxed);
    }
}

impl LoadedModule {
    /// How many times the module moved its calls to clean memory slots
    /// after a slow reset (see `Slots`).
    pub fn slot_refreshes(&self) -> u64 {
        self.slots.refreshes.load(Ordering::Relaxed)
    }

    /// What the module says about itself (script name, methods).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The module's hash and cacheable functions, for the gateway's cache.
    pub fn summary(&self) -> &Arc<crate::manifest::ModuleSummary> {
        &self.summary
    }

    /// The registered function names.
    pub fn methods(&self) -> &[String] {
        &self.manifest.methods
    }

    /// Hex SHA-256 of the module's bytes, which names its version.
    pub fn hash(&self) -> &str {
        &self.summary.hash
    }

    /// The module's version: the SHA-256 of its bytes.
    pub fn id(&self) -> crate::modules::ModuleId {
        self.id
    }
}

/// Pre-resolved handles of the guest ABI exports, so a call does not look
/// them up by name.
#[derive(Clone)]
pub(crate) struct GuestExports {
    pub(crate) memory: ModuleExport,
    pub(crate) alloc: ModuleExport,
    pub(crate) call: ModuleExport,
}

impl GuestExports {
    pub(crate) fn resolve(module: &wasmtime::Module) -> Result<Self, LoadError> {
        let find = |name: &str| {
            module.get_export_index(name).ok_or_else(|| {
                LoadError::Invalid(format!(
                    "it does not export `{name}`; rebuild it with `madrpc build`"
                ))
            })
        };
        Ok(Self {
            memory: find("memory")?,
            alloc: find("madrpc_alloc")?,
            call: find("madrpc_call")?,
        })
    }
}

/// Checks the manifest before anything is compiled.
pub(crate) fn check_manifest(wasm: &[u8]) -> Result<Manifest, LoadError> {
    let manifest = Manifest::read(wasm)?;
    if manifest.abi != ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            found: manifest.abi,
            expected: ABI_VERSION,
        });
    }
    Ok(manifest)
}
