//! The `/ready` answer of every process: 200 with `"status": "ready"`, or
//! 503 with why not, beside the figures each process adds. `/health`
//! stays the liveness check.

use axum::http::StatusCode;
use axum::response::Json;
use serde_json::Value;

/// The reply for `reason` (`None` when ready); `details` is a JSON object
/// of the process's own figures.
pub fn reply(reason: Option<&'static str>, mut details: Value) -> (StatusCode, Json<Value>) {
    if let Some(fields) = details.as_object_mut() {
        fields.insert("ready".into(), Value::Bool(reason.is_none()));
        fields.insert("status".into(), Value::from(reason.unwrap_or("ready")));
    }
    let status = match reason {
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::OK,
    };
    (status, Json(details))
}
