//! The gateway's own routes: health, the node list, joining/leaving, and
//! what [`observe`] adds for operators.

use super::membership::NodePolicy;
use super::observe::{self, Observed};
use super::registry::Registry;
use crate::cluster::ClusterToken;
use crate::node::Announcement;
use crate::rpc::{RpcError, codes};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The registry, the token nodes must present to join or leave, and where
/// nodes may be.
#[derive(Clone)]
struct Membership {
    registry: Arc<Registry>,
    token: Arc<ClusterToken>,
    policy: Arc<NodePolicy>,
    /// The versions nodes should hold, told in the answer to heartbeats.
    deployments: Arc<super::Deployments>,
    /// When a refused join was last logged: a node with a revoked token
    /// keeps heartbeating, and one warning per interval is enough.
    last_warning: Arc<Mutex<Option<Instant>>>,
}

/// Least time between two warnings about refused joins.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl Membership {
    /// The refusal for a request without the cluster token, or `None` when
    /// it may pass.
    fn refuse_unauthorized(&self, headers: &HeaderMap) -> Option<Response> {
        if self.token.admits(headers) {
            return None;
        }
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| at.elapsed() >= WARNING_INTERVAL) {
            tracing::warn!(
                "refused a join or leave without the join token (further refusals in the next {} s are not logged)",
                WARNING_INTERVAL.as_secs()
            );
            *last = Some(Instant::now());
        }
        drop(last);
        let error = RpcError::new(
            codes::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized: joining or leaving needs the gateway's join token as `Authorization: Bearer TOKEN`; start the node with MADRPC_JOIN_TOKEN set to the token the gateway printed at start (or gave with --join-token)",
        );
        let mut response = (StatusCode::UNAUTHORIZED, Json(error)).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Some(response)
    }

    /// The canonical URL of the announcing node, or why it is refused.
    fn check_url(&self, url: &str) -> Result<String, RpcError> {
        self.policy.check(url).map_err(|error| {
            tracing::warn!(node = %url, %error, "refused a node URL");
            RpcError::new(codes::INVALID_PARAMS, "invalid_node_url", error.to_string())
        })
    }
}

pub(super) fn router(
    registry: Arc<Registry>,
    token: Arc<ClusterToken>,
    policy: NodePolicy,
    observed: Observed,
) -> Router {
    let membership = Membership {
        registry: registry.clone(),
        token,
        policy: Arc::new(policy),
        deployments: observed.deployments.clone(),
        last_warning: Arc::default(),
    };
    Router::new()
        .route("/health", get(health))
        .route("/v1/nodes", get(list))
        .with_state(registry.clone())
        .merge(observe::routes(registry, observed))
        .merge(
            Router::new()
                .route("/v1/nodes", post(join))
                .route("/v1/nodes/leave", post(leave))
                .with_state(membership),
        )
}

async fn health(State(registry): State<Arc<Registry>>) -> (StatusCode, Json<Value>) {
    let available = registry.available_count();
    let status = if available > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if available > 0 { "ok" } else { "no healthy node" },
            "available_nodes": available,
            "methods": *registry.methods(),
        })),
    )
}

async fn list(State(registry): State<Arc<Registry>>) -> Json<Value> {
    Json(json!({ "nodes": registry.statuses() }))
}

/// `POST /v1/nodes`: a node joins or heartbeats. The token is checked
/// before the body is even parsed.
async fn join(State(membership): State<Membership>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = membership.refuse_unauthorized(&headers) {
        return refusal;
    }
    let checked = parse(&body).and_then(|announcement| {
        Ok(Announcement {
            url: membership.check_url(&announcement.url)?,
            module: announcement.checked_module(),
            ..announcement
        })
    });
    match checked {
        Ok(announcement) => {
            membership.registry.heartbeat(announcement);
            // Once a version is deployed, the answer says which versions
            // the node should hold and which is current.
            match membership.deployments.wanted() {
                Some(versions) => Json(versions).into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
        Err(error) => unprocessable(error),
    }
}

/// `POST /v1/nodes/leave`: a node leaves; needs the token like joining.
async fn leave(State(membership): State<Membership>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = membership.refuse_unauthorized(&headers) {
        return refusal;
    }
    match parse(&body).and_then(|announcement| membership.check_url(&announcement.url)) {
        Ok(url) => {
            membership.registry.leave(&url);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => unprocessable(error),
    }
}

fn unprocessable(error: RpcError) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response()
}

fn parse(body: &[u8]) -> Result<Announcement, RpcError> {
    serde_json::from_slice(body).map_err(|e| {
        RpcError::new(
            codes::INVALID_PARAMS,
            "invalid_announcement",
            format!("the body is not a node announcement ({e}); nodes send {{\"url\": ..., \"methods\": [...]}}"),
        )
    })
}
