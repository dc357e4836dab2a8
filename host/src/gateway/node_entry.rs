//! One node as the gateway sees it: its health, ejections, the versions it
//! holds and the calls outstanding on it. The registry holds many.

use crate::manifest::ModuleSummary;
use crate::modules::ModuleId;
use crate::node::{Announcement, WorkerPool};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Longest a node stays ejected after repeated failures.
const MAX_EJECTION: Duration = Duration::from_secs(30);

/// How a node came to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Listed with `--node`; never expires, only health decides.
    Static,
    /// Joined at runtime; expires when its heartbeats stop.
    Joined,
    /// An address a `--discover` name resolved to; only health decides,
    /// and it leaves when the name stops resolving to it.
    Discovered,
    /// A worker pool in the gateway's own process (`madrpc serve`): calls
    /// reach it without a network hop, and it is always healthy.
    Local,
}

/// One node.
#[derive(Debug)]
pub struct NodeEntry {
    /// Base URL, without a trailing slash.
    pub url: String,
    /// How it was added.
    pub origin: Origin,
    /// The pool itself, for a local node.
    pub pool: Option<Arc<WorkerPool>>,
    /// The call channel to a node in another process.
    pub(super) link: super::channel::Link,
    /// For a joined node: how long after its last accepted heartbeat it
    /// stops taking calls.
    heartbeat_expiry: Duration,
    in_flight: AtomicUsize,
    state: Mutex<Health>,
    /// Wakes the calls in flight on the node when it is found failed, so
    /// they are sent elsewhere at once rather than at their timeout.
    failed: Notify,
}

#[derive(Debug)]
pub(super) struct Health {
    healthy: bool,
    pub(super) ejected_until: Option<Instant>,
    ejections: u32,
    last_seen: Instant,
    pub(super) methods: Vec<String>,
    /// The node's module as its last heartbeat (or its pool) described
    /// it; `None` when unknown, and then its results are not cached.
    pub(super) module: Option<Arc<ModuleSummary>>,
    /// Every version the node said it holds, with its functions: where a
    /// call pinned to a version may go.
    loaded: Vec<(ModuleId, Arc<ModuleSummary>)>,
    /// Versions the node said it could not load, and why.
    failed: std::collections::BTreeMap<ModuleId, String>,
}

/// A node's state as reported by `GET /v1/nodes`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    /// Base URL.
    pub url: String,
    /// `static`, `joined` or `local`.
    pub origin: &'static str,
    /// Whether it takes calls now.
    pub available: bool,
    /// Calls sent to it and not yet answered.
    pub in_flight: usize,
    /// Functions it serves.
    pub methods: Vec<String>,
    /// Ejections in a row since its last success.
    pub consecutive_failures: u32,
    /// The hash of the module it serves, when the gateway knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Every module version it holds (the current one included).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
}

impl NodeEntry {
    /// `heartbeat_expiry` applies to a joined node.
    pub(super) fn new(
        url: String,
        origin: Origin,
        healthy: bool,
        methods: Vec<String>,
        heartbeat_expiry: Duration,
    ) -> Self {
        Self {
            url,
            origin,
            pool: None,
            link: super::channel::Link::default(),
            heartbeat_expiry,
            in_flight: AtomicUsize::new(0),
            failed: Notify::new(),
            state: Mutex::new(Health {
                healthy,
                ejected_until: None,
                ejections: 0,
                last_seen: Instant::now(),
                methods,
                module: None,
                loaded: Vec::new(),
                failed: Default::default(),
            }),
        }
    }

    pub(super) fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls outstanding on this node.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks a call as outstanding until the guard drops.
    pub fn begin_call(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Completes when the node is found failed (ejected, failing its health
    /// check, or silent past its heartbeat expiry). Create it before
    /// sending the call: a failure found after that wakes it.
    pub fn failure(&self) -> Notified<'_> {
        self.failed.notified()
    }

    /// Wakes every call waiting on [`NodeEntry::failure`].
    pub(super) fn fail_calls_in_flight(&self) {
        if self.in_flight() > 0 {
            tracing::warn!(node = %self.url, calls = self.in_flight(), "sending the calls in flight on a failed node elsewhere");
        }
        self.failed.notify_waiters();
    }

    /// Whether the node may take a call now. A joined node also needs a
    /// recent accepted heartbeat: membership comes from the heartbeats
    /// alone, never from a passing health check.
    pub fn is_available(&self, now: Instant) -> bool {
        let health = self.health();
        self.available(&health, now)
    }

    /// Whether the node may take a call of `method` on `version` now: it
    /// is available and serves the method, on that version when one is
    /// named (a node that reported no methods yet is not asked).
    pub fn can_take(&self, method: &str, version: Option<ModuleId>, now: Instant) -> bool {
        let health = self.health();
        if !self.available(&health, now) {
            return false;
        }
        if let Some(pool) = &self.pool {
            return pool.versions().serves(method, version);
        }
        match version {
            None => health.methods.iter().any(|m| m == method),
            Some(id) => health
                .loaded
                .iter()
                .any(|(held, module)| *held == id && module.methods.iter().any(|m| m == method)),
        }
    }

    /// Why the node could not load version `id`, when it said so.
    pub fn load_failure(&self, id: ModuleId) -> Option<String> {
        self.health().failed.get(&id).cloned()
    }

    /// Whether the node holds module version `id`.
    pub fn holds(&self, id: ModuleId) -> bool {
        match &self.pool {
            Some(pool) => pool.versions().holds(id),
            None => self.health().loaded.iter().any(|(held, _)| *held == id),
        }
    }

    fn available(&self, health: &Health, now: Instant) -> bool {
        health.healthy
            && health.ejected_until.is_none_or(|until| now >= until)
            && (self.origin != Origin::Joined
                || now.saturating_duration_since(health.last_seen) < self.heartbeat_expiry)
    }

    /// The node answered: clear its failure history.
    pub fn record_success(&self) {
        let mut health = self.health();
        health.ejections = 0;
        health.ejected_until = None;
        health.healthy = true;
    }

    /// The node failed to answer: take it out of rotation for a backoff
    /// that doubles with each consecutive ejection (1 s, 2 s, ... 30 s),
    /// and send the calls in flight on it elsewhere.
    pub fn eject(&self) {
        let mut health = self.health();
        // Calls that fail together, e.g. all those in flight when the node
        // dropped off, are one failure, not one each.
        if health
            .ejected_until
            .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        let backoff = Duration::from_secs(1 << health.ejections.min(5)).min(MAX_EJECTION);
        health.ejections += 1;
        health.healthy = false;
        health.ejected_until = Some(Instant::now() + backoff);
        drop(health);
        tracing::warn!(node = %self.url, backoff_ms = backoff.as_millis() as u64, "node ejected");
        crate::telemetry::metrics::record_ejection(&self.url);
        self.fail_calls_in_flight();
    }

    /// Ends the current ejection as if its time had run out, keeping the
    /// count of ejections (tests of the backoff sequence).
    #[cfg(test)]
    pub(crate) fn end_ejection(&self) {
        let mut health = self.health();
        if health.ejected_until.is_some() {
            health.ejected_until = Some(Instant::now());
        }
    }

    /// Whether a health check is due (not while an ejection lasts; never
    /// for a local node).
    pub fn due_for_check(&self, now: Instant) -> bool {
        self.origin != Origin::Local && self.health().ejected_until.is_none_or(|until| now >= until)
    }

    /// Records a health check's outcome. It says whether the node is up,
    /// not whether it is still a member: a joined node's `last_seen` moves
    /// only with its heartbeats, so a node whose token was revoked leaves
    /// even while it answers `/health`.
    pub fn record_check(&self, outcome: CheckOutcome) {
        let mut health = self.health();
        match outcome {
            CheckOutcome::Passed(Checked { methods, module }) => {
                if !health.healthy {
                    tracing::info!(node = %self.url, "node healthy");
                }
                health.healthy = true;
                health.ejected_until = None;
                if self.origin != Origin::Joined {
                    health.last_seen = Instant::now();
                }
                health.methods = methods;
                // A joined node's heartbeats say which module it runs.
                if self.origin != Origin::Joined && health.module.as_deref() != module.as_ref() {
                    health.module = module.map(Arc::new);
                }
            }
            // Out of rotation, but a failure of nothing: sending its calls
            // in flight elsewhere would cancel them on a node about to
            // finish them, and run them twice.
            CheckOutcome::Draining => {
                if health.healthy {
                    tracing::info!(node = %self.url, in_flight = self.in_flight(), "node draining: no new calls; its calls in flight finish there");
                }
                health.healthy = false;
            }
            CheckOutcome::Failed => {
                let was_healthy = health.healthy;
                health.healthy = false;
                drop(health);
                if was_healthy {
                    tracing::warn!(node = %self.url, "node failed its health check");
                }
                self.fail_calls_in_flight();
            }
        }
    }

    pub(super) fn heartbeat(&self, announcement: Announcement) {
        let module = announcement.checked_module();
        let mut health = self.health();
        health.last_seen = Instant::now();
        health.methods = announcement.methods;
        health.loaded = loaded_of(announcement.loaded);
        health.failed = announcement.failed;
        if health.module.as_deref() != module.as_ref() {
            health.module = module.map(Arc::new);
        }
        if health
            .ejected_until
            .is_none_or(|until| Instant::now() >= until)
        {
            health.healthy = true;
        }
    }

    pub(super) fn last_seen(&self) -> Instant {
        self.health().last_seen
    }

    pub(super) fn methods(&self) -> Vec<String> {
        self.health().methods.clone()
    }

    /// The node's module, when it said.
    pub fn module(&self) -> Option<Arc<ModuleSummary>> {
        self.health().module.clone()
    }

    pub(super) fn status(&self, now: Instant) -> NodeStatus {
        let (consecutive_failures, announced, versions) = {
            let health = self.health();
            let versions = health.loaded.iter().map(|(id, _)| id.to_string()).collect();
            (health.ejections, health.module.clone(), versions)
        };
        NodeStatus {
            url: self.url.clone(),
            origin: match self.origin {
                Origin::Static => "static",
                Origin::Joined => "joined",
                Origin::Discovered => "discovered",
                Origin::Local => "local",
            },
            available: self.is_available(now),
            in_flight: self.in_flight(),
            methods: self.methods(),
            consecutive_failures,
            module: match &self.pool {
                Some(pool) => Some(pool.versions().hash()),
                None => announced.map(|m| m.hash.clone()),
            },
            versions: match &self.pool {
                Some(pool) => pool
                    .versions()
                    .loaded()
                    .iter()
                    .map(|m| m.hash.clone())
                    .collect(),
                None => versions,
            },
        }
    }
}

/// The versions an announcement lists, those with a valid id.
fn loaded_of(loaded: Vec<ModuleSummary>) -> Vec<(ModuleId, Arc<ModuleSummary>)> {
    loaded
        .into_iter()
        .filter_map(|m| Some((ModuleId::parse(&m.hash)?, Arc::new(m))))
        .collect()
}

/// How a health check ended.
#[derive(Debug, Clone)]
pub enum CheckOutcome {
    /// The node answered as a node that takes calls.
    Passed(Checked),
    /// The node answered that it drains: it takes no new calls, and its
    /// calls in flight finish there.
    Draining,
    /// No answer, or not a node's.
    Failed,
}

/// What a passing health check found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// The functions the node serves.
    pub methods: Vec<String>,
    /// The node's module, when it said (a node's `/health` reports it).
    pub module: Option<ModuleSummary>,
}

/// Keeps a call counted as outstanding on its node.
pub struct InFlight(Arc<NodeEntry>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
