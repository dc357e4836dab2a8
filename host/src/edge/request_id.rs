//! Request ids and trace context on every request of every listener. A
//! request keeps the client's `x-request-id` (a new one when it has none,
//! or one that is not an id) and joins the client's W3C `traceparent`
//! (a new trace when it has none); the request's headers are rewritten to
//! what this hop sends onward, so the call's budget carries both to nodes
//! and sub-calls. Everything the request causes here is logged inside a
//! `request` span with both ids, and the reply carries the request id.

use crate::telemetry::{REQUEST_ID_HEADER, RequestId, TRACEPARENT_HEADER, TraceParent};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The middleware (see the module's documentation).
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let (span, id_value) = hop(request.headers_mut());
    let mut response = next.run(request).instrument(span).await;
    if let Some(value) = id_value {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Takes this hop's request id and trace context from `headers`, rewrites
/// them to what the hop sends onward, and returns the hop's `request` span
/// with the id as a header value. Calls that arrive on the call channel,
/// without a request of their own, go through it too.
pub fn hop(headers: &mut HeaderMap) -> (tracing::Span, Option<HeaderValue>) {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = text(REQUEST_ID_HEADER)
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate);
    let trace = text(TRACEPARENT_HEADER)
        .and_then(TraceParent::parse)
        .map_or_else(TraceParent::start, TraceParent::child);
    let id_value = HeaderValue::from_str(id.as_str()).ok();
    if let Some(value) = &id_value {
        headers.insert(REQUEST_ID_HEADER, value.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&trace.to_string()) {
        headers.insert(TRACEPARENT_HEADER, value);
    }
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = %trace.trace_id_hex(),
        span_id = %trace.span_id_hex(),
    );
    (span, id_value)
}
