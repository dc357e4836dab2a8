//! Where a call stands in its tree: its depth, deadline and budget, who
//! runs its sub-calls, and the errors that end a call from the host side.

use crate::rpc::RpcError;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// One sub-call as the guest queued it.
#[derive(Debug, Clone)]
pub struct Subcall {
    /// The method to call.
    pub method: String,
    /// The params as raw JSON, empty for none.
    pub params: Bytes,
}

/// What a sub-call inherits from its parent.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Nesting depth of the sub-call (a call from a client is depth 0).
    pub depth: u32,
    /// When the sub-call must be done by: never later than its parent.
    pub deadline: Instant,
    /// The tree the sub-call belongs to, and what it had left.
    pub tree: Option<super::TreeRef>,
}

impl Budget {
    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Runs the sub-calls of a call, concurrently, each within `budget`, and
/// returns their outcomes in order. It blocks the calling thread (a worker
/// running Wasm) and must return by the budget's deadline.
pub trait SubcallHandler: Send + Sync {
    /// Runs `calls`.
    fn run(&self, calls: Vec<Subcall>, budget: Budget) -> Vec<Result<Bytes, RpcError>>;
}

/// Where a call stands: its depth and deadline, and who runs its sub-calls.
#[derive(Clone)]
pub struct CallContext {
    /// Nesting depth (0 for a call from a client).
    pub depth: u32,
    /// Absolute deadline, when the caller set one tighter than the limits'.
    pub deadline: Option<Instant>,
    /// Runs sub-calls; without one, `madrpc.call` rejects.
    pub handler: Option<Arc<dyn SubcallHandler>>,
    /// Set when whoever waits for the result has gone away: the call stops
    /// within a few milliseconds instead of running to its deadline.
    pub cancelled: Option<Arc<AtomicBool>>,
    /// The budget the call's tree shares; `None` runs without one.
    pub tree: Option<Arc<super::TreeBudget>>,
    /// A try on a thread that must not block long (an async runtime's):
    /// the call gives up with [`super::CallError::NeedsWorker`] once it runs
    /// past [`INLINE_BUDGET`] or makes a sub-call, before anything of it
    /// left the sandbox, so the caller runs it again on a worker.
    pub inline: bool,
}

/// How long a call tried inline may run before it gives up: a trivial call
/// takes microseconds, and an async runtime's thread blocked for this long
/// delays the requests queued behind it by as much.
pub const INLINE_BUDGET: std::time::Duration = std::time::Duration::from_millis(2);

impl CallContext {
    /// A call tried inline (see [`CallContext::inline`]) at `depth` of
    /// `tree`: it makes no sub-calls and gives up past [`INLINE_BUDGET`].
    pub fn inline(depth: u32, deadline: Instant, tree: Option<Arc<super::TreeBudget>>) -> Self {
        Self {
            depth,
            deadline: Some(deadline),
            tree,
            inline: true,
            ..Self::top_level()
        }
    }

    /// A top-level call with no way to make sub-calls.
    pub fn top_level() -> Self {
        Self {
            depth: 0,
            deadline: None,
            handler: None,
            cancelled: None,
            tree: None,
            inline: false,
        }
    }
}

/// The sub-call state of a running call.
pub(crate) struct SubcallSession {
    pub(crate) context: CallContext,
    pub(crate) deadline: Instant,
    pub(crate) max_depth: u32,
    pub(crate) max_subcalls: u32,
    /// Most bytes of sub-call results one flush hands the guest: a quarter
    /// of its memory limit, since the results are copied in and then
    /// parsed into values, and the guest needs room to use them.
    pub(crate) max_results_bytes: usize,
    pub(crate) made: u32,
    pub(crate) outcomes: Vec<u8>,
    pub(crate) deadline_hit: bool,
}

/// Raised from a host function when the call's deadline passed while it
/// waited on sub-calls; classified as the deadline error.
#[derive(Debug, thiserror::Error)]
#[error("the call's deadline passed while it waited on sub-calls")]
pub(crate) struct DeadlinePassed;

/// Raised when a call tried inline must go to a worker; classified as
/// [`super::CallError::NeedsWorker`].
#[derive(Debug, thiserror::Error)]
#[error("the call needs a worker thread")]
pub(crate) struct NeedsWorker;

/// Raised when the call's caller went away; classified as cancelled.
#[derive(Debug, thiserror::Error)]
#[error("the call was cancelled: its caller went away")]
pub(crate) struct Cancelled;
