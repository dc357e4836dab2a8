//! Sending one call to one node over the internal call route, and sorting
//! the outcome into what may be retried elsewhere and what may not. Every
//! request carries the cluster credential, and every reply is checked to be
//! the node protocol's, within a size cap, before anything of it reaches a
//! client: a URL that leads somewhere else cannot turn the gateway into a
//! proxy.

use super::registry::NodeEntry;
use crate::cluster::{ClusterToken, NODE_REPLY_HEADER};
use crate::http::{HttpClient, HttpError};
use crate::rpc::{CallBudget, RpcError, codes};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use std::sync::Arc;
use std::time::Duration;

/// Bytes a node's reply may have beyond the largest result, for an error
/// object's message and data.
const REPLY_MARGIN: usize = 64 << 10;

/// How the gateway talks to nodes: a pooled client, the credential it
/// presents, and the largest reply it reads.
#[derive(Clone)]
pub struct NodeClient {
    /// Pooled connections.
    pub http: HttpClient,
    /// Presented as `Authorization: Bearer` on every request to a node.
    pub token: Arc<ClusterToken>,
    /// The largest reply body read from a node; larger ones fail the node.
    pub max_reply_bytes: usize,
}

impl NodeClient {
    /// A client that reads replies up to `max_result_bytes` plus a margin.
    pub fn new(http: HttpClient, token: Arc<ClusterToken>, max_result_bytes: usize) -> Self {
        Self {
            http,
            token,
            max_reply_bytes: max_result_bytes.saturating_add(REPLY_MARGIN),
        }
    }

    /// Sends a request to a node with the cluster credential and reads the
    /// reply within `limit` bytes and `timeout`.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        extra: &[(&'static str, String)],
        limit: usize,
        timeout: Duration,
    ) -> Result<(hyper::http::response::Parts, Bytes), SendError> {
        let mut request = Request::builder().method(method).uri(url);
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(authorization) = self.token.authorization() {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        for (name, value) in extra {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| {
            SendError::Http(HttpError::BadUrl {
                url: url.to_owned(),
                detail: e.to_string(),
            })
        })?;
        let unreachable = |detail: String| {
            SendError::Http(HttpError::Unreachable {
                url: url.to_owned(),
                detail,
            })
        };
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(crate::http::describe(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, limit).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    SendError::TooLarge(limit)
                } else {
                    unreachable(format!("the response broke off: {e}"))
                }
            })?;
            Ok((parts, body.to_bytes()))
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| {
            SendError::Http(HttpError::Timeout {
                url: url.to_owned(),
                timeout,
            })
        })?
    }
}

/// Why [`NodeClient::send`] got no usable reply.
#[derive(Debug)]
pub(super) enum SendError {
    /// No reply: the exchange failed or timed out.
    Http(HttpError),
    /// The reply was longer than the limit (in bytes).
    TooLarge(usize),
}

/// Whether a reply is marked as the node protocol's and declared as JSON.
pub(super) fn is_node_reply(parts: &hyper::http::response::Parts) -> bool {
    let marked = parts
        .headers
        .get(NODE_REPLY_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    marked && json
}

/// How a forwarded call ended when it produced no result.
#[derive(Debug)]
pub enum ForwardError {
    /// The call ran and failed (guest error, limit, bad params), or the
    /// node's reply was not the node protocol's: final, never retried.
    Call(RpcError),
    /// The node refused the call before running it (overloaded, or it
    /// refused the gateway's credential): safe to retry.
    Overloaded(RpcError),
    /// No answer: connection refused or reset, node died. Nothing can have
    /// been answered; safe to retry, since a call has no effects outside
    /// its sandbox.
    Unreachable(HttpError),
    /// The node no longer holds the module version the call is pinned to
    /// (it dropped it just before the call arrived): nothing ran, and
    /// another node that holds it may take the call. The node is fine.
    VersionGone(RpcError),
}

/// The kind of a node's refusal of a call pinned to a version it does not
/// hold.
const VERSION_GONE: &str = "module_unavailable";

/// Sorts a node's error into final, or worth another node.
fn sort(error: RpcError) -> ForwardError {
    if error.kind() == Some(VERSION_GONE) {
        ForwardError::VersionGone(error)
    } else {
        ForwardError::Call(error)
    }
}

/// Sends `method(params)` to `node`: over HTTP, or straight to its pool
/// when it runs in this process.
pub async fn forward(
    client: &NodeClient,
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
            Err(error) => Err(sort(error)),
        };
    }
    let url = format!("{}/v1/call/{}", node.url, encode_path_segment(method));
    // A job's call may run as long as its grant says, past the call timeout.
    let timeout = budget.grant.map_or(timeout, |grant| grant.deadline);
    let timeout = budget
        .remaining()
        .map_or(timeout, |left| timeout.min(left + Duration::from_secs(1)));
    let limit = client.max_reply_bytes;
    // Health checks may find the node failed while the call waits on it:
    // then the call is given up here and sent elsewhere.
    let failure = node.failure();
    let headers = budget.to_headers();
    let send = client.send(Method::POST, &url, params, &headers, limit, timeout);
    let reply = tokio::select! {
        reply = send => reply,
        _ = failure => {
            return Err(ForwardError::Unreachable(HttpError::Unreachable {
                url: url.clone(),
                detail: "the node was found failed while the call was in flight".into(),
            }));
        }
    };
    let (parts, body) = match reply {
        Ok(reply) => reply,
        Err(SendError::Http(error)) => return Err(ForwardError::Unreachable(error)),
        Err(SendError::TooLarge(limit)) => {
            return Err(refuse(node, &format!("a reply over {limit} bytes")));
        }
    };
    if !is_node_reply(&parts) {
        return Err(refuse(
            node,
            &format!("HTTP {} that is not a madrpc node reply", parts.status),
        ));
    }
    match parts.status {
        StatusCode::OK => match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            Ok(_) => Ok(body),
            Err(_) => Err(refuse(node, "a result that is not JSON")),
        },
        StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::UNAUTHORIZED => {
            let Ok(error) = serde_json::from_slice::<RpcError>(&body) else {
                return Err(refuse(node, "an error that is not a JSON-RPC error object"));
            };
            match parts.status {
                StatusCode::SERVICE_UNAVAILABLE => Err(ForwardError::Overloaded(error)),
                StatusCode::UNAUTHORIZED => {
                    tracing::warn!(node = %node.url, "the node refused the cluster credential: it runs with another join token");
                    node.eject();
                    Err(ForwardError::Overloaded(RpcError::new(
                        codes::NODE_FAILED,
                        "node_failed",
                        "the node chosen for the call does not accept this gateway's join token, and no other node could take the call; start nodes with the gateway's current token",
                    )))
                }
                _ => Err(sort(error)),
            }
        }
        status => Err(refuse(node, &format!("HTTP {status}"))),
    }
}

/// A reply that is not the node protocol's: the client gets `node_failed`
/// (never the body), and the node leaves rotation.
fn refuse(node: &NodeEntry, what: &str) -> ForwardError {
    tracing::warn!(node = %node.url, reply = what, "a node sent a reply outside the node protocol; dropped it and ejected the node");
    node.eject();
    ForwardError::Call(RpcError::new(
        codes::NODE_FAILED,
        "node_failed",
        format!(
            "the node running the call sent {what} instead of a madrpc node reply; the gateway dropped it and took the node out of rotation. Retry the call; if it keeps failing, check what runs at the node's address"
        ),
    ))
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
