//! A small JSON-RPC client for the `call` command and for tools.

use crate::http::{self, HttpClient, HttpError};
use crate::rpc::RpcError;
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;

/// Why a call made through the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway could not be reached or did not answer in time.
    #[error("{0}; is the gateway running (`madrpc serve` or `madrpc gateway`) and is --url right?")]
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
}

/// Calls methods on one JSON-RPC endpoint.
pub struct RpcClient {
    http: HttpClient,
    url: String,
    timeout: Duration,
    key: Option<String>,
}

impl RpcClient {
    /// A client for `url` (e.g. `http://127.0.0.1:8080/`).
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        Self {
            http: http::client(),
            url: url.into(),
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
        let headers: Vec<(&str, String)> = self
            .key
            .iter()
            .map(|key| ("authorization", format!("Bearer {key}")))
            .collect();
        let (status, _, body) =
            http::post_json_with(&self.http, &self.url, body, self.timeout, &headers).await?;
        let unexpected = || ClientError::Unexpected {
            url: self.url.clone(),
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
