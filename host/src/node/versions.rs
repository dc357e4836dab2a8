//! The module versions a node's pool holds: the current one, which calls
//! that name no version run on, and others that calls may name (the
//! previous one, for a rollback; a new one while a deploy waits for every
//! node to load it; an old one whose calls are still in flight).

use crate::manifest::ModuleSummary;
use crate::modules::ModuleId;
use crate::runtime::LoadedModule;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The versions, behind a lock that calls only read.
pub struct ModuleVersions(RwLock<Held>);

struct Held {
    current: LoadedModule,
    others: Vec<LoadedModule>,
}

impl Held {
    fn all(&self) -> impl Iterator<Item = &LoadedModule> {
        std::iter::once(&self.current).chain(&self.others)
    }

    fn get(&self, id: ModuleId) -> Option<&LoadedModule> {
        self.all().find(|m| m.id() == id)
    }
}

impl ModuleVersions {
    /// `module` as the only and current version.
    pub fn new(module: LoadedModule) -> Self {
        Self(RwLock::new(Held {
            current: module,
            others: Vec::new(),
        }))
    }

    fn read(&self) -> RwLockReadGuard<'_, Held> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Held> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The version `id`, or the current one when `None`; `None` when `id`
    /// is not held.
    pub fn module(&self, id: Option<ModuleId>) -> Option<LoadedModule> {
        let held = self.read();
        match id {
            None => Some(held.current.clone()),
            Some(id) => held.get(id).cloned(),
        }
    }

    /// The current module's method names.
    pub fn methods(&self) -> Vec<String> {
        self.read().current.methods().to_vec()
    }

    /// Hex SHA-256 of the current module.
    pub fn hash(&self) -> String {
        self.read().current.hash().to_owned()
    }

    /// The current module's hash, functions and cacheable functions.
    pub fn summary(&self) -> Arc<ModuleSummary> {
        self.read().current.summary().clone()
    }

    /// Every version held, the current one first.
    pub fn loaded(&self) -> Vec<Arc<ModuleSummary>> {
        self.read().all().map(|m| m.summary().clone()).collect()
    }

    /// Whether version `id` is held.
    pub fn holds(&self, id: ModuleId) -> bool {
        self.read().get(id).is_some()
    }

    /// Whether `method` can run on `version` (on the current module when
    /// `None`).
    pub fn serves(&self, method: &str, version: Option<ModuleId>) -> bool {
        let held = self.read();
        let module = match version {
            Some(id) => held.get(id),
            None => Some(&held.current),
        };
        module.is_some_and(|m| m.methods().iter().any(|name| name == method))
    }

    /// Whether any version held has `method`.
    pub fn serves_anywhere(&self, method: &str) -> bool {
        self.read()
            .all()
            .any(|m| m.methods().iter().any(|name| name == method))
    }

    /// Adds a version calls may name; the current one stays current.
    pub fn install(&self, module: LoadedModule) {
        let mut held = self.write();
        if held.get(module.id()).is_none() {
            tracing::info!(module = %module.id().short(), methods = ?module.methods(), "module version loaded");
            held.others.push(module);
        }
    }

    /// Makes the held version `id` current; false when it is not held.
    pub fn set_current(&self, id: ModuleId) -> bool {
        let mut held = self.write();
        if held.current.id() == id {
            return true;
        }
        let Some(at) = held.others.iter().position(|m| m.id() == id) else {
            return false;
        };
        let next = held.others.swap_remove(at);
        let previous = std::mem::replace(&mut held.current, next);
        held.others.push(previous);
        true
    }

    /// Drops the versions other than the current one that are not in
    /// `keep`. Calls running on a dropped version finish on it: each holds
    /// its module.
    pub fn retain(&self, keep: &[ModuleId]) {
        self.write().others.retain(|m| {
            let kept = keep.contains(&m.id());
            if !kept {
                tracing::info!(module = %m.id().short(), "module version dropped");
            }
            kept
        });
    }
}
