//! `madrpc.call` on the host side: the two host functions the guest uses
//! to flush its queue of sub-calls and fetch their outcomes, and the
//! checks each queued call passes before its handler runs it.

use super::context::{Budget, DeadlinePassed, NeedsWorker, Subcall, SubcallSession};
use super::state::CallState;
use crate::rpc::{RpcError, codes};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Instant;
use wasmtime::{Caller, Linker};

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
