//! The module routes: deploys and rollbacks for operators holding the
//! admin token, the version list for anyone, and downloads of versions for
//! nodes holding the cluster token.
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `POST /v1/modules` | admin | the body is a module: hand it to every node, then make it current |
//! | `POST /v1/modules/rollback` | admin | make the previous version current again |
//! | `GET /v1/modules` | anyone | the versions kept, and which is current |
//! | `GET /v1/modules/current`, `GET /v1/modules/{id}` | nodes (or admin) | a version's bytes |

use super::deploy::{DeployError, Deployments};
use super::registry::Registry;
use crate::cluster::ClusterToken;
use crate::modules::{MODULE_HEADER, ModuleId, Version};
use crate::rpc::{RpcError, codes};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// Largest module a deploy takes: a 1 MB script makes an 11 MB module, and
/// this leaves room for much larger ones.
pub const MAX_MODULE_BYTES: usize = 256 << 20;

#[derive(Clone)]
struct Admin {
    deployments: Arc<Deployments>,
    registry: Arc<Registry>,
    /// The admin token; unset: deploys are off.
    admin: Arc<ClusterToken>,
    cluster: Arc<ClusterToken>,
}

/// The module routes, to merge into the gateway's router (outside the API
/// keys and rate limits of client calls: they have their own tokens).
pub(super) fn routes(
    deployments: Arc<Deployments>,
    registry: Arc<Registry>,
    admin: Arc<ClusterToken>,
    cluster: Arc<ClusterToken>,
) -> Router {
    Router::new()
        .route("/v1/modules", get(list).post(deploy))
        .route("/v1/modules/rollback", post(rollback))
        .route("/v1/modules/current", get(current))
        .route("/v1/modules/{id}", get(download))
        .with_state(Admin {
            deployments,
            registry,
            admin,
            cluster,
        })
}

impl Admin {
    /// The refusal of a deploy without the admin token, or `None`.
    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        if !self.admin.is_set() {
            return Some(error(
                StatusCode::FORBIDDEN,
                RpcError::new(
                    codes::UNAUTHORIZED,
                    "deploys_disabled",
                    "Deploys are off on this grid: start the gateway (or serve) with --admin-token or MADRPC_ADMIN_TOKEN set to a secret, and give `madrpc deploy` the same token",
                ),
            ));
        }
        if self.admin.presented_in(headers) {
            return None;
        }
        tracing::warn!("refused a deploy without the admin token");
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            RpcError::new(
                codes::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized: deploying needs the grid's admin token as `Authorization: Bearer TOKEN`; give `madrpc deploy` the token the gateway was started with (--admin-token or MADRPC_ADMIN_TOKEN)",
            ),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Some(response)
    }

    /// Whether a download may pass: a node with the cluster token, or an
    /// operator with the admin token.
    fn may_download(&self, headers: &HeaderMap) -> bool {
        self.cluster.admits(headers) || self.admin.presented_in(headers)
    }
}

fn error(status: StatusCode, error: RpcError) -> Response {
    (status, Json(error)).into_response()
}

fn deploy_error(failure: DeployError) -> Response {
    let status = match failure {
        DeployError::NothingToRollBack => StatusCode::CONFLICT,
        DeployError::Load(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DeployError::NodesLagging { .. } => StatusCode::SERVICE_UNAVAILABLE,
        DeployError::NodesCannotFollow(_) => StatusCode::CONFLICT,
        DeployError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let kind = match failure {
        DeployError::NothingToRollBack => "nothing_to_roll_back",
        DeployError::Load(_) => "invalid_module",
        _ => "deploy_failed",
    };
    error(
        status,
        RpcError::new(codes::INTERNAL_ERROR, kind, failure.to_string()),
    )
}

/// `POST /v1/modules`: deploys the module in the body.
async fn deploy(State(admin): State<Admin>, headers: HeaderMap, body: Body) -> Response {
    if let Some(refusal) = admin.refuse(&headers) {
        // Read the module first: a client still sending it when the
        // connection closed would see a broken pipe, not the refusal.
        let _ = axum::body::to_bytes(body, MAX_MODULE_BYTES).await;
        return refusal;
    }
    let wasm = match axum::body::to_bytes(body, MAX_MODULE_BYTES).await {
        Ok(wasm) => wasm,
        Err(e) => {
            return crate::rpc::body_error(&e, MAX_MODULE_BYTES);
        }
    };
    let version = match Version::check(wasm) {
        Ok(version) => Arc::new(version),
        Err(failure) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                RpcError::new(codes::INVALID_PARAMS, "invalid_module", failure.to_string()),
            );
        }
    };
    tracing::info!(module = %version.id, script = %version.manifest.script, "deploying a module version");
    // A task of its own: a client that goes away does not stop a deploy
    // halfway, as a `kubectl rollout` goes on without its terminal.
    let task = tokio::spawn(async move {
        admin
            .deployments
            .activate(version, &admin.registry, "deploy")
            .await
    });
    finish(task.await)
}

/// `POST /v1/modules/rollback`: the previous version becomes current.
async fn rollback(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Some(refusal) = admin.refuse(&headers) {
        return refusal;
    }
    let task = tokio::spawn(async move { admin.deployments.rollback(&admin.registry).await });
    finish(task.await)
}

/// The answer to a deploy or rollback.
fn finish(
    outcome: Result<Result<super::Activated, DeployError>, tokio::task::JoinError>,
) -> Response {
    match outcome {
        Ok(Ok(done)) => Json(done).into_response(),
        Ok(Err(failure)) => deploy_error(failure),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            RpcError::internal(format!("the deploy stopped: {e}")),
        ),
    }
}

/// `GET /v1/modules`: the versions kept.
async fn list(State(admin): State<Admin>) -> Json<serde_json::Value> {
    Json(admin.deployments.list())
}

/// `GET /v1/modules/current`: the current version's bytes, for a node
/// started without `--module`.
async fn current(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if !admin.may_download(&headers) {
        return unauthorized_download();
    }
    match admin.deployments.current() {
        Some(version) => module_reply(&version),
        None => error(
            StatusCode::NOT_FOUND,
            RpcError::new(
                codes::METHOD_NOT_FOUND,
                "no_module",
                "No module is deployed on this gateway yet: deploy one with `madrpc deploy app.js --url GATEWAY`",
            ),
        ),
    }
}

/// `GET /v1/modules/{id}`: one version's bytes.
async fn download(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !admin.may_download(&headers) {
        return unauthorized_download();
    }
    match ModuleId::parse(&id).and_then(|id| admin.deployments.version(id)) {
        Some(version) => module_reply(&version),
        None => error(
            StatusCode::NOT_FOUND,
            RpcError::new(
                codes::METHOD_NOT_FOUND,
                "no_module",
                format!("this gateway keeps no module version '{id}'; GET /v1/modules lists them"),
            ),
        ),
    }
}

fn unauthorized_download() -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        RpcError::new(
            codes::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized: module downloads need the cluster's join token (nodes) or the admin token as `Authorization: Bearer TOKEN`",
        ),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn module_reply(version: &Version) -> Response {
    let mut response = version.wasm.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    if let Ok(id) = HeaderValue::from_str(&version.id.to_string()) {
        headers.insert(MODULE_HEADER, id);
    }
    response
}
