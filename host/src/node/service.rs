//! The node's HTTP routes. The call routes (JSON-RPC, the gateway's call
//! route and its call channel) take calls only from the
//! cluster (the token as `Authorization: Bearer`) unless the node is
//! public; `/health` (liveness), `/ready` and `/metrics` stay open. Every reply carries
//! the node mark the gateway checks for.

use super::observed::Observed;
use super::pool::WorkerPool;
use crate::cluster::{ClusterToken, NODE_REPLY_HEADER};
use crate::rpc::{self, CallBudget, CallRequest, Dispatch, EndpointLimits, RpcError, codes};
use crate::telemetry;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

struct NodeState {
    pool: Arc<WorkerPool>,
    limits: EndpointLimits,
    observed: Observed,
    /// A job's larger limits are granted only to requests that carry it,
    /// also on a public node.
    token: Arc<ClusterToken>,
}

/// The node's JSON-RPC endpoint runs calls on its own pool.
struct LocalDispatch(Arc<WorkerPool>, Observed);

impl Dispatch for LocalDispatch {
    async fn call(&self, request: CallRequest) -> Result<Bytes, RpcError> {
        self.1
            .run(&self.0, request.method, request.params, request.budget)
            .await
    }

    fn methods(&self) -> Vec<String> {
        self.0.versions().methods()
    }

    fn module_version(&self) -> Option<String> {
        Some(self.0.versions().hash())
    }

    fn builtin(&self, name: &str) -> Option<serde_json::Value> {
        match name {
            "_metrics" => Some(self.1.log.stats().metrics(false)),
            "_info" => Some(json!({
                "server_type": "node",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_ms": self.1.log.stats().uptime().as_millis() as u64,
                "url": self.1.url,
                "workers": self.0.workers(),
                "methods": self.0.versions().methods(),
            })),
            _ => None,
        }
    }
}

pub(super) fn router(
    pool: Arc<WorkerPool>,
    limits: EndpointLimits,
    token: Arc<ClusterToken>,
    public: bool,
    observed: Observed,
) -> Router {
    let state = Arc::new(NodeState {
        pool: pool.clone(),
        limits: limits.clone(),
        observed: observed.clone(),
        token: token.clone(),
    });
    let channels = Arc::new(super::channel::Channels {
        pool: pool.clone(),
        observed: observed.clone(),
        token: token.clone(),
        max_params: limits.max_body_bytes,
    });
    let mut calls = rpc::router(Arc::new(LocalDispatch(pool, observed)), limits)
        .merge(
            Router::new()
                .route("/v1/call/{method}", post(call))
                .with_state(state.clone()),
        )
        .merge(
            Router::new()
                .route(crate::wire::PATH, get(super::channel::upgrade))
                .with_state(channels),
        );
    if !public {
        calls = calls.route_layer(middleware::from_fn_with_state(token, require_token));
    }
    calls
        .merge(
            Router::new()
                .route("/health", get(health))
                .route("/ready", get(ready))
                .route("/metrics", get(metrics))
                .with_state(state),
        )
        .layer(middleware::map_response(mark_reply))
}

/// Refuses a call without the cluster token, before its body is read.
async fn require_token(
    State(token): State<Arc<ClusterToken>>,
    request: Request,
    next: Next,
) -> Response {
    if token.presented_in(request.headers()) {
        return next.run(request).await;
    }
    let error = RpcError::new(
        codes::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized: this node takes calls only from its cluster; call the gateway instead, or present the cluster's join token as `Authorization: Bearer TOKEN`",
    );
    let mut response = if request.uri().path() == "/" {
        // The JSON-RPC endpoint answers with a response object.
        let mut body = Vec::with_capacity(256);
        rpc::write_reply(
            &mut body,
            &rpc::Reply {
                id: None,
                outcome: Err(error),
            },
        );
        let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    } else {
        error_reply(StatusCode::UNAUTHORIZED, &error)
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Marks every reply as a node's.
async fn mark_reply(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(NODE_REPLY_HEADER, HeaderValue::from_static("1"));
    response
}

/// The gateway-to-node call route: `POST /v1/call/{method}` with the raw
/// params as body. It answers 200 with the raw JSON result, 422 with a
/// JSON-RPC error object, or 503 with one when overloaded.
async fn call(
    State(state): State<Arc<NodeState>>,
    method: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A name that is not UTF-8 names no function; answer in the protocol.
    let Ok(Path(method)) = method else {
        let error = RpcError::new(
            codes::METHOD_NOT_FOUND,
            "method_not_found",
            "Method not found: the method name in the path is not UTF-8",
        );
        return error_reply(StatusCode::UNPROCESSABLE_ENTITY, &error);
    };
    // This route serves the gateway only (it checks the cluster token), so
    // the key name it forwards is believed.
    let budget = match CallBudget::from_headers(&headers) {
        Ok(budget) if state.token.presented_in(&headers) => {
            budget.with_key_from(&headers).with_grant_from(&headers)
        }
        Ok(budget) => budget.with_key_from(&headers),
        Err(error) => return error_reply(StatusCode::UNPROCESSABLE_ENTITY, &error),
    };
    let max = state.limits.max_body_bytes;
    let params = match axum::body::to_bytes(body, max).await {
        Ok(params) => params,
        Err(_) => {
            let error = RpcError::new(
                rpc::codes::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the params are larger than the limit of {max} bytes"),
            );
            return error_reply(StatusCode::PAYLOAD_TOO_LARGE, &error);
        }
    };
    match state
        .observed
        .run(&state.pool, method, params, budget)
        .await
    {
        Ok(result) => {
            let mut response = (StatusCode::OK, result).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) if error.is_unavailable() => {
            error_reply(StatusCode::SERVICE_UNAVAILABLE, &error)
        }
        Err(error) => error_reply(StatusCode::UNPROCESSABLE_ENTITY, &error),
    }
}

fn error_reply(status: StatusCode, error: &RpcError) -> Response {
    let mut response = (status, Json(error)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn health(State(state): State<Arc<NodeState>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "methods": state.pool.versions().methods(),
        "workers": state.pool.workers(),
        "in_flight": state.pool.in_flight(),
        "served": state.pool.served(),
        // For gateways that find the node by --node or --discover: which
        // module it runs, so they cache its cacheable functions' results.
        "module": &*state.pool.versions().summary(),
    }))
}

/// `GET /ready`: 503 while the node drains or has no room for a call.
async fn ready(State(state): State<Arc<NodeState>>) -> (StatusCode, Json<serde_json::Value>) {
    let reason = if state.observed.draining.load(Ordering::Acquire) {
        Some("draining")
    } else if !state.pool.has_room() {
        Some("no free capacity")
    } else {
        None
    };
    telemetry::ready::reply(
        reason,
        json!({
            "in_flight": state.pool.in_flight(),
            "workers": state.pool.workers(),
        }),
    )
}

/// `GET /metrics`: the Prometheus text format, with the load gauges read
/// now.
async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    let pool = &state.pool;
    telemetry::metrics::set_node_load(
        &state.observed.url,
        pool.in_flight(),
        pool.queued(),
        pool.workers(),
    );
    (
        [(header::CONTENT_TYPE, telemetry::metrics::CONTENT_TYPE)],
        telemetry::metrics::render(),
    )
        .into_response()
}
