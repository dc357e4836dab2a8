//! Recent call statistics kept in memory for people rather than for
//! Prometheus: the JSON `_metrics` built-in (in the shape the original
//! MaDRPC answered), `madrpc top` and the status page. Per method: counts
//! and latency percentiles over the last calls; per second: calls, errors
//! and latency over the last minutes; and the last errors.

use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Latencies kept per method for its percentiles.
const LATENCY_SAMPLES: usize = 1024;
/// Seconds of history for the status page's chart.
pub const HISTORY_SECONDS: usize = 300;
/// Errors kept for the status page.
const RECENT_ERRORS: usize = 20;
/// Distinct methods kept; the module's own are few, anything past this is
/// counted as `unknown`.
const MAX_METHODS: usize = 512;

/// What a call ended as, for the statistics.
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    /// The method label (a method the module has, or `unknown`).
    pub method: &'a str,
    /// `ok`, or the error's kind.
    pub kind: &'a str,
    /// The error's message, for the recent errors.
    pub message: Option<&'a str>,
    /// The node that answered, if one did.
    pub node: Option<&'a str>,
    /// The request id, for the recent errors only.
    pub request_id: Option<&'a str>,
    /// How long the call took.
    pub elapsed: Duration,
}

/// The statistics of one gateway or node.
pub struct CallStats {
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    total: u64,
    ok: u64,
    failed: u64,
    methods: BTreeMap<String, MethodStats>,
    nodes: BTreeMap<String, NodeStats>,
    seconds: VecDeque<Second>,
    errors: VecDeque<Value>,
}

#[derive(Default)]
struct MethodStats {
    calls: u64,
    ok: u64,
    failed: u64,
    total_us: u64,
    recent: VecDeque<u64>,
}

#[derive(Default)]
struct NodeStats {
    calls: u64,
    last_ms: u64,
}

#[derive(Clone, Copy, Default)]
struct Second {
    at: u64,
    calls: u64,
    errors: u64,
    total_us: u64,
    max_us: u64,
}

impl Default for CallStats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::default(),
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl CallStats {
    /// Time since this gateway or node started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts a finished call.
    pub fn record(&self, call: &Finished<'_>) {
        let now_ms = unix_ms();
        let us = call.elapsed.as_micros() as u64;
        let ok = call.kind == "ok";
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.total += 1;
        if ok {
            inner.ok += 1;
        } else {
            inner.failed += 1;
        }
        let label = if inner.methods.len() < MAX_METHODS || inner.methods.contains_key(call.method)
        {
            call.method
        } else {
            "unknown"
        };
        let method = inner.methods.entry(label.to_owned()).or_default();
        method.calls += 1;
        if ok {
            method.ok += 1;
        } else {
            method.failed += 1;
        }
        method.total_us += us;
        if method.recent.len() == LATENCY_SAMPLES {
            method.recent.pop_front();
        }
        method.recent.push_back(us);
        if let Some(node) = call.node {
            let node = inner.nodes.entry(node.to_owned()).or_default();
            node.calls += 1;
            node.last_ms = now_ms;
        }
        let second = now_ms / 1000;
        if inner.seconds.back().is_none_or(|s| s.at != second) {
            inner.seconds.push_back(Second {
                at: second,
                ..Second::default()
            });
            while inner.seconds.len() > HISTORY_SECONDS {
                inner.seconds.pop_front();
            }
        }
        if let Some(current) = inner.seconds.back_mut() {
            current.calls += 1;
            current.total_us += us;
            current.max_us = current.max_us.max(us);
            if !ok {
                current.errors += 1;
            }
        }
        if !ok {
            if inner.errors.len() == RECENT_ERRORS {
                inner.errors.pop_front();
            }
            inner.errors.push_back(json!({
                "at_ms": now_ms,
                "method": call.method,
                "kind": call.kind,
                "message": call.message.map(|m| truncate(m, 300)),
                "node": call.node,
                "request_id": call.request_id,
            }));
        }
    }

    /// The `_metrics` built-in's answer: totals, and per method its counts
    /// and latency percentiles in microseconds; per node (gateways only)
    /// calls sent and when the last one was.
    pub fn metrics(&self, with_nodes: bool) -> Value {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let methods: serde_json::Map<String, Value> = inner
            .methods
            .iter()
            .map(|(name, m)| {
                let mut sorted: Vec<u64> = m.recent.iter().copied().collect();
                sorted.sort_unstable();
                (
                    name.clone(),
                    json!({
                        "call_count": m.calls,
                        "success_count": m.ok,
                        "failure_count": m.failed,
                        "avg_latency_us": m.total_us.checked_div(m.calls).unwrap_or(0),
                        "p50_latency_us": percentile(&sorted, 50),
                        "p95_latency_us": percentile(&sorted, 95),
                        "p99_latency_us": percentile(&sorted, 99),
                    }),
                )
            })
            .collect();
        let nodes = with_nodes.then(|| {
            inner
                .nodes
                .iter()
                .map(|(url, n)| {
                    (
                        url.clone(),
                        json!({"node_addr": url, "request_count": n.calls, "last_request_ms": n.last_ms}),
                    )
                })
                .collect::<serde_json::Map<String, Value>>()
        });
        json!({
            "total_requests": inner.total,
            "successful_requests": inner.ok,
            "failed_requests": inner.failed,
            "active_connections": 0,
            "uptime_ms": self.uptime().as_millis() as u64,
            "methods": methods,
            "nodes": nodes,
        })
    }

    /// The last minutes, one entry per second that saw calls (`at` in unix
    /// seconds, latencies in microseconds), and the last errors, newest
    /// first.
    pub fn history(&self) -> Value {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seconds: Vec<Value> = inner
            .seconds
            .iter()
            .map(|s| {
                json!({
                    "at": s.at,
                    "calls": s.calls,
                    "errors": s.errors,
                    "avg_latency_us": s.total_us.checked_div(s.calls).unwrap_or(0),
                    "max_latency_us": s.max_us,
                })
            })
            .collect();
        let errors: Vec<Value> = inner.errors.iter().rev().cloned().collect();
        json!({ "now": unix_ms() / 1000, "seconds": seconds, "errors": errors })
    }
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(method: &'a str, kind: &'a str, ms: u64) -> Finished<'a> {
        Finished {
            method,
            kind,
            message: (kind != "ok").then_some("it failed"),
            node: Some("local:0"),
            request_id: Some("r1"),
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn counts_and_percentiles_per_method() {
        let stats = CallStats::default();
        for ms in 1..=100 {
            stats.record(&call("add", "ok", ms));
        }
        stats.record(&call("add", "threw", 1));
        let metrics = stats.metrics(true);
        assert_eq!(metrics["total_requests"], 101);
        assert_eq!(metrics["failed_requests"], 1);
        let add = &metrics["methods"]["add"];
        assert_eq!(add["call_count"], 101);
        assert_eq!(add["p50_latency_us"], 50_000);
        assert_eq!(add["p99_latency_us"], 99_000);
        assert_eq!(metrics["nodes"]["local:0"]["request_count"], 101);
        let history = stats.history();
        assert_eq!(history["errors"][0]["kind"], "threw");
        assert_eq!(history["errors"][0]["request_id"], "r1");
        let calls: u64 = history["seconds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["calls"].as_u64().unwrap())
            .sum();
        assert_eq!(calls, 101);
    }
}
