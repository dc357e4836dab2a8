//! The gateway's own routes: health, the node list, and joining/leaving.

use super::registry::Registry;
use crate::node::Announcement;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Json;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;

pub(super) fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/nodes", get(list).post(join))
        .route("/v1/nodes/leave", post(leave))
        .with_state(registry)
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
    State(registry): State<Arc<Registry>>,
    Json(announcement): Json<Announcement>,
) -> StatusCode {
    if !announcement.url.starts_with("http://") {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    registry.heartbeat(announcement);
    StatusCode::NO_CONTENT
}

async fn leave(
    State(registry): State<Arc<Registry>>,
    Json(announcement): Json<Announcement>,
) -> StatusCode {
    registry.leave(&announcement.url);
    StatusCode::NO_CONTENT
}
