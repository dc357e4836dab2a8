//! The gateway's own routes: health, the node list, and joining/leaving.

use super::registry::Registry;
use crate::node::Announcement;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Json;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;

/// The registry, and the token nodes must present to join or leave.
#[derive(Clone)]
struct Membership {
    registry: Arc<Registry>,
    join_token: Option<Arc<str>>,
}

impl Membership {
    /// Whether the request carries `Authorization: Bearer <token>` when a
    /// token is required. Compared in constant time.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.join_token else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        presented.len() == expected.len()
            && presented
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

pub(super) fn router(registry: Arc<Registry>, join_token: Option<String>) -> Router {
    let membership = Membership {
        registry: registry.clone(),
        join_token: join_token.map(Arc::from),
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

async fn join(
    State(membership): State<Membership>,
    headers: HeaderMap,
    Json(announcement): Json<Announcement>,
) -> StatusCode {
    if !membership.admits(&headers) {
        tracing::warn!(node = %announcement.url, "refused a node without the join token");
        return StatusCode::UNAUTHORIZED;
    }
    if !(announcement.url.starts_with("http://") || announcement.url.starts_with("https://")) {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    membership.registry.heartbeat(announcement);
    StatusCode::NO_CONTENT
}

async fn leave(
    State(membership): State<Membership>,
    headers: HeaderMap,
    Json(announcement): Json<Announcement>,
) -> StatusCode {
    if !membership.admits(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    membership.registry.leave(&announcement.url);
    StatusCode::NO_CONTENT
}
