//! The job API: `POST /v1/jobs`, `GET /v1/jobs/{id}[?wait=30s]`,
//! `DELETE /v1/jobs/{id}`, `GET /v1/jobs?state=...`. It sits behind the
//! same edge layer as calls: a key sees only its own jobs, and an
//! idempotency key is scoped to the API key that sent it.

use super::Jobs;
use super::model::{Enqueued, Job, JobState, ListQuery, NewJob, StoreError, now_ms};
use crate::rpc::{CallerKey, RpcError, codes};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest a `?wait=` holds a request; clients wait longer by asking again.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// How often a long poll looks at the store for changes made elsewhere.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// Jobs per page of a listing, unless `limit` asks for fewer.
const MAX_PAGE: usize = 1000;
/// The longest idempotency key accepted.
const MAX_KEY_BYTES: usize = 255;

/// The job routes over `jobs`.
pub fn router(jobs: Arc<Jobs>) -> Router {
    Router::new()
        .route("/v1/jobs", get(list).post(submit))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .with_state(jobs)
}

/// Job routes that answer 503 with `reason`: for a process whose job store
/// could not be opened, so that clients learn why instead of getting 404.
pub fn unavailable(reason: String) -> Router {
    let reason = Arc::new(reason);
    let refuse = move || {
        let reason = reason.clone();
        async move {
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                RpcError::new(codes::INTERNAL_ERROR, "jobs_unavailable", reason.as_str()),
            )
        }
    };
    Router::new()
        .route("/v1/jobs", axum::routing::any(refuse.clone()))
        .route("/v1/jobs/{id}", axum::routing::any(refuse))
}

/// The API key a request came with; jobs without keys share one scope.
fn scope(request_key: Option<&CallerKey>) -> String {
    request_key
        .map(|CallerKey(key)| key.as_str().to_owned())
        .unwrap_or_default()
}

fn problem(status: StatusCode, error: RpcError) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn store_failed(error: StoreError) -> Response {
    tracing::error!(%error, "the job store failed");
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        RpcError::new(
            codes::INTERNAL_ERROR,
            "job_store_unavailable",
            format!("{error}; retry in a moment"),
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn not_found(id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        RpcError::new(
            codes::INVALID_PARAMS,
            "job_not_found",
            format!(
                "no job '{id}' for this API key; it may have been purged after its retention (--job-retention)"
            ),
        ),
    )
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A job as the API shows it.
fn view(job: &Job) -> Value {
    let mut out = json!({
        "id": job.id,
        "method": job.method,
        "state": job.state.as_str(),
        "attempts": job.attempts,
        "created": rfc3339(job.created),
        "started": job.started.map(rfc3339),
        "finished": job.finished.map(rfc3339),
    });
    match job.state {
        JobState::Succeeded => {
            out["result"] = job
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or(Value::Null);
        }
        JobState::Failed | JobState::Cancelled => out["error"] = json!(job.error),
        JobState::Queued | JobState::Running => {
            if let Some(error) = &job.error {
                out["last_error"] = json!(error);
            }
        }
    }
    out
}

/// What `POST /v1/jobs` takes.
#[derive(Deserialize)]
struct Submission {
    method: String,
    #[serde(default)]
    params: Option<Box<serde_json::value::RawValue>>,
}

async fn submit(State(jobs): State<Arc<Jobs>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let scope = scope(parts.extensions.get::<CallerKey>());
    let max = jobs.settings.max_body_bytes;
    let body = match axum::body::to_bytes(body, max).await {
        Ok(body) => body,
        Err(error) => return crate::rpc::body_error(&error, max),
    };
    let submission: Submission = match serde_json::from_slice(&body) {
        Ok(submission) => submission,
        Err(error) => {
            return problem(
                StatusCode::BAD_REQUEST,
                RpcError::invalid_request(format!(
                    "the body is not a job ({error}); send {{\"method\": \"name\", \"params\": [...] or {{...}}}}"
                )),
            );
        }
    };
    if let Some(refusal) = check(&jobs, &submission) {
        return refusal;
    }
    let key = match idempotency_key(&parts.headers) {
        Ok(key) => key,
        Err(error) => return problem(StatusCode::BAD_REQUEST, error),
    };
    let params = submission
        .params
        .map(|p| p.get().to_owned())
        .unwrap_or_default();
    let new = NewJob {
        body_hash: body_hash(&submission.method, &params),
        scope,
        method: submission.method,
        params,
        idempotency_key: key,
    };
    match jobs.store.enqueue(new).await {
        Ok(Enqueued::Created(job)) => {
            tracing::info!(job = %job.id, method = %job.method, "job submitted");
            jobs.submitted.notify_waiters();
            let mut response = (
                StatusCode::ACCEPTED,
                Json(json!({ "id": job.id, "state": job.state.as_str() })),
            )
                .into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Ok(Enqueued::Existing(job)) => (StatusCode::OK, Json(view(&job))).into_response(),
        Err(error @ StoreError::IdempotencyConflict { .. }) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            RpcError::new(
                codes::INVALID_REQUEST,
                "idempotency_key_reused",
                error.to_string(),
            ),
        ),
        Err(error) => store_failed(error),
    }
}

/// Refuses a job that cannot run: a reserved or unknown method, params
/// that are neither an array nor an object.
fn check(jobs: &Jobs, submission: &Submission) -> Option<Response> {
    let method = &submission.method;
    if method.is_empty() || method.starts_with("rpc.") {
        return Some(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            RpcError::new(
                codes::METHOD_NOT_FOUND,
                "method_not_found",
                format!("'{method}' cannot be run as a job; name a function the module registers"),
            ),
        ));
    }
    let methods = jobs.dispatch.methods();
    if !methods.is_empty() && !methods.contains(method) {
        return Some(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            RpcError::method_not_found(method, &methods),
        ));
    }
    let structured = submission.params.as_ref().is_none_or(|p| {
        let text = p.get().trim_start();
        text.starts_with('[') || text.starts_with('{') || text == "null"
    });
    (!structured).then(|| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            RpcError::new(
                codes::INVALID_PARAMS,
                "invalid_params",
                "the job's params must be an array or an object, as in a JSON-RPC call",
            ),
        )
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, RpcError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.trim().is_empty() && key.len() <= MAX_KEY_BYTES => {
            Ok(Some(key.trim().to_owned()))
        }
        _ => Err(RpcError::invalid_request(format!(
            "the Idempotency-Key header must be 1 to {MAX_KEY_BYTES} visible ASCII characters"
        ))),
    }
}

/// A digest of what a submission asks for: the method and the params,
/// re-serialized so that whitespace does not count.
fn body_hash(method: &str, params: &str) -> String {
    let params = serde_json::from_str::<Value>(params)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let digest = Sha256::new()
        .chain_update(method.as_bytes())
        .chain_update([0])
        .chain_update(params.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of `name` in a query string.
fn query_value(query: &Option<String>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

async fn show(
    State(jobs): State<Arc<Jobs>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    key: Option<axum::Extension<CallerKey>>,
) -> Response {
    let scope = scope(key.as_ref().map(|k| &k.0));
    let wait = match query_value(&query, "wait")
        .as_deref()
        .map(humantime::parse_duration)
    {
        None => Duration::ZERO,
        Some(Ok(wait)) => wait.min(MAX_WAIT),
        Some(Err(error)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                RpcError::invalid_request(format!(
                    "?wait= must be a duration such as 30s ({error})"
                )),
            );
        }
    };
    let until = SystemTime::now() + wait;
    loop {
        let changed = jobs.changed.notified();
        let job = match jobs.store.get(&id).await {
            Ok(Some(job)) if job.scope == scope => job,
            Ok(_) => return not_found(&id),
            Err(error) => return store_failed(error),
        };
        let left = until
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        if job.state.is_final() || left.is_zero() {
            return Json(view(&job)).into_response();
        }
        let _ = tokio::time::timeout(left.min(WAIT_POLL), changed).await;
    }
}

async fn cancel(
    State(jobs): State<Arc<Jobs>>,
    Path(id): Path<String>,
    key: Option<axum::Extension<CallerKey>>,
) -> Response {
    let scope = scope(key.as_ref().map(|k| &k.0));
    match jobs.store.get(&id).await {
        Ok(Some(job)) if job.scope == scope => {
            if job.state.is_final() {
                return problem(
                    StatusCode::CONFLICT,
                    RpcError::new(
                        codes::INVALID_REQUEST,
                        "job_finished",
                        format!(
                            "job {id} is already {}; only queued or running jobs can be cancelled",
                            job.state.as_str()
                        ),
                    ),
                );
            }
        }
        Ok(_) => return not_found(&id),
        Err(error) => return store_failed(error),
    }
    match jobs.store.cancel(&id, now_ms()).await {
        Ok(Some(job)) => {
            jobs.stop(&id);
            jobs.changed.notify_waiters();
            tracing::info!(job = %id, "job cancelled");
            Json(view(&job)).into_response()
        }
        Ok(None) => not_found(&id),
        Err(error) => store_failed(error),
    }
}

async fn list(
    State(jobs): State<Arc<Jobs>>,
    RawQuery(query): RawQuery,
    key: Option<axum::Extension<CallerKey>>,
) -> Response {
    let state = match query_value(&query, "state").as_deref().map(JobState::parse) {
        None => None,
        Some(Some(state)) => Some(state),
        Some(None) => {
            return problem(
                StatusCode::BAD_REQUEST,
                RpcError::invalid_request(
                    "?state= must be one of queued, running, succeeded, failed, cancelled",
                ),
            );
        }
    };
    let limit = match query_value(&query, "limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(limit)) => limit.clamp(1, MAX_PAGE),
        Some(Err(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                RpcError::invalid_request(format!("?limit= must be a number from 1 to {MAX_PAGE}")),
            );
        }
    };
    let query = ListQuery {
        scope: scope(key.as_ref().map(|k| &k.0)),
        state,
        after: query_value(&query, "after"),
        limit,
    };
    match jobs.store.list(query).await {
        Ok(page) => {
            let next = (page.len() == limit).then(|| page.last().map(|j| j.id.clone()));
            Json(json!({
                "jobs": page.iter().map(view).collect::<Vec<_>>(),
                "next": next.flatten(),
            }))
            .into_response()
        }
        Err(error) => store_failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_hash_ignores_whitespace_but_not_content() {
        assert_eq!(body_hash("f", "[1, 2]"), body_hash("f", "[1,2]"));
        assert_ne!(body_hash("f", "[1,2]"), body_hash("f", "[2,1]"));
        assert_ne!(body_hash("f", "[1]"), body_hash("g", "[1]"));
    }
}
