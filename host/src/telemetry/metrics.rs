//! The Prometheus registry of this process and the names of its series.
//! Each floor records its own series through the `metrics` facade under
//! its prefix (`madrpc_gateway_`, `madrpc_node_`, `madrpc_runtime_`,
//! `madrpc_edge_`); this file names them, gives the histograms their
//! buckets, and renders the text format for `GET /metrics`.
//!
//! Labels stay few and bounded: `method` (a method the module has, or
//! `unknown`), `kind` (the error's `data.kind`, or `ok`), `node`, `state`,
//! and `key`, an API key's name. Never a request id, params or a secret.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Calls through the gateway's balancer, by `method` and `kind`.
pub const GATEWAY_CALLS: &str = "madrpc_gateway_calls_total";
/// Call latency at the gateway, by `method`.
pub const GATEWAY_CALL_SECONDS: &str = "madrpc_gateway_call_duration_seconds";
/// Calls sent again on another node after their first node failed.
pub const GATEWAY_RETRIES: &str = "madrpc_gateway_retries_total";
/// Retries not sent because the retry budget was spent.
pub const GATEWAY_RETRIES_DENIED: &str = "madrpc_gateway_retries_denied_total";
/// Nodes taken out of rotation, by `node`.
pub const GATEWAY_EJECTIONS: &str = "madrpc_gateway_ejections_total";
/// Nodes known to the gateway, by `state` (`available`, `unavailable`).
pub const GATEWAY_NODES: &str = "madrpc_gateway_nodes";
/// Calls the gateway has outstanding on each node, by `node`.
pub const GATEWAY_NODE_IN_FLIGHT: &str = "madrpc_gateway_node_calls_in_flight";
/// Deploys and rollbacks, by `outcome` (`activated`, `failed`) and
/// `action` (`deploy`, `rollback`).
pub const GATEWAY_DEPLOYS: &str = "madrpc_gateway_deploys_total";
/// 1 for the module version calls start on, by `module` (its id); 0 for
/// the versions it replaced since the process started.
pub const GATEWAY_MODULE: &str = "madrpc_gateway_module_info";
/// Calls a node ran from its routes, by `method` and `kind`.
pub const NODE_CALLS: &str = "madrpc_node_calls_total";
/// Call latency on a node, from admission to result, by `method`.
pub const NODE_CALL_SECONDS: &str = "madrpc_node_call_duration_seconds";
/// Calls a node admitted and has not finished, by `node`.
pub const NODE_IN_FLIGHT: &str = "madrpc_node_calls_in_flight";
/// Calls admitted to a node that hold no worker: waiting for one, or
/// waiting on their sub-calls, by `node`.
pub const NODE_QUEUE_DEPTH: &str = "madrpc_node_queue_depth";
/// Calls a node runs at once, by `node`.
pub const NODE_WORKERS: &str = "madrpc_node_workers";
/// Fuel one call consumed, by `method`.
pub const RUNTIME_FUEL: &str = "madrpc_runtime_call_fuel_consumed";
/// The most linear memory one call's instance had, by `method`.
pub const RUNTIME_PEAK_MEMORY: &str = "madrpc_runtime_call_peak_memory_bytes";
/// Time to instantiate a call's sandbox, by `method`.
pub const RUNTIME_INSTANTIATION: &str = "madrpc_runtime_instantiation_duration_seconds";
/// Requests refused for a rate limit, by `key` (empty: per address).
pub const EDGE_RATE_LIMITED: &str = "madrpc_edge_rate_limited_total";
/// Requests refused without a valid API key.
pub const EDGE_UNAUTHORIZED: &str = "madrpc_edge_unauthorized_total";

/// Call latency buckets: from a sub-millisecond call to the default
/// deadline and past it.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Instantiation buckets: a pooled instance takes tens of microseconds.
const INSTANTIATION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];
/// Fuel buckets: a trivial call burns about a hundred thousand units, the
/// default limit is a hundred billion.
const FUEL_BUCKETS: &[f64] = &[1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11];
/// Memory buckets, 1 MiB to 1 GiB.
const MEMORY_BUCKETS: &[f64] = &[
    1048576.0,
    2097152.0,
    4194304.0,
    8388608.0,
    16777216.0,
    33554432.0,
    67108864.0,
    134217728.0,
    268435456.0,
    1073741824.0,
];

/// How often histogram samples are folded into their buckets when nobody
/// scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs this process's registry (once; later calls do nothing).
/// Without it every series is recorded into nothing.
pub fn install() {
    if HANDLE.get().is_some() {
        return;
    }
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [
        (GATEWAY_CALL_SECONDS, SECONDS_BUCKETS),
        (NODE_CALL_SECONDS, SECONDS_BUCKETS),
        (RUNTIME_INSTANTIATION, INSTANTIATION_BUCKETS),
        (RUNTIME_FUEL, FUEL_BUCKETS),
        (RUNTIME_PEAK_MEMORY, MEMORY_BUCKETS),
    ] {
        builder = match builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets) {
            Ok(builder) => builder,
            // Unreachable: every bucket list above is non-empty.
            Err(_) => return,
        };
    }
    match builder.install_recorder() {
        Ok(handle) => {
            describe();
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            let _ = HANDLE.set(handle);
        }
        Err(error) => {
            tracing::warn!(%error, "cannot install the metrics registry; /metrics stays empty")
        }
    }
}

/// The registry in the Prometheus text format (empty before [`install`]).
pub fn render() -> String {
    match HANDLE.get() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        GATEWAY_CALLS,
        "Calls through the gateway, by method and outcome (data.kind, or ok)."
    );
    describe_histogram!(
        GATEWAY_CALL_SECONDS,
        Unit::Seconds,
        "Call latency at the gateway, by method."
    );
    describe_counter!(
        GATEWAY_RETRIES,
        "Calls sent again on another node after their node failed before replying."
    );
    describe_counter!(
        GATEWAY_RETRIES_DENIED,
        "Retries not sent because the retry budget was spent."
    );
    describe_counter!(
        GATEWAY_EJECTIONS,
        "Times a node was taken out of rotation, by node."
    );
    describe_gauge!(GATEWAY_NODES, "Nodes known to the gateway, by state.");
    describe_gauge!(
        GATEWAY_NODE_IN_FLIGHT,
        "Calls the gateway has outstanding on a node."
    );
    describe_counter!(
        NODE_CALLS,
        "Calls a node ran from its routes, by method and outcome."
    );
    describe_histogram!(
        NODE_CALL_SECONDS,
        Unit::Seconds,
        "Call latency on a node, from admission to result, by method."
    );
    describe_gauge!(
        NODE_IN_FLIGHT,
        "Calls a node admitted and has not finished."
    );
    describe_gauge!(
        NODE_QUEUE_DEPTH,
        "Calls admitted to a node holding no worker: queued, or waiting on sub-calls."
    );
    describe_gauge!(NODE_WORKERS, "Calls a node runs at once.");
    describe_histogram!(
        RUNTIME_FUEL,
        "Fuel one call consumed (CPU time, in tenths of a nanosecond), by method."
    );
    describe_histogram!(
        RUNTIME_PEAK_MEMORY,
        Unit::Bytes,
        "Peak linear memory of one call's instance, by method."
    );
    describe_histogram!(
        RUNTIME_INSTANTIATION,
        Unit::Seconds,
        "Time to instantiate one call's sandbox, by method."
    );
    describe_counter!(
        GATEWAY_DEPLOYS,
        "Deploys and rollbacks of a module version, by action and outcome."
    );
    describe_gauge!(
        GATEWAY_MODULE,
        "1 for the module version calls start on, labelled with its id."
    );
    describe_counter!(
        EDGE_RATE_LIMITED,
        "Requests refused for a rate limit, by API key name (empty: per client address)."
    );
    describe_counter!(
        EDGE_UNAUTHORIZED,
        "Requests refused without a valid API key."
    );
}

/// Counts a deploy or rollback (`action`) and how it ended (`outcome`).
pub fn record_deploy(action: &'static str, outcome: &'static str) {
    metrics::counter!(GATEWAY_DEPLOYS, "action" => action, "outcome" => outcome).increment(1);
}

/// Marks `current` as the module version serving, and `replaced` (when
/// another) as no longer.
pub fn set_module(current: &str, replaced: Option<&str>) {
    if let Some(old) = replaced.filter(|old| *old != current) {
        metrics::gauge!(GATEWAY_MODULE, "module" => old.to_owned()).set(0.0);
    }
    metrics::gauge!(GATEWAY_MODULE, "module" => current.to_owned()).set(1.0);
}

/// Which side of the grid recorded a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The gateway's balancer (and `serve`'s).
    Gateway,
    /// A node's own routes.
    Node,
}

/// Records one finished call: its count by outcome and its latency.
pub fn record_call(surface: Surface, method: &str, kind: &str, elapsed: Duration) {
    let (calls, seconds) = match surface {
        Surface::Gateway => (GATEWAY_CALLS, GATEWAY_CALL_SECONDS),
        Surface::Node => (NODE_CALLS, NODE_CALL_SECONDS),
    };
    metrics::counter!(calls, "method" => method.to_owned(), "kind" => kind.to_owned()).increment(1);
    metrics::histogram!(seconds, "method" => method.to_owned()).record(elapsed.as_secs_f64());
}

/// Records what one call cost its sandbox.
pub fn record_sandbox(method: &str, fuel: u64, peak_memory: usize, instantiation: Duration) {
    metrics::histogram!(RUNTIME_FUEL, "method" => method.to_owned()).record(fuel as f64);
    metrics::histogram!(RUNTIME_PEAK_MEMORY, "method" => method.to_owned())
        .record(peak_memory as f64);
    metrics::histogram!(RUNTIME_INSTANTIATION, "method" => method.to_owned())
        .record(instantiation.as_secs_f64());
}

/// Records a retry sent, or one the budget refused.
pub fn record_retry(sent: bool) {
    metrics::counter!(if sent {
        GATEWAY_RETRIES
    } else {
        GATEWAY_RETRIES_DENIED
    })
    .increment(1);
}

/// Records a node's ejection.
pub fn record_ejection(node: &str) {
    metrics::counter!(GATEWAY_EJECTIONS, "node" => node.to_owned()).increment(1);
}

/// Records a request refused at the edge: rate limited (with the key's
/// name, if any) or unauthorized.
pub fn record_refusal(rate_limited: bool, key: Option<&str>) {
    if rate_limited {
        metrics::counter!(EDGE_RATE_LIMITED, "key" => key.unwrap_or("").to_owned()).increment(1);
    } else {
        metrics::counter!(EDGE_UNAUTHORIZED).increment(1);
    }
}

/// Sets a node's load gauges (at scrape time).
pub fn set_node_load(node: &str, in_flight: usize, queued: usize, workers: usize) {
    metrics::gauge!(NODE_IN_FLIGHT, "node" => node.to_owned()).set(in_flight as f64);
    metrics::gauge!(NODE_QUEUE_DEPTH, "node" => node.to_owned()).set(queued as f64);
    metrics::gauge!(NODE_WORKERS, "node" => node.to_owned()).set(workers as f64);
}

/// Sets the gateway's view of its nodes (at scrape time).
pub fn set_gateway_nodes(available: usize, unavailable: usize, in_flight: &[(String, usize)]) {
    metrics::gauge!(GATEWAY_NODES, "state" => "available").set(available as f64);
    metrics::gauge!(GATEWAY_NODES, "state" => "unavailable").set(unavailable as f64);
    for (node, calls) in in_flight {
        metrics::gauge!(GATEWAY_NODE_IN_FLIGHT, "node" => node.clone()).set(*calls as f64);
    }
}
