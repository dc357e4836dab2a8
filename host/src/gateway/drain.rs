//! Draining the gateway's JSON-RPC endpoint. On shutdown the gateway keeps
//! its listener open while calls are in flight: their nodes still send
//! sub-calls to it, round after round, and a closed listener would fail
//! them. New client calls are refused with `overloaded` (kind `draining`)
//! and `Connection: close`, so clients go elsewhere; member nodes, which
//! present the cluster token, still get their sub-calls through.

use crate::cluster::ClusterToken;
use crate::rpc::{CallBudget, RpcError, codes};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Calls in flight through the endpoint, and whether it is draining.
#[derive(Default)]
pub(super) struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Drain {
    /// Refuses new client calls from now on.
    pub(super) fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether new client calls are refused.
    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Completes when no call is in flight.
    pub(super) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a call as in flight until dropped.
struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[derive(Clone)]
struct Gate {
    drain: Arc<Drain>,
    cluster: Arc<ClusterToken>,
}

/// Puts the drain in front of the JSON-RPC router.
pub(super) fn layer(router: Router, drain: Arc<Drain>, cluster: Arc<ClusterToken>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Gate { drain, cluster },
        gate,
    ))
}

async fn gate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    gate.drain.in_flight.fetch_add(1, Ordering::AcqRel);
    let counted = InFlight(gate.drain.clone());
    if gate.drain.draining.load(Ordering::Acquire) && !from_member(&gate.cluster, &request) {
        drop(counted);
        return refuse();
    }
    let response = next.run(request).await;
    drop(counted);
    response
}

/// Whether a request is a member node's sub-calls: it presents the cluster
/// token, or, with open membership (no token to present), it carries a
/// sub-call's depth.
fn from_member(cluster: &ClusterToken, request: &Request) -> bool {
    cluster.presented_in(request.headers())
        || (!cluster.is_set()
            && CallBudget::from_headers(request.headers()).is_ok_and(|budget| budget.depth > 0))
}

fn refuse() -> Response {
    let error = RpcError::new(
        codes::OVERLOADED,
        "draining",
        "Overloaded: this gateway is shutting down and takes no new calls; retry in 1 s, or on another gateway",
    )
    .with("retry_after_secs", 1);
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
