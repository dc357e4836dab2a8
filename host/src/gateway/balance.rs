//! Power-of-two-choices on outstanding requests: pick two available nodes
//! at random and send the call to the one with fewer calls in flight.
//!
//! Written here rather than taken from `tower::balance` because a retry
//! must exclude the node that just failed, and ejection state must live on
//! the same node records the health checks update; tower's balancer exposes
//! neither.

use super::registry::NodeEntry;
use crate::modules::ModuleId;
use rand::RngExt;
use std::sync::Arc;
use std::time::Instant;

/// Picks a node that serves `method` (on `version`, when the call is
/// pinned to one) for a call, never one of `exclude`.
pub fn pick(
    nodes: &[Arc<NodeEntry>],
    method: &str,
    version: Option<ModuleId>,
    exclude: &[Arc<NodeEntry>],
) -> Option<Arc<NodeEntry>> {
    let now = Instant::now();
    let candidates: Vec<&Arc<NodeEntry>> = nodes
        .iter()
        .filter(|node| {
            node.can_take(method, version, now) && !exclude.iter().any(|x| Arc::ptr_eq(x, node))
        })
        .collect();
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0].clone()),
        n => {
            let mut rng = rand::rng();
            let first = rng.random_range(0..n);
            let mut second = rng.random_range(0..n - 1);
            if second >= first {
                second += 1;
            }
            let (a, b) = (candidates[first], candidates[second]);
            Some(if b.in_flight() < a.in_flight() { b } else { a }.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::registry::Registry;
    use crate::node::Announcement;

    fn registry(urls: &[&str]) -> Registry {
        let registry = Registry::new(&[]);
        for url in urls {
            registry.heartbeat(Announcement {
                url: url.to_string(),
                methods: vec!["m".into()],
                module: None,
                loaded: Vec::new(),
                failed: Default::default(),
            });
        }
        registry
    }

    #[test]
    fn prefers_the_node_with_fewer_calls_in_flight() {
        let registry = registry(&["http://a", "http://b"]);
        let nodes = registry.nodes();
        let _busy: Vec<_> = (0..5).map(|_| nodes[0].begin_call()).collect();
        for _ in 0..100 {
            assert_eq!(pick(&nodes, "m", None, &[]).unwrap().url, "http://b");
        }
    }

    #[test]
    fn never_picks_an_excluded_or_ejected_node() {
        let registry = registry(&["http://a", "http://b", "http://c"]);
        let nodes = registry.nodes();
        nodes[1].eject();
        for _ in 0..100 {
            let picked = pick(&nodes, "m", None, &[nodes[0].clone()]).unwrap();
            assert_eq!(picked.url, "http://c");
        }
        assert!(pick(&nodes, "m", None, &[nodes[0].clone(), nodes[2].clone()]).is_none());
    }

    #[test]
    fn spreads_calls_across_idle_nodes() {
        let registry = registry(&["http://a", "http://b", "http://c"]);
        let nodes = registry.nodes();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(pick(&nodes, "m", None, &[]).unwrap().url.clone());
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn calls_go_only_to_nodes_that_serve_the_method() {
        let registry = registry(&["http://a", "http://b"]);
        registry.heartbeat(Announcement {
            url: "http://b".into(),
            methods: vec!["m".into(), "only_b".into()],
            module: None,
            loaded: Vec::new(),
            failed: Default::default(),
        });
        let nodes = registry.nodes();
        for _ in 0..100 {
            assert_eq!(pick(&nodes, "only_b", None, &[]).unwrap().url, "http://b");
        }
        assert!(pick(&nodes, "nowhere", None, &[]).is_none());
    }
}
