//! Sending one call to one node, over its call channel (or its HTTP call
//! route when it has none), and sorting the outcome into what may be
//! retried elsewhere and what may not. The channel is opened with the
//! cluster credential, and every reply is checked to be the node
//! protocol's, within a size cap, before anything of it reaches a client: a
//! URL that leads somewhere else cannot turn the gateway into a proxy.

use super::channel::{ChannelError, Outcome};
use super::node_client::{NodeClient, SendError, is_node_reply};
use super::registry::NodeEntry;
use crate::http::HttpError;
use crate::rpc::{CallBudget, RpcError, codes};
use crate::wire::Tag;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::time::Duration;

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
    // A job's call may run as long as its grant says, past the call timeout.
    let timeout = budget.grant.map_or(timeout, |grant| grant.deadline);
    let timeout = budget
        .remaining()
        .map_or(timeout, |left| timeout.min(left + Duration::from_secs(1)));
    let timed_out = || {
        ForwardError::Unreachable(HttpError::Timeout {
            url: node.url.clone(),
            timeout,
        })
    };
    // Health checks may find the node failed while the call waits on it:
    // then the call is given up here and sent elsewhere.
    let failure = node.failure();
    let headers = budget.to_headers();
    if !node.link.unsupported() {
        let call = node
            .link
            .call(client, &node.url, method, &headers, params.clone());
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, call) => outcome.map_err(|_| timed_out())?,
            _ = failure => {
                node.link.reset();
                return Err(found_failed(&node.url));
            }
        };
        return match outcome {
            Ok(Outcome::Reply(Tag::Ok, body)) => check_result(node, body),
            Ok(Outcome::Reply(Tag::Unavailable, body)) => {
                Err(ForwardError::Overloaded(node_error(node, &body)?))
            }
            Ok(Outcome::Reply(_, body)) => Err(sort(node_error(node, &body)?)),
            Ok(Outcome::Oversized(len)) => Err(refuse(
                node,
                &format!("a reply of {len} bytes, over the limit"),
            )),
            Err(ChannelError::Broken(detail)) => {
                Err(ForwardError::Unreachable(HttpError::Unreachable {
                    url: node.url.clone(),
                    detail,
                }))
            }
            Err(ChannelError::Refused(parts)) => Err(refused(node, parts.status)),
            // An older node: the HTTP route below.
            Err(ChannelError::Unsupported) => {
                let failure = node.failure();
                over_http(client, node, method, params, &headers, timeout, failure).await
            }
        };
    }
    over_http(client, node, method, params, &headers, timeout, failure).await
}

/// Sends a call on the node's HTTP call route, `POST /v1/call/{method}`.
async fn over_http(
    client: &NodeClient,
    node: &NodeEntry,
    method: &str,
    params: Bytes,
    headers: &[(&'static str, String)],
    timeout: Duration,
    failure: impl std::future::Future<Output = ()>,
) -> Result<Bytes, ForwardError> {
    let url = format!("{}/v1/call/{}", node.url, encode_path_segment(method));
    let limit = client.max_reply_bytes;
    let send = client.send(Method::POST, &url, params, headers, limit, timeout);
    let reply = tokio::select! {
        reply = send => reply,
        _ = failure => return Err(found_failed(&url)),
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
        StatusCode::OK => check_result(node, body),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::PAYLOAD_TOO_LARGE => {
            Err(sort(node_error(node, &body)?))
        }
        StatusCode::SERVICE_UNAVAILABLE => Err(ForwardError::Overloaded(node_error(node, &body)?)),
        status => Err(refused(node, status)),
    }
}

/// A call given up because health checks found its node failed while it
/// waited: it is sent elsewhere.
fn found_failed(url: &str) -> ForwardError {
    ForwardError::Unreachable(HttpError::Unreachable {
        url: url.to_owned(),
        detail: "the node was found failed while the call was in flight".into(),
    })
}

/// A result, once it is known to be JSON.
fn check_result(node: &NodeEntry, body: Bytes) -> Result<Bytes, ForwardError> {
    match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        Ok(_) => Ok(body),
        Err(_) => Err(refuse(node, "a result that is not JSON")),
    }
}

/// A node's error object; anything else fails the node.
fn node_error(node: &NodeEntry, body: &[u8]) -> Result<RpcError, ForwardError> {
    serde_json::from_slice::<RpcError>(body)
        .map_err(|_| refuse(node, "an error that is not a JSON-RPC error object"))
}

/// A node that answered with an HTTP status instead of a reply: it refused
/// the cluster credential (401), or it is not a madrpc node.
fn refused(node: &NodeEntry, status: StatusCode) -> ForwardError {
    if status == StatusCode::UNAUTHORIZED {
        tracing::warn!(node = %node.url, "the node refused the cluster credential: it runs with another join token");
        node.eject();
        return ForwardError::Overloaded(RpcError::new(
            codes::NODE_FAILED,
            "node_failed",
            "the node chosen for the call does not accept this gateway's join token, and no other node could take the call; start nodes with the gateway's current token",
        ));
    }
    refuse(
        node,
        &format!("HTTP {status} that is not a madrpc node reply"),
    )
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
    // `.` and `..` alone would be read as path steps; their dots are encoded.
    let dots = segment == "." || segment == "..";
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'~')
            || (byte == b'.' && !dots)
        {
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
        assert_eq!(encode_path_segment(".."), "%2E%2E");
        assert_eq!(encode_path_segment("."), "%2E");
    }
}
