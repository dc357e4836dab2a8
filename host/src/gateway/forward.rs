//! Sending one call to one node over the internal call route, and sorting
//! the outcome into what may be retried elsewhere and what may not.

use super::registry::NodeEntry;
use crate::http::{self, HttpClient, HttpError};
use crate::rpc::{CallBudget, RpcError};
use bytes::Bytes;
use hyper::StatusCode;
use std::time::Duration;

/// How a forwarded call ended when it produced no result.
#[derive(Debug)]
pub enum ForwardError {
    /// The call ran and failed (guest error, limit, bad params): final,
    /// never retried.
    Call(RpcError),
    /// The node refused the call before running it: safe to retry.
    Overloaded(RpcError),
    /// No answer: connection refused or reset, node died. Nothing can have
    /// been answered; safe to retry, since a call has no effects outside
    /// its sandbox.
    Unreachable(HttpError),
}

/// Sends `method(params)` to `node`: over HTTP, or straight to its pool
/// when it runs in this process.
pub async fn forward(
    client: &HttpClient,
    node: &NodeEntry,
    method: &str,
    params: Bytes,
    budget: CallBudget,
    timeout: Duration,
) -> Result<Bytes, ForwardError> {
    if let Some(pool) = &node.pool {
        return match pool.execute(method.to_owned(), params, budget).await {
            Ok(result) => Ok(result),
            Err(error) if error.is_unavailable() => Err(ForwardError::Overloaded(error)),
            Err(error) => Err(ForwardError::Call(error)),
        };
    }
    let url = format!("{}/v1/call/{}", node.url, encode_path_segment(method));
    let timeout = budget
        .remaining()
        .map_or(timeout, |left| timeout.min(left + Duration::from_secs(1)));
    let (status, _, body) =
        http::post_json_with(client, &url, params, timeout, &budget.to_headers())
            .await
            .map_err(ForwardError::Unreachable)?;
    if status == StatusCode::OK {
        return Ok(body);
    }
    let error = serde_json::from_slice::<RpcError>(&body).unwrap_or_else(|_| {
        RpcError::internal(format!(
            "node {} answered HTTP {status}: {}",
            node.url,
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    });
    if status == StatusCode::SERVICE_UNAVAILABLE {
        Err(ForwardError::Overloaded(error))
    } else {
        Err(ForwardError::Call(error))
    }
}

/// Percent-encodes everything but unreserved characters, so any method name
/// survives as one path segment.
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_become_one_path_segment() {
        assert_eq!(encode_path_segment("monte_carlo.v2"), "monte_carlo.v2");
        assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_path_segment("π"), "%CF%80");
    }
}
