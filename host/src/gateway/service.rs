//! The gateway's own routes: health, the node list, and joining/leaving.

use super::membership::NodePolicy;
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
use std::sync::Arc;

/// The registry, the token nodes must present to join or leave, and where
/// nodes may be.
#[derive(Clone)]
struct Membership {
    registry: Arc<Registry>,
    token: Arc<ClusterToken>,
    policy: Arc<NodePolicy>,
}

impl Membership {
    /// The refusal for a request without the cluster token, or `None` when
    /// it may pass.
    fn refuse_unauthorized(&self, headers: &HeaderMap) -> Option<Response> {
        if self.token.admits(headers) {
            return None;
        }
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

    /// The canonical URL of the announcing node, or the refusal.
    fn check_url(&self, url: &str) -> Result<String, Response> {
        self.policy.check(url).map_err(|error| {
            tracing::warn!(node = %url, %error, "refused a node URL");
            let error = RpcError::new(codes::INVALID_PARAMS, "invalid_node_url", error.to_string());
            (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response()
        })
    }
}

pub(super) fn router(
    registry: Arc<Registry>,
    token: Arc<ClusterToken>,
    policy: NodePolicy,
) -> Router {
    let membership = Membership {
        registry: registry.clone(),
        token,
        policy: Arc::new(policy),
    };
    Router::new()
        .route("/health", get(health))
        .route("/v1/nodes", get(list))
        .with_state(registry)
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
        tracing::warn!("refused a node without the join token");
        return refusal;
    }
    let mut announcement = match parse(&body) {
        Ok(announcement) => announcement,
        Err(refusal) => return refusal,
    };
    announcement.url = match membership.check_url(&announcement.url) {
        Ok(url) => url,
        Err(refusal) => return refusal,
    };
    membership.registry.heartbeat(announcement);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /v1/nodes/leave`: a node leaves; needs the token like joining.
async fn leave(State(membership): State<Membership>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = membership.refuse_unauthorized(&headers) {
        return refusal;
    }
    let announcement = match parse(&body) {
        Ok(announcement) => announcement,
        Err(refusal) => return refusal,
    };
    match membership.check_url(&announcement.url) {
        Ok(url) => {
            membership.registry.leave(&url);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => refusal,
    }
}

fn parse(body: &[u8]) -> Result<Announcement, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let error = RpcError::new(
            codes::INVALID_PARAMS,
            "invalid_announcement",
            format!("the body is not a node announcement ({e}); nodes send {{\"url\": ..., \"methods\": [...]}}"),
        );
        (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response()
    })
}
