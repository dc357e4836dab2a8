//! The JSON-RPC error object, and how every madrpc failure maps onto it.

use super::codes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A JSON-RPC error object: `code`, `message` and structured `data` (which
/// always carries a machine-readable `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// One of [`codes`].
    pub code: i64,
    /// What happened and what to do about it, for a person.
    pub message: String,
    /// Details for programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a `kind` in its data.
    pub fn new(code: i64, kind: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: Some(json!({ "kind": kind })),
        }
    }

    /// Adds a field to the error's data.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        let data = self.data.get_or_insert_with(|| json!({}));
        data[key] = value.into();
        self
    }

    /// The `kind` recorded in the data, if any.
    pub fn kind(&self) -> Option<&str> {
        self.data.as_ref()?.get("kind")?.as_str()
    }

    /// -32700: the body is not JSON.
    pub fn parse_error(detail: impl std::fmt::Display) -> Self {
        Self::new(
            codes::PARSE_ERROR,
            "parse_error",
            format!("Parse error: the body is not valid JSON ({detail})"),
        )
    }

    /// -32600: not a valid request object.
    pub fn invalid_request(detail: impl std::fmt::Display) -> Self {
        Self::new(
            codes::INVALID_REQUEST,
            "invalid_request",
            format!("Invalid Request: {detail}"),
        )
    }

    /// -32601 for `method`, listing what exists.
    pub fn method_not_found(method: &str, available: &[String]) -> Self {
        Self::new(
            codes::METHOD_NOT_FOUND,
            "method_not_found",
            format!(
                "Method not found: no function is registered as '{method}'; available: {}",
                available.join(", ")
            ),
        )
        .with("available", available.to_vec())
    }

    /// -32603 for a failure of madrpc itself.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(
            codes::INTERNAL_ERROR,
            "internal",
            format!("Internal error: {detail}"),
        )
    }

    /// -32010: the node (or every node) is at capacity.
    pub fn overloaded(retry_after_secs: u64) -> Self {
        Self::new(
            codes::OVERLOADED,
            "overloaded",
            format!("Overloaded: every worker is busy and the queue is full; retry in {retry_after_secs} s or add nodes"),
        )
        .with("retry_after_secs", retry_after_secs)
    }

    /// Whether a client should retry this call later (HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self.code, codes::OVERLOADED | codes::NO_HEALTHY_NODE)
    }
}
