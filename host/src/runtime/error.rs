//! The errors of loading modules and of running calls.

use crate::manifest::ManifestError;
use crate::rpc::{RpcError, codes};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file that was read.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Not a madrpc module, or a damaged one.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Built for a guest ABI this host does not speak.
    #[error(
        "the module was built for guest ABI {found}, this madrpc speaks ABI {expected}; rebuild it with this version's `madrpc build`"
    )]
    AbiMismatch {
        /// The module's ABI.
        found: u32,
        /// This host's ABI.
        expected: u32,
    },
    /// Wasmtime rejected the module (invalid code, missing exports, unknown
    /// imports).
    #[error("the module cannot be used: {0}")]
    Invalid(String),
    /// The module's copy-on-write memory image could not be made (see
    /// `image.rs`): a fault of this host, not of the module.
    #[error("this host cannot make the module's memory image: {0}")]
    Image(String),
}

/// A thrown JavaScript error as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GuestException {
    /// The error's `name` (`TypeError`, or `Error` for thrown non-errors).
    pub name: String,
    /// The error's `message`.
    pub message: String,
    /// The JS stack with `file:line:column` frames, when there was one.
    #[serde(default)]
    pub stack: Option<String>,
    /// For an `RpcError` from a sub-call that the function let escape: that
    /// error's `code` and `data` (its `kind` and limits), without a stack.
    #[serde(default)]
    pub cause: Option<Box<Value>>,
}

/// Why a call did not produce a result. Each limit has its own variant so a
/// caller can tell the user which one was hit and what to change.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No function is registered under that name.
    #[error("no function is registered as '{method}'; available: {}", .available.join(", "))]
    MethodNotFound {
        /// The name asked for.
        method: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// The params are not valid JSON.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The params exceed the size limit.
    #[error("params are {size} bytes, over the limit of {limit} bytes")]
    ParamsTooLarge {
        /// Size of the params.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The function threw (or its Promise rejected).
    #[error("{}: {}", .0.name, .0.message)]
    Threw(GuestException),
    /// The CPU budget ran out.
    #[error(
        "the call used up its fuel (CPU budget of {limit} units, {:?} of CPU time); raise the fuel limit (--fuel) or do less work per call",
        super::cpu::fuel_to_duration(*limit)
    )]
    FuelExhausted {
        /// The budget.
        limit: u64,
    },
    /// Linear memory would have grown past the cap.
    #[error("the call exceeded its memory limit of {limit} bytes")]
    MemoryExceeded {
        /// The cap.
        limit: usize,
    },
    /// The wall-clock deadline passed.
    #[error("the call exceeded its deadline of {} ms", .limit.as_millis())]
    DeadlineExceeded {
        /// The deadline.
        limit: Duration,
    },
    /// Recursion too deep for the guest's stack.
    #[error("stack overflow: the call recursed too deeply")]
    StackOverflow,
    /// The result exceeds the size limit.
    #[error("the result is {size} bytes, over the limit of {limit} bytes")]
    ResultTooLarge {
        /// Size of the result.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The result has no JSON form (a function, a BigInt, a cycle).
    #[error("{0}")]
    NotSerializable(String),
    /// The returned Promise can never settle.
    #[error("the function returned a Promise that can never settle")]
    NeverSettled,
    /// A `madrpc.call` chain went deeper than allowed, and the function let
    /// the refused sub-call's error escape.
    #[error(
        "call depth limit of {limit} reached: a chain of madrpc.call went deeper; look for unbounded recursion through madrpc.call"
    )]
    CallDepthExceeded {
        /// The depth limit.
        limit: u32,
    },
    /// The call (or one below it) made more sub-calls than allowed, and the
    /// function let the refused sub-call's error escape.
    #[error(
        "sub-call limit of {limit} per call reached; make fewer madrpc.call per call or raise --max-subcalls"
    )]
    TooManySubcalls {
        /// The sub-call limit.
        limit: u32,
    },
    /// Whoever waited for the result went away, so the call was stopped.
    #[error("the call was cancelled: its caller went away")]
    Cancelled,
    /// A call tried on the caller's own thread ran past its short budget or
    /// made a sub-call; it left no trace and must run again on a worker.
    #[error("internal error: the call needs a worker thread")]
    NeedsWorker,
    /// The call's tree used up a budget it shares (calls or fuel), which
    /// stops every call of the tree.
    #[error("{}", tree_message(.0))]
    TreeBudgetExceeded(super::TreeLimit),
    /// The guest stopped abnormally for a reason that is none of the above.
    #[error("the guest stopped abnormally: {0}")]
    GuestCrashed(String),
    /// A failure of the host itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CallError {
    /// A stable, machine-readable name of the error, used in logs and in the
    /// `data.kind` of JSON-RPC errors.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::MethodNotFound { .. } => "method_not_found",
            CallError::InvalidParams(_) => "invalid_params",
            CallError::ParamsTooLarge { .. } => "params_too_large",
            CallError::Threw(_) => "guest_threw",
            CallError::FuelExhausted { .. } => "fuel_exhausted",
            CallError::MemoryExceeded { .. } => "memory_exceeded",
            CallError::DeadlineExceeded { .. } => "deadline_exceeded",
            CallError::StackOverflow => "stack_overflow",
            CallError::ResultTooLarge { .. } => "result_too_large",
            CallError::NotSerializable(_) => "not_serializable",
            CallError::NeverSettled => "never_settled",
            CallError::CallDepthExceeded { .. } => "call_depth_exceeded",
            CallError::TooManySubcalls { .. } => "too_many_subcalls",
            CallError::Cancelled => "cancelled",
            CallError::NeedsWorker => "internal",
            CallError::TreeBudgetExceeded(_) => "tree_budget_exceeded",
            CallError::GuestCrashed(_) => "guest_crashed",
            CallError::Internal(_) => "internal",
        }
    }

    /// Structured details for clients: always `kind`, plus what the variant
    /// knows (the limit that was hit, the JS stack, the available methods).
    pub fn data(&self) -> Value {
        let mut data = json!({ "kind": self.kind() });
        match self {
            CallError::MethodNotFound { available, .. } => data["available"] = json!(available),
            CallError::Threw(exception) => {
                data["name"] = json!(exception.name);
                data["message"] = json!(exception.message);
                if let Some(stack) = &exception.stack {
                    data["stack"] = json!(stack);
                }
                if let Some(cause) = &exception.cause {
                    data["cause"] = cause.as_ref().clone();
                }
            }
            CallError::FuelExhausted { limit } => data["limit"] = json!(limit),
            CallError::MemoryExceeded { limit } => data["limit_bytes"] = json!(limit),
            CallError::DeadlineExceeded { limit } => data["limit_ms"] = json!(limit.as_millis()),
            CallError::CallDepthExceeded { limit } | CallError::TooManySubcalls { limit } => {
                data["limit"] = json!(limit)
            }
            CallError::ParamsTooLarge { size, limit }
            | CallError::ResultTooLarge { size, limit } => {
                data["size"] = json!(size);
                data["limit_bytes"] = json!(limit);
            }
            CallError::TreeBudgetExceeded(limit) => {
                let (budget, value) = match limit {
                    super::TreeLimit::Calls(n) => ("calls", n),
                    super::TreeLimit::Fuel(n) => ("fuel", n),
                };
                data["budget"] = json!(budget);
                data["limit"] = json!(value);
            }
            _ => {}
        }
        data
    }
}

fn tree_message(limit: &super::TreeLimit) -> String {
    match limit {
        super::TreeLimit::Calls(n) => format!(
            "the call tree made more than {n} calls in all (--max-tree-calls); every call of the tree was stopped"
        ),
        super::TreeLimit::Fuel(n) => format!(
            "the call tree burned more than {n} fuel in all (--max-tree-fuel); every call of the tree was stopped"
        ),
    }
}

/// How a call error reaches a JSON-RPC client: its code, its message and
/// its data.
impl From<&CallError> for RpcError {
    fn from(error: &CallError) -> Self {
        let code = match error {
            CallError::MethodNotFound { .. } => codes::METHOD_NOT_FOUND,
            CallError::InvalidParams(_) => codes::INVALID_PARAMS,
            CallError::Threw(_) => codes::GUEST_THREW,
            CallError::FuelExhausted { .. } => codes::FUEL_EXHAUSTED,
            CallError::MemoryExceeded { .. } => codes::MEMORY_EXCEEDED,
            CallError::DeadlineExceeded { .. } => codes::DEADLINE_EXCEEDED,
            CallError::StackOverflow => codes::STACK_OVERFLOW,
            CallError::NotSerializable(_) | CallError::NeverSettled => codes::BAD_RESULT,
            CallError::ParamsTooLarge { .. } | CallError::ResultTooLarge { .. } => {
                codes::PAYLOAD_TOO_LARGE
            }
            CallError::GuestCrashed(_) => codes::GUEST_CRASHED,
            CallError::TreeBudgetExceeded(_) => codes::TREE_BUDGET_EXCEEDED,
            CallError::CallDepthExceeded { .. } => codes::CALL_DEPTH_EXCEEDED,
            CallError::TooManySubcalls { .. } => codes::TOO_MANY_SUBCALLS,
            CallError::Cancelled | CallError::NeedsWorker | CallError::Internal(_) => {
                codes::INTERNAL_ERROR
            }
        };
        let message = match error {
            CallError::MethodNotFound { .. } => format!("Method not found: {error}"),
            CallError::InvalidParams(_) => format!("Invalid params: {error}"),
            _ => error.to_string(),
        };
        Self {
            code,
            message,
            data: Some(error.data()),
        }
    }
}
