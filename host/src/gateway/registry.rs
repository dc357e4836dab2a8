//! The gateway's view of its nodes: who they are, what they serve, whether
//! they may take calls, and how many calls each has outstanding.

pub use super::node_entry::{CheckOutcome, Checked, NodeEntry, NodeStatus, Origin};
use crate::node::{Announcement, WorkerPool};
use std::sync::Arc;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a joined node stays in rotation after its last accepted
/// heartbeat, unless the registry is told otherwise.
const DEFAULT_HEARTBEAT_EXPIRY: Duration = Duration::from_secs(3);

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
                    DEFAULT_HEARTBEAT_EXPIRY,
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
            pool.versions().methods(),
            self.heartbeat_expiry,
        );
        node.health().module = Some(pool.versions().summary());
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
        let node = NodeEntry::new(url, Origin::Joined, true, Vec::new(), self.heartbeat_expiry);
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
                    self.heartbeat_expiry,
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
                health.methods = pool.versions().methods();
                health.module = Some(pool.versions().summary());
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
        node.record_check(CheckOutcome::Passed(checked(&["m"])));
        assert!(!node.is_available(Instant::now() + expiry));
        let registry = Registry::new(&[]).with_heartbeat_expiry(Duration::ZERO);
        joined(&registry, "http://a:1").record_check(CheckOutcome::Passed(checked(&["m"])));
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
        node.record_check(CheckOutcome::Failed);
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
        found.record_check(CheckOutcome::Passed(checked(&["m"])));
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
        fixed.record_check(CheckOutcome::Passed(checked(&[])));
        registry.expire();
        assert_eq!(registry.nodes().len(), 1);
        assert!(fixed.is_available(Instant::now() + Duration::from_secs(60)));
    }

    /// How long a node stays out after `eject` (until its next health check
    /// is due), to within 10 ms.
    fn backoff(node: &NodeEntry) -> Duration {
        // The previous ejection has run out: this failure is a new one.
        node.end_ejection();
        let start = Instant::now();
        node.eject();
        let mut low = Duration::ZERO;
        let mut high = Duration::from_secs(60);
        while high - low > Duration::from_millis(10) {
            let mid = (low + high) / 2;
            if node.due_for_check(start + mid) {
                high = mid;
            } else {
                low = mid;
            }
        }
        high
    }

    #[test]
    fn ejection_backs_off_from_one_to_thirty_seconds_and_resets_on_success() {
        let registry = Registry::new(&[]);
        let node = joined(&registry, "http://a");
        let seconds: Vec<u64> = (0..8)
            .map(|_| (backoff(&node).as_millis() as u64 + 500) / 1000)
            .collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 30, 30, 30]);
        node.record_success();
        assert_eq!((backoff(&node).as_millis() + 500) / 1000, 1);
    }
}
