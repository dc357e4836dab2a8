//! How the gateway talks to a node over HTTP: a pooled client that
//! presents the cluster credential and reads replies within a size cap. The
//! health checks use it, and the call channel opens through it.

use crate::cluster::{ClusterToken, NODE_REPLY_HEADER};
use crate::http::{HttpClient, HttpError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, header};
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
