//! The gateway's view of its nodes: who they are, what they serve, whether
//! they may take calls, and how many calls each has outstanding.

use crate::manifest::ModuleSummary;
use crate::modules::ModuleId;
use crate::node::{Announcement, WorkerPool};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Longest a node stays ejected after repeated failures.
const MAX_EJECTION: Duration = Duration::from_secs(30);

/// How long a joined node stays in rotation after its last accepted
/// heartbeat, unless the registry is told otherwise.
const DEFAULT_HEARTBEAT_EXPIRY: Duration = Duration::from_secs(3);

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
struct Health {
    healthy: bool,
    ejected_until: Option<Instant>,
    ejections: u32,
    last_seen: Instant,
    methods: Vec<String>,
    /// The node's module as its last heartbeat (or its pool) described
    /// it; `None` when unknown, and then its results are not cached.
    module: Option<Arc<ModuleSummary>>,
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
    fn new(url: String, origin: Origin, healthy: bool, methods: Vec<String>) -> Self {
        Self {
            url,
            origin,
            pool: None,
            heartbeat_expiry: DEFAULT_HEARTBEAT_EXPIRY,
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

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
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
    fn fail_calls_in_flight(&self) {
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
            return pool.serves(method, version);
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
            Some(pool) => pool.holds(id),
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
    pub fn record_check(&self, outcome: Option<Checked>) {
        let mut health = self.health();
        match outcome {
            Some(Checked { methods, module }) => {
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
            None => {
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

    fn heartbeat(&self, announcement: Announcement) {
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

    fn last_seen(&self) -> Instant {
        self.health().last_seen
    }

    fn methods(&self) -> Vec<String> {
        self.health().methods.clone()
    }

    /// The node's module, when it said.
    pub fn module(&self) -> Option<Arc<ModuleSummary>> {
        self.health().module.clone()
    }

    fn status(&self, now: Instant) -> NodeStatus {
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
                Some(pool) => Some(pool.module_hash()),
                None => announced.map(|m| m.hash.clone()),
            },
            versions: match &self.pool {
                Some(pool) => pool.loaded().iter().map(|m| m.hash.clone()).collect(),
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

/// All nodes the gateway knows.
#[derive(Debug)]
pub struct Registry {
    nodes: RwLock<Vec<Arc<NodeEntry>>>,
    /// How long a joined node stays after its last accepted heartbeat.
    heartbeat_expiry: Duration,
    /// The union of the nodes' methods, recomputed when nodes report in, so
    /// the call path reads it without allocating.
    methods: RwLock<Arc<Vec<String>>>,
}

impl Registry {
    /// A registry with the static nodes (already checked by the gateway's
    /// node policy), unhealthy until their first check.
    pub fn new(static_nodes: &[String]) -> Self {
        let nodes = static_nodes
            .iter()
            .map(|url| {
                Arc::new(NodeEntry::new(
                    normalize(url),
                    Origin::Static,
                    false,
                    Vec::new(),
                ))
            })
            .collect();
        Self {
            nodes: RwLock::new(nodes),
            heartbeat_expiry: DEFAULT_HEARTBEAT_EXPIRY,
            methods: RwLock::default(),
        }
    }

    /// Sets how long a joined node stays in rotation after its last
    /// accepted heartbeat (the gateway uses three health intervals).
    pub fn with_heartbeat_expiry(mut self, expiry: Duration) -> Self {
        self.heartbeat_expiry = expiry;
        self
    }

    /// A snapshot of the nodes.
    pub fn nodes(&self) -> Vec<Arc<NodeEntry>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds a worker pool of this process as node `local:N`.
    pub fn add_local(&self, pool: Arc<WorkerPool>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let index = nodes.iter().filter(|n| n.origin == Origin::Local).count();
        let mut node = NodeEntry::new(
            format!("local:{index}"),
            Origin::Local,
            true,
            pool.methods(),
        );
        node.health().module = Some(pool.module_summary());
        node.pool = Some(pool);
        nodes.push(Arc::new(node));
        drop(nodes);
        self.refresh_methods();
    }

    /// Adds a node that announced itself, or refreshes its heartbeat. The
    /// URL must have passed the gateway's node policy.
    pub fn heartbeat(&self, announcement: Announcement) {
        let url = normalize(&announcement.url);
        if let Some(node) = self.nodes().into_iter().find(|n| n.url == url) {
            node.heartbeat(announcement);
            self.refresh_methods();
            return;
        }
        tracing::info!(node = %url, "node joined");
        let node = NodeEntry {
            heartbeat_expiry: self.heartbeat_expiry,
            ..NodeEntry::new(url, Origin::Joined, true, Vec::new())
        };
        node.heartbeat(announcement);
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(node));
        self.refresh_methods();
    }

    /// Removes a joined node that said it is leaving.
    pub fn leave(&self, url: &str) {
        let url = normalize(url);
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let before = nodes.len();
        nodes.retain(|n| !(n.url == url && n.origin == Origin::Joined));
        if nodes.len() < before {
            tracing::info!(node = %url, "node left");
        }
        drop(nodes);
        self.refresh_methods();
    }

    /// Makes the discovered nodes exactly `urls` (already checked by the
    /// node policy). A new address waits for its first passing health
    /// check before it takes calls; one that is gone takes no new calls,
    /// while the calls in flight on it finish. An address already known
    /// another way (`--node`, a join) stays as it is.
    pub fn set_discovered(&self, urls: &[String]) {
        let wanted: Vec<String> = urls.iter().map(|url| normalize(url)).collect();
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        nodes.retain(|node| {
            let keep = node.origin != Origin::Discovered || wanted.contains(&node.url);
            if !keep {
                tracing::info!(node = %node.url, in_flight = node.in_flight(), "node no longer discovered; draining it");
            }
            keep
        });
        for url in wanted {
            if !nodes.iter().any(|node| node.url == url) {
                tracing::info!(node = %url, "node discovered; health checking it");
                nodes.push(Arc::new(NodeEntry::new(
                    url,
                    Origin::Discovered,
                    false,
                    Vec::new(),
                )));
            }
        }
        drop(nodes);
        self.refresh_methods();
    }

    /// Drops joined nodes not heard from within the heartbeat expiry.
    pub fn expire(&self) {
        let expiry = self.heartbeat_expiry;
        let now = Instant::now();
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        nodes.retain(|node| {
            let keep =
                node.origin != Origin::Joined || now.duration_since(node.last_seen()) < expiry;
            if !keep {
                tracing::warn!(node = %node.url, "node stopped heartbeating; removed");
                node.fail_calls_in_flight();
            }
            keep
        });
        drop(nodes);
        self.refresh_methods();
    }

    /// The methods served by any node, sorted and deduplicated.
    pub fn methods(&self) -> Arc<Vec<String>> {
        self.methods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the local nodes' functions and module again from their pools,
    /// after a deploy changed what they serve.
    pub fn refresh_local(&self) {
        for node in self.nodes() {
            if let Some(pool) = &node.pool {
                let mut health = node.health();
                health.methods = pool.methods();
                health.module = Some(pool.module_summary());
            }
        }
        self.refresh_methods();
    }

    /// Recomputes [`Registry::methods`] after nodes reported in or left.
    pub fn refresh_methods(&self) {
        let mut methods: Vec<String> = self.nodes().iter().flat_map(|n| n.methods()).collect();
        methods.sort();
        methods.dedup();
        *self.methods.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(methods);
    }

    /// Every node's status.
    pub fn statuses(&self) -> Vec<NodeStatus> {
        let now = Instant::now();
        self.nodes().iter().map(|n| n.status(now)).collect()
    }

    /// How many nodes may take calls now.
    pub fn available_count(&self) -> usize {
        let now = Instant::now();
        self.nodes().iter().filter(|n| n.is_available(now)).count()
    }
}

/// A node URL without its trailing slash.
fn normalize(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(methods: &[&str]) -> Checked {
        Checked {
            methods: methods.iter().map(|m| m.to_string()).collect(),
            module: None,
        }
    }

    fn joined(registry: &Registry, url: &str) -> Arc<NodeEntry> {
        registry.heartbeat(Announcement {
            url: url.into(),
            methods: vec!["m".into()],
            module: None,
            loaded: Vec::new(),
            failed: Default::default(),
        });
        registry.nodes().into_iter().find(|n| n.url == url).unwrap()
    }

    #[test]
    fn a_passing_health_check_does_not_keep_a_silent_joined_node() {
        let expiry = Duration::from_secs(3);
        let registry = Registry::new(&[]).with_heartbeat_expiry(expiry);
        let node = joined(&registry, "http://a:1");
        assert!(node.is_available(Instant::now()));
        node.record_check(Some(checked(&["m"])));
        assert!(!node.is_available(Instant::now() + expiry));
        let registry = Registry::new(&[]).with_heartbeat_expiry(Duration::ZERO);
        joined(&registry, "http://a:1").record_check(Some(checked(&["m"])));
        registry.expire();
        assert!(registry.nodes().is_empty());
    }

    #[test]
    fn failures_during_an_ejection_do_not_lengthen_it() {
        let registry = Registry::new(&[]);
        let node = joined(&registry, "http://a:1");
        for _ in 0..5 {
            node.eject();
        }
        let later = Instant::now() + Duration::from_millis(1100);
        assert!(
            node.health()
                .ejected_until
                .is_some_and(|until| until < later)
        );
    }

    #[tokio::test]
    async fn a_failed_health_check_wakes_the_calls_in_flight() {
        let registry = Registry::new(&[]);
        let node = joined(&registry, "http://a:1");
        let failure = node.failure();
        node.record_check(None);
        tokio::time::timeout(Duration::from_secs(1), failure)
            .await
            .expect("the call waiting on the node was woken");
    }

    #[test]
    fn discovered_nodes_wait_for_a_check_and_leave_with_their_address() {
        let registry = Registry::new(&["http://s:1".into()]);
        registry.set_discovered(&["http://d:1".into(), "http://s:1/".into()]);
        assert_eq!(
            registry.nodes().len(),
            2,
            "a --node address is not added twice"
        );
        let found = registry.nodes()[1].clone();
        assert_eq!(found.origin, Origin::Discovered);
        assert!(!found.is_available(Instant::now()));
        found.record_check(Some(checked(&["m"])));
        assert!(found.is_available(Instant::now()));
        let call = found.begin_call();
        registry.set_discovered(&[]);
        assert_eq!(registry.nodes().len(), 1, "only the discovered node left");
        assert_eq!(found.in_flight(), 1, "its call in flight is untouched");
        drop(call);
    }

    #[test]
    fn a_joined_node_that_leaves_stays_when_dns_still_names_it() {
        let registry = Registry::new(&[]);
        joined(&registry, "http://j:1");
        registry.set_discovered(&["http://j:1".into()]);
        assert_eq!(registry.nodes()[0].origin, Origin::Joined);
        registry.leave("http://j:1");
        registry.set_discovered(&["http://j:1".into()]);
        let nodes = registry.nodes();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].origin, Origin::Discovered);
    }

    #[test]
    fn a_static_node_stays_while_its_checks_pass() {
        let registry = Registry::new(&["http://s:1".into()]).with_heartbeat_expiry(Duration::ZERO);
        let fixed = registry.nodes()[0].clone();
        assert!(!fixed.is_available(Instant::now()));
        fixed.record_check(Some(checked(&[])));
        registry.expire();
        assert_eq!(registry.nodes().len(), 1);
        assert!(fixed.is_available(Instant::now() + Duration::from_secs(60)));
    }
}
