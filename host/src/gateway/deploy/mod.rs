//! Deploys: which module version calls start on, and switching it without
//! a failed call. A new version is first handed to every node (local pools
//! load it at once; joined nodes learn it from their heartbeat's answer,
//! fetch it and say when they hold it) while calls keep starting on the
//! current one. Only when every available node holds it does one pointer
//! flip. Every call is pinned at the gateway to the version current when
//! it started, and its sub-calls carry the pin, so calls in flight finish
//! on their version; nodes keep a version while the gateway still wants
//! it (the current, the previous for a quick rollback, and any that calls
//! in flight use).

use super::registry::{Origin, Registry};
use crate::modules::{ModuleId, Store, StoreError, Version};
use crate::node::Versions;
use crate::rpc::CallBudget;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Longest a deploy waits for every node to load the new version: a first
/// compile of a large module on a busy node takes several seconds.
pub const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);

/// A version calls are running on, with how many client calls started on
/// it and have not finished.
#[derive(Debug)]
struct Live {
    version: Arc<Version>,
    calls: AtomicUsize,
}

/// Keeps a client call counted on its version until it finishes.
pub struct Pin(Arc<Live>);

impl Drop for Pin {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a deploy or rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The version could not be kept.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local node could not load the version.
    #[error("the grid cannot load this module: {0}")]
    Load(String),
    /// Nodes did not load the version in time; nothing was switched.
    #[error(
        "nodes {nodes} did not load module version {id} within {} s, so calls stay on the current version; check those nodes' logs, then deploy again",
        DEPLOY_TIMEOUT.as_secs()
    )]
    NodesLagging {
        /// The version.
        id: String,
        /// The nodes without it.
        nodes: String,
    },
    /// Nodes that cannot take a deploy serve calls.
    #[error(
        "nodes {0} were given with --node or found with --discover: they do not tell the gateway which versions they hold, so they cannot take a deploy; roll them out with their own --module (or your orchestrator), or start them with --join"
    )]
    NodesCannotFollow(String),
    /// A rollback with no earlier version.
    #[error(
        "there is no earlier version to roll back to: this grid has had one version since its store began"
    )]
    NothingToRollBack,
}

/// What a deploy or rollback did.
#[derive(Debug, serde::Serialize)]
pub struct Activated {
    /// The version calls start on now.
    pub id: ModuleId,
    /// The script it was built from.
    pub script: String,
    /// Its functions.
    pub methods: Vec<String>,
    /// The version it replaced.
    pub previous: Option<ModuleId>,
    /// Nodes that hold it.
    pub nodes: usize,
}

/// The versions of one gateway.
pub struct Deployments {
    store: Mutex<Store>,
    current: RwLock<Option<Arc<Live>>>,
    /// Versions that were current, while client calls still run on them.
    retired: Mutex<Vec<Arc<Live>>>,
    /// The version being handed to the nodes, before it becomes current.
    staged: Mutex<Option<ModuleId>>,
    /// One deploy or rollback at a time.
    turn: tokio::sync::Mutex<()>,
}

impl Deployments {
    /// Serves the store's current version, if it has one.
    pub fn new(store: Store) -> Self {
        let current = store.current().map(|version| {
            crate::telemetry::metrics::set_module(&version.id.to_string(), None);
            Arc::new(Live {
                version,
                calls: AtomicUsize::new(0),
            })
        });
        Self {
            store: Mutex::new(store),
            current: RwLock::new(current),
            retired: Mutex::default(),
            staged: Mutex::default(),
            turn: tokio::sync::Mutex::default(),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pins a client's call to the current version, counting it there
    /// until the returned guard drops. A call already pinned (a sub-call,
    /// which carries its parent's version) is left as it is.
    pub fn pin(&self, budget: &mut CallBudget) -> Option<Pin> {
        if budget.module.is_some() {
            return None;
        }
        let live = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        live.calls.fetch_add(1, Ordering::AcqRel);
        budget.module = Some(live.version.id);
        Some(Pin(live))
    }

    /// The version calls start on now.
    pub fn current(&self) -> Option<Arc<Version>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|live| live.version.clone())
    }

    /// A version this gateway knows: current, kept, or still in use.
    pub fn version(&self, id: ModuleId) -> Option<Arc<Version>> {
        if let Some(current) = self.current().filter(|v| v.id == id) {
            return Some(current);
        }
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = retired.iter().find(|l| l.version.id == id) {
            return Some(live.version.clone());
        }
        drop(retired);
        self.store().get(id)
    }

    /// The versions every node should hold, and the current one; `None`
    /// before the first deploy starts (nodes keep what they were started
    /// with).
    pub fn wanted(&self) -> Option<Versions> {
        let current = self.current().map(|v| v.id);
        let staged = *self.staged.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_none() && staged.is_none() {
            return None;
        }
        let mut wanted: Vec<ModuleId> = current.into_iter().chain(staged).collect();
        wanted.extend(self.store().previous().map(|v| v.id));
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|live| live.calls.load(Ordering::Acquire) > 0);
        wanted.extend(retired.iter().map(|live| live.version.id));
        drop(retired);
        wanted.sort_unstable();
        wanted.dedup();
        Some(Versions { current, wanted })
    }

    /// The versions kept, newest first, as `GET /v1/modules` lists them.
    pub fn list(&self) -> serde_json::Value {
        let store = self.store();
        let current = store.current().map(|v| v.id);
        let versions: Vec<serde_json::Value> = store
            .list()
            .iter()
            .map(|v| {
                serde_json::json!({
                    "id": v.id,
                    "script": v.manifest.script,
                    "methods": v.manifest.methods,
                    "size": v.wasm.len(),
                    "deployed_at": store.deployed_at(v.id),
                    "current": Some(v.id) == current,
                })
            })
            .collect();
        serde_json::json!({ "current": current, "versions": versions })
    }

    /// Makes `version` current at once, without handing it to nodes: for
    /// the module `serve` starts with, which its local nodes already run.
    pub fn start_with(&self, version: Arc<Version>) -> Result<(), DeployError> {
        let id = version.id;
        let mut store = self.store();
        store.put(version.clone())?;
        store.make_current(id)?;
        drop(store);
        crate::telemetry::metrics::set_module(&id.to_string(), None);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Live {
            version,
            calls: AtomicUsize::new(0),
        }));
        Ok(())
    }

    /// Rolls back to the version before the current one.
    pub async fn rollback(&self, registry: &Registry) -> Result<Activated, DeployError> {
        let previous = self.store().previous();
        let Some(previous) = previous else {
            crate::telemetry::metrics::record_deploy("rollback", "failed");
            return Err(DeployError::NothingToRollBack);
        };
        self.activate(previous, registry, "rollback").await
    }

    /// Hands `version` to every node, then makes it current (see the
    /// module's doc). `action` names it in logs and metrics.
    pub async fn activate(
        &self,
        version: Arc<Version>,
        registry: &Registry,
        action: &'static str,
    ) -> Result<Activated, DeployError> {
        let _turn = self.turn.lock().await;
        let outcome = self.hand_out_and_switch(version, registry).await;
        match &outcome {
            Ok(done) => {
                crate::telemetry::metrics::record_deploy(action, "activated");
                tracing::info!(action, module = %done.id, previous = ?done.previous.map(|p| p.short()), methods = ?done.methods, nodes = done.nodes, "module version activated");
            }
            Err(error) => {
                crate::telemetry::metrics::record_deploy(action, "failed");
                tracing::warn!(action, %error, "module version not activated");
            }
        }
        outcome
    }

    async fn hand_out_and_switch(
        &self,
        version: Arc<Version>,
        registry: &Registry,
    ) -> Result<Activated, DeployError> {
        let id = version.id;
        self.store().put(version.clone())?;
        *self.staged.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        let handed: Result<usize, DeployError> = match self.hand_out(&version, registry).await {
            Ok(nodes) => self
                .store()
                .make_current(id)
                .map(|()| nodes)
                .map_err(DeployError::from),
            Err(error) => Err(error),
        };
        let nodes = match handed {
            Ok(nodes) => nodes,
            Err(error) => {
                *self.staged.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return Err(error);
            }
        };
        let replaced = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(Live {
                version: version.clone(),
                calls: AtomicUsize::new(0),
            }));
        let previous = replaced.as_ref().map(|live| live.version.id);
        if let Some(replaced) = replaced.filter(|live| live.version.id != id) {
            self.retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(replaced);
        }
        // Unstaged only now: until the pointer flipped, the store already
        // names the old version as the previous one, and the new one must
        // stay wanted in between.
        *self.staged.lock().unwrap_or_else(|p| p.into_inner()) = None;
        crate::telemetry::metrics::set_module(
            &id.to_string(),
            previous.map(|p| p.to_string()).as_deref(),
        );
        // Local nodes switch now; joined nodes at their next heartbeat,
        // which only matters to calls sent to them directly.
        if let Some(wanted) = self.wanted() {
            for node in registry.nodes() {
                if let Some(pool) = &node.pool {
                    pool.versions().set_current(id);
                    pool.versions().retain(&wanted.wanted);
                }
            }
        }
        registry.refresh_local();
        Ok(Activated {
            id,
            script: version.manifest.script.clone(),
            methods: version.manifest.methods.clone(),
            previous: previous.filter(|p| *p != id),
            nodes,
        })
    }

    /// Loads `version` into the local pools and waits until every
    /// available joined node holds it; the number of nodes that do.
    async fn hand_out(
        &self,
        version: &Arc<Version>,
        registry: &Registry,
    ) -> Result<usize, DeployError> {
        let now = Instant::now();
        let fixed: Vec<String> = registry
            .nodes()
            .iter()
            .filter(|n| {
                matches!(n.origin, Origin::Static | Origin::Discovered) && n.is_available(now)
            })
            .map(|n| n.url.clone())
            .collect();
        if !fixed.is_empty() {
            return Err(DeployError::NodesCannotFollow(fixed.join(", ")));
        }
        let pools: Vec<_> = registry
            .nodes()
            .into_iter()
            .filter_map(|n| n.pool.clone())
            .filter(|pool| !pool.versions().holds(version.id))
            .collect();
        if let Some(first) = pools.first() {
            let runtime = first.runtime().clone();
            let wasm = version.wasm.clone();
            let loaded = tokio::task::spawn_blocking(move || runtime.load(&wasm))
                .await
                .map_err(|e| DeployError::Load(e.to_string()))?
                .map_err(|e| DeployError::Load(e.to_string()))?;
            for pool in &pools {
                pool.versions().install(loaded.clone());
            }
        }
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let nodes = registry.nodes();
            let lagging: Vec<&str> = nodes
                .iter()
                .filter(|n| {
                    n.origin == Origin::Joined && n.is_available(now) && !n.holds(version.id)
                })
                .map(|n| n.url.as_str())
                .collect();
            if lagging.is_empty() {
                return Ok(nodes.iter().filter(|n| n.holds(version.id)).count());
            }
            if let Some((node, why)) = nodes
                .iter()
                .find_map(|n| Some((n.url.as_str(), n.load_failure(version.id)?)))
            {
                return Err(DeployError::Load(format!("node {node}: {why}")));
            }
            if started.elapsed() >= DEPLOY_TIMEOUT {
                return Err(DeployError::NodesLagging {
                    id: version.id.short(),
                    nodes: lagging.join(", "),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests;
