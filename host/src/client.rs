//! A small JSON-RPC client for the `call` command and for tools. Given
//! several gateways, it sends each call to the first and fails over to the
//! next when a gateway cannot take it.

use crate::http::{self, HttpClient, HttpError};
use crate::rpc::{RpcError, codes};
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;

/// Why a call made through the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway could not be reached or did not answer in time.
    #[error("{error}; {hint}", error = .0, hint = transport_hint(.0))]
    Transport(#[from] HttpError),
    /// The server answered with a JSON-RPC error.
    #[error("{}", .0.message)]
    Rpc(RpcError),
    /// The server answered with something that is not a JSON-RPC response.
    #[error("unexpected answer from {url}: HTTP {status}: {body}")]
    Unexpected {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The params given are not JSON.
    #[error("the params are not valid JSON: {0}")]
    BadParams(serde_json::Error),
    /// The client was given no URL to call.
    #[error("no gateway URL given; pass --url")]
    NoUrl,
}

/// What to do about a gateway that could not be reached: a certificate
/// that is not trusted needs its CA, anything else a running gateway.
fn transport_hint(error: &HttpError) -> &'static str {
    match error {
        HttpError::Unreachable { detail, .. } if detail.contains("certificate") => {
            "the gateway's TLS certificate is not trusted: pass the CA that signed it (or the self-signed certificate itself) with --ca FILE, and check that --url names a host the certificate is for"
        }
        _ => "is the gateway running (`madrpc serve` or `madrpc gateway`) and is --url right?",
    }
}

impl ClientError {
    /// Whether another gateway may take the call this one did not: it could
    /// not be reached (nothing ran), or it answered that it cannot take
    /// calls now (draining, overloaded, no healthy node). Anything else
    /// would fail the same way anywhere.
    fn worth_another_gateway(&self) -> bool {
        match self {
            ClientError::Transport(HttpError::Unreachable { .. }) => true,
            ClientError::Rpc(error) => {
                error.code == codes::OVERLOADED || error.code == codes::NO_HEALTHY_NODE
            }
            _ => false,
        }
    }
}

/// Calls methods on one JSON-RPC endpoint, or on the first of several
/// that can take the call.
pub struct RpcClient {
    http: HttpClient,
    urls: Vec<String>,
    timeout: Duration,
    key: Option<String>,
}

impl RpcClient {
    /// A client for `url` (e.g. `http://127.0.0.1:8080/`).
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        Self::with_failover(vec![url.into()], timeout)
    }

    /// A client for several gateways of one grid, tried in order for every
    /// call. Calls have no effects outside their sandbox, so a call a
    /// gateway could not take is safe to send to the next.
    pub fn with_failover(urls: Vec<String>, timeout: Duration) -> Self {
        Self {
            http: http::client(),
            urls,
            timeout,
            key: None,
        }
    }

    /// Sends `key` as `Authorization: Bearer` on every call.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Calls `method`. `params` is JSON text: an array or object is sent as
    /// is, any other value as the single positional argument.
    pub async fn call(&self, method: &str, params: Option<&str>) -> Result<Value, ClientError> {
        let params = match params {
            None => None,
            Some(text) => {
                let value: Value = serde_json::from_str(text).map_err(ClientError::BadParams)?;
                Some(if value.is_array() || value.is_object() {
                    value
                } else {
                    Value::Array(vec![value])
                })
            }
        };
        let mut request = serde_json::json!({"jsonrpc": "2.0", "method": method, "id": 1});
        if let Some(params) = params {
            request["params"] = params;
        }
        let body = Bytes::from(request.to_string());
        let mut urls = self.urls.iter().peekable();
        while let Some(url) = urls.next() {
            match self.call_at(url, body.clone()).await {
                Err(error) if error.worth_another_gateway() && urls.peek().is_some() => {
                    tracing::warn!(%url, %error, "the gateway cannot take the call; trying the next --url");
                }
                outcome => return outcome,
            }
        }
        Err(ClientError::NoUrl)
    }

    /// Sends one request to one gateway.
    async fn call_at(&self, url: &str, body: Bytes) -> Result<Value, ClientError> {
        let headers: Vec<(&str, String)> = self
            .key
            .iter()
            .map(|key| ("authorization", format!("Bearer {key}")))
            .collect();
        let (status, _, body) =
            http::post_json_with(&self.http, url, body, self.timeout, &headers).await?;
        let unexpected = || ClientError::Unexpected {
            url: url.to_owned(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        };
        let mut response: Value = serde_json::from_slice(&body).map_err(|_| unexpected())?;
        if let Some(error) = response.get_mut("error") {
            let error: RpcError = serde_json::from_value(error.take()).map_err(|_| unexpected())?;
            return Err(ClientError::Rpc(error));
        }
        response
            .get_mut("result")
            .map(Value::take)
            .ok_or_else(unexpected)
    }
}
