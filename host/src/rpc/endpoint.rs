//! The JSON-RPC 2.0 HTTP endpoint, shared by the gateway and the nodes:
//! transport checks (content type, body size, batch length), batches run in
//! parallel, notifications answered with nothing, `rpc.*` names reserved.
//! What a call does is up to the [`Dispatch`] behind it.

use super::request::{Entry, Incoming};
use super::response::{Reply, write_batch, write_reply};
use super::{RpcError, codes, openrpc};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::future::Future;
use std::sync::Arc;

/// One call as the endpoint hands it on.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The method name.
    pub method: String,
    /// The params as raw JSON, empty when absent.
    pub params: Bytes,
    /// Depth and inherited deadline, from the budget headers.
    pub budget: super::CallBudget,
}

/// What runs calls behind an endpoint: a node's worker pool, or the
/// gateway's balancer.
pub trait Dispatch: Send + Sync + 'static {
    /// Runs one call, returning the raw JSON result.
    fn call(&self, request: CallRequest) -> impl Future<Output = Result<Bytes, RpcError>> + Send;

    /// The method names that can be called (for `rpc.discover`).
    fn methods(&self) -> Vec<String>;

    /// The answer to a built-in of the original MaDRPC (`_metrics`,
    /// `_info`), when this dispatch has one.
    fn builtin(&self, _name: &str) -> Option<serde_json::Value> {
        None
    }

    /// The methods whose results are cached, with their time to live in
    /// milliseconds (for `rpc.discover`).
    fn cached_methods(&self) -> std::collections::BTreeMap<String, u64> {
        Default::default()
    }

    /// The id of the module version calls start on now (for
    /// `rpc.discover`), when known.
    fn module_version(&self) -> Option<String> {
        None
    }
}

/// Transport limits of an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointLimits {
    /// Largest request body accepted. Default 8 MiB.
    pub max_body_bytes: usize,
    /// Most entries in one batch. Default 1,000.
    pub max_batch: usize,
    /// Most bytes of results one batch response carries; entries past it
    /// get a -32007 error instead of their result. Default 64 MiB.
    pub max_response_bytes: usize,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_batch: 1000,
            max_response_bytes: 64 << 20,
        }
    }
}

/// Most entries of one batch in flight at once.
const BATCH_CONCURRENCY: usize = 64;

struct Endpoint<D> {
    dispatch: Arc<D>,
    limits: EndpointLimits,
}

/// A router serving JSON-RPC at `POST /`.
pub fn router<D: Dispatch>(dispatch: Arc<D>, limits: EndpointLimits) -> Router {
    Router::new()
        .route("/", post(handle::<D>))
        .with_state(Arc::new(Endpoint { dispatch, limits }))
}

async fn handle<D: Dispatch>(
    State(endpoint): State<Arc<Endpoint<D>>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if !is_json(headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RpcError::invalid_request(
                "the Content-Type must be application/json (curl: -H 'Content-Type: application/json')",
            ),
        );
    }
    let max = endpoint.limits.max_body_bytes;
    let body = match axum::body::to_bytes(body, max).await {
        Ok(body) => body,
        Err(error) => return body_error(&error, max),
    };
    let mut budget = match super::CallBudget::from_headers(headers) {
        Ok(budget) => budget,
        Err(error) => return error_response(StatusCode::BAD_REQUEST, error),
    };
    if parts.extensions.get::<super::TreeMember>().is_none() {
        budget.depth = 0;
        budget.tree = None;
        budget.module = None;
    }
    budget.key = parts
        .extensions
        .get::<super::CallerKey>()
        .map(|super::CallerKey(key)| *key);
    let incoming = match super::parse(&body) {
        Ok(incoming) => incoming,
        Err(error) => return error_response(StatusCode::BAD_REQUEST, error),
    };
    match incoming {
        Incoming::Single(entry) => {
            let hint = super::CacheHint::new(no_cache(headers));
            let Some(reply) =
                super::CacheHint::scope(hint.clone(), run(&endpoint, entry, budget, &body)).await
            else {
                return StatusCode::NO_CONTENT.into_response();
            };
            let status = match &reply.outcome {
                Err(error) if error.code == codes::INVALID_REQUEST => StatusCode::BAD_REQUEST,
                Err(error) if error.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::OK,
            };
            let mut out = Vec::with_capacity(128);
            write_reply(&mut out, &reply);
            let mut response = json_response(status, out);
            if let Some(outcome) = hint.outcome() {
                response.headers_mut().insert(
                    super::CACHE_HEADER,
                    HeaderValue::from_static(outcome.as_str()),
                );
            }
            response
        }
        Incoming::Batch(entries) => {
            let limit = endpoint.limits.max_batch;
            if entries.len() > limit {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    RpcError::new(
                        codes::BATCH_TOO_LARGE,
                        "batch_too_large",
                        format!(
                            "the batch has {} entries, over the limit of {limit}; split it",
                            entries.len()
                        ),
                    )
                    .with("limit", limit),
                );
            }
            // Entries run in parallel, but a few dozen at a time: a batch of
            // a thousand must not overrun the nodes' queues on its own.
            let slots = tokio::sync::Semaphore::new(BATCH_CONCURRENCY);
            let room = std::sync::atomic::AtomicUsize::new(endpoint.limits.max_response_bytes);
            let replies: Vec<Reply> = futures::future::join_all(entries.into_iter().map(|entry| {
                let slots = &slots;
                let endpoint = &endpoint;
                let room = &room;
                let body = &body;
                let hint = super::CacheHint::new(no_cache(headers));
                async move {
                    let _slot = slots.acquire().await.ok();
                    // Each entry has its own hint, so entries use the cache
                    // (and honour no-cache); one header cannot tell about
                    // all of them, so a batch response has none.
                    let reply =
                        super::CacheHint::scope(hint, run(endpoint, entry, budget, body)).await;
                    reply.map(|reply| within(reply, room, endpoint.limits.max_response_bytes))
                }
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
            match write_batch(&replies) {
                Some(out) => json_response(StatusCode::OK, out),
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
    }
}

/// Keeps a batch response within its byte budget: a result that does not
/// fit in what `room` has left becomes a -32007 error.
fn within<'a>(
    mut reply: Reply<'a>,
    room: &std::sync::atomic::AtomicUsize,
    limit: usize,
) -> Reply<'a> {
    use std::sync::atomic::Ordering;
    if let Ok(result) = &reply.outcome {
        let size = result.len();
        let taken = room.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            left.checked_sub(size)
        });
        if taken.is_err() {
            reply.outcome = Err(RpcError::new(
                codes::PAYLOAD_TOO_LARGE,
                "batch_response_too_large",
                format!(
                    "the batch's results add up to more than the response limit of {limit} bytes (--max-response); split the batch"
                ),
            )
            .with("limit_bytes", limit));
        }
    }
    reply
}

/// Runs one entry; `None` for a notification, which gets no reply. `body`
/// is the request body the entry was parsed from.
async fn run<'a, D: Dispatch>(
    endpoint: &Endpoint<D>,
    entry: Entry<'a>,
    budget: super::CallBudget,
    body: &Bytes,
) -> Option<Reply<'a>> {
    let call = match entry {
        Entry::Invalid { error, id } => {
            return Some(Reply {
                id,
                outcome: Err(error),
            });
        }
        Entry::Call(call) => call,
    };
    let builtin = match call.method.as_ref() {
        "_metrics" | "_info" => endpoint.dispatch.builtin(&call.method),
        _ => None,
    };
    let outcome = if call.method == "rpc.discover" {
        let document = openrpc::document(
            &endpoint.dispatch.methods(),
            &endpoint.dispatch.cached_methods(),
            endpoint.dispatch.module_version().as_deref(),
        );
        Ok(Bytes::from(document.to_string()))
    } else if let Some(answer) = builtin {
        Ok(Bytes::from(answer.to_string()))
    } else if call.method.starts_with("rpc.") {
        Err(RpcError::new(
            codes::METHOD_NOT_FOUND,
            "method_not_found",
            format!(
                "Method not found: '{}' is reserved (names starting with 'rpc.' belong to JSON-RPC); rpc.discover is the only one madrpc serves",
                call.method
            ),
        ))
    } else {
        let params = call
            .params
            .map(|params| part_of(body, params.get().as_bytes()))
            .unwrap_or_default();
        endpoint
            .dispatch
            .call(CallRequest {
                method: call.method.into_owned(),
                params,
                budget,
            })
            .await
    };
    call.id.map(|id| Reply {
        id: Some(id),
        outcome,
    })
}

/// `part`, a slice of `body`, as `Bytes` sharing the body's memory: large
/// params are not copied on their way to the guest.
fn part_of(body: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    if start <= body.len() && part.len() <= body.len() - start {
        body.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// Whether the client sent `Cache-Control: no-cache` (or `no-store`): run
/// the call even when a cached result exists.
fn no_cache(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| {
            let directive = directive.trim();
            directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime.eq_ignore_ascii_case("application/json-rpc")
        })
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A response with one error object and a null id.
pub(crate) fn error_response(status: StatusCode, error: RpcError) -> Response {
    let mut out = Vec::with_capacity(128);
    write_reply(
        &mut out,
        &Reply {
            id: None,
            outcome: Err(error),
        },
    );
    json_response(status, out)
}

/// The answer to a request body that could not be read: over the size
/// limit (413), stalled past the body timeout (408), or broken off (400).
pub(crate) fn body_error(error: &axum::Error, max: usize) -> Response {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                RpcError::new(
                    codes::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the request body is larger than the limit of {max} bytes"),
                )
                .with("limit_bytes", max),
            );
        }
        if cause.is::<tower_http::timeout::TimeoutError>() {
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                RpcError::invalid_request(
                    "the request body stalled past the body timeout; send the body without pauses",
                ),
            );
        }
        source = cause.source();
    }
    error_response(
        StatusCode::BAD_REQUEST,
        RpcError::invalid_request(format!("the request body could not be read: {error}")),
    )
}
