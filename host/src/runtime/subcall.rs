//! `madrpc.call` on the host side: the budget a call hands down to its
//! sub-calls, the handler that runs them, and the two host functions the
//! guest uses to flush its queue of sub-calls and fetch their outcomes.

use super::state::CallState;
use crate::rpc::{RpcError, codes};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use wasmtime::{Caller, Linker};

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
    /// A client's call tried inline (see [`CallContext::inline`]): no
    /// sub-calls, no tree, and it gives up past [`INLINE_BUDGET`].
    pub fn inline(deadline: Instant) -> Self {
        Self {
            deadline: Some(deadline),
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
#[derive(Debug)]
pub(crate) struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the call's deadline passed while it waited on sub-calls")
    }
}

impl std::error::Error for DeadlinePassed {}

/// Raised when a call tried inline must go to a worker; classified as
/// [`super::CallError::NeedsWorker`].
#[derive(Debug)]
pub(crate) struct NeedsWorker;

impl std::fmt::Display for NeedsWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the call needs a worker thread")
    }
}

impl std::error::Error for NeedsWorker {}

/// Raised when the call's caller went away; classified as cancelled.
#[derive(Debug)]
pub(crate) struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the call was cancelled: its caller went away")
    }
}

impl std::error::Error for Cancelled {}

#[derive(Deserialize)]
struct QueuedCall<'a> {
    method: String,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Links `madrpc.subcalls_run` and `madrpc.subcalls_take`.
pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "madrpc",
        "subcalls_run",
        |mut caller: Caller<'_, CallState>, ptr: u32, len: u32| -> wasmtime::Result<u32> {
            let request = read_guest(&mut caller, ptr, len)?;
            let state = caller.data_mut();
            // Sub-calls are charged to their own budgets, also when they
            // run on this thread.
            state.cpu.pause();
            let outcomes = run_batch(&mut state.subcalls, &request);
            state.cpu.resume();
            let outcomes = outcomes?;
            let session = &mut state.subcalls;
            let len = u32::try_from(outcomes.len())
                .map_err(|_| wasmtime::format_err!("sub-call outcomes too large"))?;
            session.outcomes = outcomes;
            Ok(len)
        },
    )?;
    linker.func_wrap(
        "madrpc",
        "subcalls_take",
        |mut caller: Caller<'_, CallState>, ptr: u32| -> wasmtime::Result<()> {
            let outcomes = std::mem::take(&mut caller.data_mut().subcalls.outcomes);
            let memory = guest_memory(&mut caller)?;
            memory
                .write(&mut caller, ptr as usize, &outcomes)
                .map_err(|_| wasmtime::format_err!("sub-call outcomes written out of bounds"))
        },
    )?;
    Ok(())
}

fn guest_memory(caller: &mut Caller<'_, CallState>) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(|export| export.into_memory())
        .ok_or_else(|| wasmtime::format_err!("the guest exports no memory"))
}

fn read_guest(caller: &mut Caller<'_, CallState>, ptr: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
    let memory = guest_memory(caller)?;
    let start = ptr as usize;
    memory
        .data(&*caller)
        .get(start..start.saturating_add(len as usize))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| wasmtime::format_err!("sub-call request out of bounds"))
}

/// Checks each queued call against the budget, runs the admissible ones
/// through the handler, and encodes every outcome in order.
fn run_batch(session: &mut SubcallSession, request: &[u8]) -> wasmtime::Result<Vec<u8>> {
    // A call tried inline runs its sub-calls only on a worker: nothing of
    // it has left the sandbox yet, so it can start over there.
    if session.context.inline {
        return Err(wasmtime::Error::new(NeedsWorker));
    }
    let queued: Vec<QueuedCall> = serde_json::from_slice(request)
        .map_err(|e| wasmtime::format_err!("malformed sub-call request: {e}"))?;
    let depth = session.context.depth.saturating_add(1);
    let mut outcomes: Vec<Option<Result<Bytes, RpcError>>> = Vec::with_capacity(queued.len());
    let mut admitted = Vec::new();
    for call in &queued {
        let refusal = if session.context.handler.is_none() {
            Some(RpcError::new(
                codes::INTERNAL_ERROR,
                "subcalls_unavailable",
                "madrpc.call is not available here: run the function on a grid (`madrpc serve`) or with `madrpc run`",
            ))
        } else if depth > session.max_depth {
            Some(
                RpcError::new(
                    codes::CALL_DEPTH_EXCEEDED,
                    "call_depth_exceeded",
                    format!(
                        "call depth limit of {} reached: '{}' would run at depth {depth}; look for unbounded recursion through madrpc.call",
                        session.max_depth, call.method
                    ),
                )
                .with("limit", session.max_depth),
            )
        } else if session.made >= session.max_subcalls {
            Some(
                RpcError::new(
                    codes::TOO_MANY_SUBCALLS,
                    "too_many_subcalls",
                    format!(
                        "sub-call limit of {} per call reached; '{}' was not run",
                        session.max_subcalls, call.method
                    ),
                )
                .with("limit", session.max_subcalls),
            )
        } else {
            None
        };
        match refusal {
            Some(error) => outcomes.push(Some(Err(error))),
            None => {
                session.made += 1;
                admitted.push(Subcall {
                    method: call.method.clone(),
                    params: call
                        .params
                        .map(|p| Bytes::copy_from_slice(p.get().as_bytes()))
                        .unwrap_or_default(),
                });
                outcomes.push(None);
            }
        }
    }
    if !admitted.is_empty() {
        if let Some(tree) = &session.context.tree
            && let Err(limit) = tree.take_calls(admitted.len() as u64)
        {
            let error = RpcError::from(&super::CallError::TreeBudgetExceeded(limit));
            for slot in outcomes.iter_mut().filter(|slot| slot.is_none()) {
                *slot = Some(Err(error.clone()));
            }
            return Ok(encode(outcomes.into_iter().flatten()));
        }
        let budget = Budget {
            depth,
            deadline: session.deadline,
            tree: session.context.tree.as_ref().map(|tree| tree.reference()),
        };
        if budget.remaining().is_zero() {
            session.deadline_hit = true;
            return Err(wasmtime::Error::new(DeadlinePassed));
        }
        let handler = session.context.handler.clone().expect("checked above");
        let mut results = handler.run(admitted, budget).into_iter();
        if Instant::now() >= session.deadline {
            session.deadline_hit = true;
            return Err(wasmtime::Error::new(DeadlinePassed));
        }
        let mut total = 0usize;
        for slot in outcomes.iter_mut().filter(|slot| slot.is_none()) {
            let outcome = results.next().unwrap_or_else(|| {
                Err(RpcError::internal(
                    "the sub-call handler returned too few outcomes",
                ))
            });
            *slot = Some(match outcome {
                Ok(result) if total + result.len() > session.max_results_bytes => {
                    Err(results_too_large(session.max_results_bytes))
                }
                Ok(result) => {
                    total += result.len();
                    Ok(result)
                }
                error => error,
            });
        }
    }
    Ok(encode(outcomes.into_iter().flatten()))
}

/// The error of a sub-call whose result would take the results of one
/// flush past the caller's memory limit.
fn results_too_large(limit: usize) -> RpcError {
    RpcError::new(
        codes::PAYLOAD_TOO_LARGE,
        "subcall_results_too_large",
        format!(
            "the results of the sub-calls sent together add up to more than {limit} bytes, a quarter of the caller's memory limit; fetch less at once or raise --memory"
        ),
    )
    .with("limit_bytes", limit)
}

/// `[{"ok": result}, {"error": {...}}, ...]`, results spliced in raw.
fn encode(outcomes: impl Iterator<Item = Result<Bytes, RpcError>>) -> Vec<u8> {
    let mut out = vec![b'['];
    for (i, outcome) in outcomes.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match outcome {
            Ok(result) => {
                out.extend_from_slice(br#"{"ok":"#);
                out.extend_from_slice(&result);
            }
            Err(error) => {
                out.extend_from_slice(br#"{"error":"#);
                let _ = serde_json::to_writer(&mut out, &error);
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    out
}
