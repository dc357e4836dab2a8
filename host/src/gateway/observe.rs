//! What the gateway shows operators: `/metrics` for Prometheus, `/ready`
//! for load balancers and orchestrators, `/v1/status` and the status page
//! at `GET /` for people and `madrpc top`, and the JSON built-ins
//! `_metrics` and `_info` of the original MaDRPC.

use super::drain::Drain;
use super::registry::Registry;
use crate::telemetry::{self, CallLog};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

/// The status page: one file, no build step, no external assets.
const STATUS_PAGE: &str = include_str!("status.html");

/// What the gateway's observability routes read: its calls and its drain.
#[derive(Clone)]
pub(super) struct Observed {
    /// The balancer's call log and statistics.
    pub(super) log: Arc<CallLog>,
    /// Whether the gateway is draining.
    pub(super) drain: Arc<Drain>,
    /// The module version serving.
    pub(super) deployments: Arc<super::Deployments>,
}

#[derive(Clone)]
struct Observe {
    registry: Arc<Registry>,
    observed: Observed,
}

/// The routes, to merge into the gateway's router.
pub(super) fn routes(registry: Arc<Registry>, observed: Observed) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/v1/status", get(status))
        .with_state(Observe { registry, observed })
}

/// `GET /`: the status page (`POST /` stays JSON-RPC).
async fn page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

/// `GET /v1/status`: everything the status page and `madrpc top` show.
async fn status(State(observe): State<Observe>) -> Json<Value> {
    let registry = &observe.registry;
    let stats = observe.observed.log.stats();
    let nodes = registry.statuses();
    let mut modules: Vec<&str> = nodes.iter().filter_map(|n| n.module.as_deref()).collect();
    modules.sort_unstable();
    modules.dedup();
    let available = nodes.iter().filter(|n| n.available).count();
    let draining = observe.observed.drain.is_draining();
    let deployed = observe.observed.deployments.current();
    let methods = match &deployed {
        Some(version) => version.manifest.methods.clone(),
        None => registry.methods().to_vec(),
    };
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_ms": stats.uptime().as_millis() as u64,
        "ready": !draining && available > 0,
        "draining": draining,
        "modules": modules,
        "deployed": deployed.map(|v| json!({
            "id": v.id,
            "script": v.manifest.script,
            "methods": v.manifest.methods,
        })),
        "methods": methods,
        "nodes": nodes,
        "calls": stats.metrics(true),
        "history": stats.history(),
    }))
}

/// `GET /metrics`: the Prometheus text format, with the node gauges read
/// now.
async fn metrics(State(observe): State<Observe>) -> Response {
    let statuses = observe.registry.statuses();
    let available = statuses.iter().filter(|s| s.available).count();
    let in_flight: Vec<(String, usize)> = statuses
        .iter()
        .map(|s| (s.url.clone(), s.in_flight))
        .collect();
    telemetry::metrics::set_gateway_nodes(available, statuses.len() - available, &in_flight);
    for node in observe.registry.nodes() {
        if let Some(pool) = &node.pool {
            telemetry::metrics::set_node_load(
                &node.url,
                pool.in_flight(),
                pool.queued(),
                pool.workers(),
            );
        }
    }
    (
        [(header::CONTENT_TYPE, telemetry::metrics::CONTENT_TYPE)],
        telemetry::metrics::render(),
    )
        .into_response()
}

/// `GET /ready`: 200 when the gateway takes calls; 503 while it drains
/// or has no healthy node. `/health` stays the liveness check.
async fn ready(State(observe): State<Observe>) -> (StatusCode, Json<Value>) {
    let available = observe.registry.available_count();
    let reason = if observe.observed.drain.is_draining() {
        Some("draining")
    } else if available == 0 {
        Some("no healthy node")
    } else {
        None
    };
    telemetry::ready::reply(reason, json!({ "available_nodes": available }))
}

/// The gateway's answers to the original MaDRPC's built-ins: `_metrics`
/// (call counts and latency percentiles per method, calls per node) and
/// `_info` (an orchestrator's version, uptime and nodes).
pub(super) fn builtin(name: &str, registry: &Registry, log: &CallLog) -> Option<Value> {
    match name {
        "_metrics" => Some(log.stats().metrics(true)),
        "_info" => {
            let statuses = registry.statuses();
            let enabled = statuses.iter().filter(|s| s.available).count();
            let nodes: Vec<Value> = statuses
                .iter()
                .map(|s| {
                    json!({
                        "addr": s.url,
                        "enabled": s.available,
                        "disable_reason": (!s.available).then_some("unhealthy or ejected"),
                        "circuit_state": if s.available { "closed" } else { "open" },
                        "consecutive_failures": s.consecutive_failures,
                        "origin": s.origin,
                        "in_flight": s.in_flight,
                        "methods": s.methods,
                    })
                })
                .collect();
            Some(json!({
                "server_type": "orchestrator",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_ms": log.stats().uptime().as_millis() as u64,
                "total_nodes": statuses.len(),
                "enabled_nodes": enabled,
                "disabled_nodes": statuses.len() - enabled,
                "nodes": nodes,
                "methods": *registry.methods(),
            }))
        }
        _ => None,
    }
}
