//! The shape of a gateway's `/v1/status` as `madrpc top` reads it; shared
//! by the command, which fetches it, and the view, which draws it.

use serde::Deserialize;
use std::collections::BTreeMap;

/// What `/v1/status` answers (the fields `top` shows).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Status {
    pub version: String,
    pub uptime_ms: u64,
    pub ready: bool,
    pub draining: bool,
    pub modules: Vec<String>,
    pub methods: Vec<String>,
    pub nodes: Vec<NodeRow>,
    pub calls: Calls,
    pub history: History,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NodeRow {
    pub url: String,
    pub origin: String,
    pub available: bool,
    pub in_flight: u64,
    pub consecutive_failures: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Calls {
    pub total_requests: u64,
    pub failed_requests: u64,
    pub methods: BTreeMap<String, MethodCalls>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(super) struct MethodCalls {
    pub call_count: u64,
    pub failure_count: u64,
    pub avg_latency_us: u64,
    pub p50_latency_us: u64,
    pub p95_latency_us: u64,
    pub p99_latency_us: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct History {
    pub now: u64,
    pub seconds: Vec<Second>,
    pub errors: Vec<RecentError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Second {
    pub at: u64,
    pub calls: u64,
    pub errors: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RecentError {
    pub at_ms: u64,
    pub method: String,
    pub kind: String,
    pub message: Option<String>,
}
