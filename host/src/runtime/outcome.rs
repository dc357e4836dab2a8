//! How a call ended, as a [`CallError`]: the error object the guest
//! reports, and the traps and host errors that stop it. Limits take
//! precedence over their symptoms.

use super::context::{Cancelled, DeadlinePassed, NeedsWorker};
use super::error::{CallError, GuestException};
use super::limits::Limits;
use super::state::CallState;
use serde::Deserialize;
use wasmtime::{Store, Trap};

/// The guest's error object (see `guest-sdk/src/error.rs`).
#[derive(Deserialize)]
struct GuestErrorJson {
    kind: String,
    name: String,
    message: String,
    #[serde(default)]
    stack: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
    /// The code and data of a sub-call's `RpcError` the function let escape.
    #[serde(default)]
    cause: Option<serde_json::Value>,
}

/// The call used up its CPU budget.
#[derive(Debug, thiserror::Error)]
#[error("the call used up its CPU budget")]
pub(super) struct CpuExhausted;

/// Maps an error object reported by the guest onto a [`CallError`].
pub(super) fn guest_error(
    payload: &[u8],
    method: &str,
    store: &Store<CallState>,
    limits: &Limits,
) -> CallError {
    let error: GuestErrorJson = match serde_json::from_slice(payload) {
        Ok(error) => error,
        Err(e) => return CallError::Internal(format!("undecodable guest error: {e}")),
    };
    match error.kind.as_str() {
        "method_not_found" => CallError::MethodNotFound {
            method: method.to_owned(),
            available: error.methods,
        },
        "invalid_params" => CallError::InvalidParams(error.message),
        "not_serializable" => CallError::NotSerializable(error.message),
        "never_settled" => CallError::NeverSettled,
        "stack_overflow" => CallError::StackOverflow,
        "out_of_memory" => CallError::MemoryExceeded {
            limit: limits.memory_bytes,
        },
        _ if store.data().limiter.hit => CallError::MemoryExceeded {
            limit: limits.memory_bytes,
        },
        "threw" => {
            escaped_limit(error.cause.as_ref()).unwrap_or(CallError::Threw(GuestException {
                name: error.name,
                message: error.message,
                stack: error.stack,
                cause: error.cause.map(Box::new),
            }))
        }
        _ => CallError::GuestCrashed(error.message),
    }
}

/// A sub-call refused for the depth or sub-call limit stops the whole chain
/// of calls: when the function lets that `RpcError` escape, the call fails
/// with the same limit rather than as a thrown error.
fn escaped_limit(cause: Option<&serde_json::Value>) -> Option<CallError> {
    let cause = cause?;
    let limit = cause.get("limit").and_then(serde_json::Value::as_u64);
    let limit = u32::try_from(limit?).ok()?;
    match cause.get("kind")?.as_str()? {
        "call_depth_exceeded" => Some(CallError::CallDepthExceeded { limit }),
        "too_many_subcalls" => Some(CallError::TooManySubcalls { limit }),
        _ => None,
    }
}

/// Classifies a trap or host error. The trap code is read before anything
/// wraps the error, and limits take precedence over their symptoms (an
/// allocation failure after the memory cap was hit is the memory limit).
pub(super) fn classify(
    error: wasmtime::Error,
    store: &Store<CallState>,
    limits: &Limits,
) -> CallError {
    if error.downcast_ref::<CpuExhausted>().is_some() {
        return CallError::FuelExhausted { limit: limits.fuel };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return CallError::DeadlineExceeded {
                limit: limits.deadline,
            };
        }
        Some(Trap::StackOverflow) => return CallError::StackOverflow,
        _ => {}
    }
    if error.downcast_ref::<Cancelled>().is_some() {
        return CallError::Cancelled;
    }
    if error.downcast_ref::<NeedsWorker>().is_some() {
        return CallError::NeedsWorker;
    }
    if let Some(super::tree::TreeStopped(limit)) = error.downcast_ref() {
        return CallError::TreeBudgetExceeded(*limit);
    }
    if error.downcast_ref::<DeadlinePassed>().is_some() || store.data().subcalls.deadline_hit {
        return CallError::DeadlineExceeded {
            limit: limits.deadline,
        };
    }
    if store.data().limiter.hit {
        return CallError::MemoryExceeded {
            limit: limits.memory_bytes,
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallError::GuestCrashed(format!("the guest exited with status {}", exit.0));
    }
    CallError::GuestCrashed(format!("{error:#}"))
}
