//! One call: a fresh instance, the guest ABI in and out, and its watch over
//! the deadline, the CPU budget and cancellation. How it ended is worded
//! by `outcome`.

use super::console::ConsoleOutput;
use super::context::{CallContext, Cancelled, INLINE_BUDGET, NeedsWorker};
use super::engine;
use super::error::{CallError, GuestException};
use super::limits::Limits;
use super::module::LoadedModule;
use super::outcome::{CpuExhausted, classify, guest_error};
use super::state::CallState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::UpdateDeadline;
use wasmtime::{Engine, Extern, Instance, Memory, Store, TypedFunc};

/// What a call produced, whatever its outcome.
#[derive(Debug)]
pub struct CallReport {
    /// The JSON result, or why there is none.
    pub result: Result<Vec<u8>, CallError>,
    /// The call's console output.
    pub console: ConsoleOutput,
    /// Fuel the call consumed: its CPU time in fuel units (see
    /// [`super::FUEL_PER_NANOSECOND`]).
    pub fuel_used: u64,
    /// Wall-clock time from instantiation to result.
    pub elapsed: Duration,
    /// Time spent afterwards restoring the memory pages the call's slot
    /// holds written, so the next call there starts from the snapshot.
    pub reset: Duration,
    /// The most linear memory the call's instance had, in bytes.
    pub peak_memory: usize,
    /// Time to instantiate the call's sandbox; zero when the call ended
    /// before it had one.
    pub instantiation: Duration,
}

pub(crate) fn run(
    engine: &Engine,
    module: &LoadedModule,
    method: &str,
    params: &[u8],
    limits: &Limits,
    context: CallContext,
) -> (CallReport, Duration) {
    let started = Instant::now();
    let deadline = match context.deadline {
        Some(deadline) => deadline.min(started + limits.deadline),
        None => started + limits.deadline,
    };
    // Errors report the deadline that applied, inherited or not.
    let limits = &Limits {
        deadline: deadline.saturating_duration_since(started),
        ..limits.clone()
    };
    // A call of a tree starts with no more fuel than the tree has left,
    // and charges the tree as it burns.
    let tree = context.tree.clone();
    let start_fuel = match &tree {
        Some(tree) => tree.fuel_left().map(|left| left.min(limits.fuel)),
        None => Ok(limits.fuel),
    };
    let own_fuel = limits.fuel;
    let limits = &Limits {
        fuel: *start_fuel.as_ref().unwrap_or(&0),
        ..limits.clone()
    };
    let charged = Arc::new(AtomicU64::new(0));
    let cancelled = context.cancelled.clone();
    let inline = context.inline;
    let mut store = Store::new(engine, CallState::new(limits, context, deadline));
    store.limiter(|state| &mut state.limiter);
    let watch = Watch {
        cancelled,
        tree: tree.clone(),
        fuel: limits.fuel,
        charged: charged.clone(),
        inline,
    };
    watch_deadline(&mut store, watch, deadline);
    let mut instantiation = Duration::ZERO;
    let mut result = match start_fuel {
        Ok(_) => prepare(&mut store, limits, deadline, inline).and_then(|()| {
            invoke(
                &mut store,
                module,
                method,
                params,
                limits,
                &mut instantiation,
            )
        }),
        Err(limit) => Err(CallError::TreeBudgetExceeded(limit)),
    };
    // A breach ends the call even when the guest caught the failure it
    // caused (QuickJS turns a refused allocation into a catchable error).
    if store.data().limiter.hit
        && !matches!(
            result,
            Err(CallError::FuelExhausted { .. } | CallError::DeadlineExceeded { .. })
        )
    {
        result = Err(CallError::MemoryExceeded {
            limit: limits.memory_bytes,
        });
    }
    let fuel_used = store.data_mut().cpu.finish();
    if let Some(tree) = &tree {
        let uncharged = fuel_used.saturating_sub(charged.load(Ordering::Acquire));
        let charge = tree.charge(uncharged);
        if matches!(result, Err(CallError::FuelExhausted { .. })) && limits.fuel < own_fuel {
            // The tree's fuel, not the call's own, ran out.
            let limit = charge
                .err()
                .unwrap_or(super::TreeLimit::Fuel(limits.max_tree_fuel));
            result = Err(CallError::TreeBudgetExceeded(tree.stop(limit)));
        }
        // A stopped tree ends each of its calls, even one that caught the
        // refusals of its sub-calls.
        if let Err(limit) = tree.check() {
            result = Err(CallError::TreeBudgetExceeded(limit));
        }
    }
    let elapsed = started.elapsed();
    // Dropping the store resets the instance's memory slot.
    let reset_started = Instant::now();
    let peak_memory = store.data().limiter.peak;
    let console = store.into_data().console.finish();
    let reset = reset_started.elapsed();
    let report = CallReport {
        result,
        console,
        fuel_used,
        elapsed,
        reset,
        peak_memory,
        instantiation,
    };
    (report, reset)
}

/// Instantiates `module` in a fresh store and drops both, timing it.
pub(crate) fn instantiate_only(
    engine: &Engine,
    module: &LoadedModule,
    limits: &Limits,
) -> Result<Duration, CallError> {
    let started = Instant::now();
    let deadline = started + limits.deadline;
    let mut store = Store::new(
        engine,
        CallState::new(limits, CallContext::top_level(), deadline),
    );
    store.limiter(|state| &mut state.limiter);
    let watch = Watch {
        cancelled: None,
        tree: None,
        fuel: limits.fuel,
        charged: Arc::new(AtomicU64::new(0)),
        inline: false,
    };
    watch_deadline(&mut store, watch, deadline);
    prepare(&mut store, limits, deadline, false)?;
    module
        .slots
        .current()
        .pre
        .instantiate(&mut store)
        .map_err(|e| classify(e, &store, limits))?;
    drop(store);
    Ok(started.elapsed())
}

fn prepare(
    store: &mut Store<CallState>,
    limits: &Limits,
    deadline: Instant,
    inline: bool,
) -> Result<(), CallError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(CallError::DeadlineExceeded {
            limit: limits.deadline,
        });
    }
    if inline {
        // A call tried inline is checked first at the end of its budget.
        store.set_epoch_deadline(engine::ticks_for(INLINE_BUDGET).min(CANCEL_CHECK_TICKS));
    } else {
        // The first check comes at the next tick, where the CPU meter starts
        // reading the thread's CPU clock.
        store.set_epoch_deadline(1);
    }
    Ok(())
}

/// How many epoch ticks pass between checks for cancellation.
const CANCEL_CHECK_TICKS: u64 = 10;

/// Wakes every few ticks until the deadline, so that a call whose caller
/// went away stops within milliseconds; at the deadline, interrupts it.
/// What the periodic check of a running call looks at besides its
/// deadline.
struct Watch {
    /// Set when the caller went away.
    cancelled: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The call's tree, charged with the fuel burned since the last check.
    tree: Option<Arc<super::TreeBudget>>,
    /// The call's CPU budget in fuel units.
    fuel: u64,
    /// Fuel charged to the tree so far.
    charged: Arc<AtomicU64>,
    /// A call tried inline: its first check is the end of its budget.
    inline: bool,
}

fn watch_deadline(store: &mut Store<CallState>, watch: Watch, deadline: Instant) {
    store.epoch_deadline_callback(move |mut context| {
        if watch.inline {
            return Err(wasmtime::Error::new(NeedsWorker));
        }
        if watch
            .cancelled
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
        {
            return Err(wasmtime::Error::new(Cancelled));
        }
        let burned = context.data_mut().cpu.read();
        if let Some(tree) = &watch.tree {
            let before = watch.charged.swap(burned, Ordering::AcqRel);
            if let Err(limit) = tree.charge(burned.saturating_sub(before)) {
                return Err(wasmtime::Error::new(super::tree::TreeStopped(limit)));
            }
        }
        if burned >= watch.fuel {
            return Err(wasmtime::Error::new(CpuExhausted));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(UpdateDeadline::Interrupt);
        }
        // The CPU time left cannot run out before as much wall-clock time
        // has passed: check again then, or sooner for the deadline and
        // cancellation.
        let cpu_left = super::cpu::fuel_to_duration(watch.fuel - burned);
        Ok(UpdateDeadline::Continue(
            engine::ticks_for(left.min(cpu_left)).min(CANCEL_CHECK_TICKS),
        ))
    });
}

fn invoke(
    store: &mut Store<CallState>,
    module: &LoadedModule,
    method: &str,
    params: &[u8],
    limits: &Limits,
    instantiation: &mut Duration,
) -> Result<Vec<u8>, CallError> {
    if params.len() > limits.max_params_bytes {
        return Err(CallError::ParamsTooLarge {
            size: params.len(),
            limit: limits.max_params_bytes,
        });
    }
    if !module.manifest.methods.iter().any(|m| m == method) {
        return Err(CallError::MethodNotFound {
            method: method.to_owned(),
            available: module.manifest.methods.clone(),
        });
    }

    let linked = module.slots.current();
    let instantiating = Instant::now();
    let instance = linked
        .pre
        .instantiate(&mut *store)
        .map_err(|e| classify(e, store, limits))?;
    *instantiation = instantiating.elapsed();
    let memory = export(&instance, store, &linked.exports.memory)?
        .into_memory()
        .ok_or_else(|| CallError::Internal("`memory` is not a memory".into()))?;
    let alloc: TypedFunc<u32, u32> = typed(&instance, store, &linked.exports.alloc)?;
    let call: TypedFunc<(u32, u32, u32), u32> = typed(&instance, store, &linked.exports.call)?;

    let name_len = u32::try_from(method.len())
        .map_err(|_| CallError::InvalidParams("method name too long".into()))?;
    let params_len = u32::try_from(params.len()).map_err(|_| CallError::ParamsTooLarge {
        size: params.len(),
        limit: limits.max_params_bytes,
    })?;
    let input = alloc
        .call(&mut *store, name_len + params_len)
        .map_err(|e| classify(e, store, limits))?;
    if input == 0 {
        return Err(CallError::MemoryExceeded {
            limit: limits.memory_bytes,
        });
    }
    write(&memory, store, input, method.as_bytes())?;
    write(&memory, store, input + name_len, params)?;

    let ret = call
        .call(&mut *store, (input, name_len, params_len))
        .map_err(|e| classify(e, store, limits))?;
    let ret_area = read(&memory, store, ret, 12)?;
    let word = |i: usize| {
        u32::from_le_bytes([
            ret_area[i],
            ret_area[i + 1],
            ret_area[i + 2],
            ret_area[i + 3],
        ])
    };
    let (status, ptr, len) = (word(0), word(4), word(8));
    if status == 0 && len as usize > limits.max_result_bytes {
        return Err(CallError::ResultTooLarge {
            size: len as usize,
            limit: limits.max_result_bytes,
        });
    }
    if status == 1 && len as usize > limits.max_result_bytes {
        // A thrown error is bounded like a result: its message and stack
        // are not copied out, only the fact and its size.
        return Err(CallError::Threw(GuestException {
            name: "Error".into(),
            message: format!(
                "the function threw an error of {len} bytes, larger than the result limit of {} bytes (--max-result); it was dropped",
                limits.max_result_bytes
            ),
            stack: None,
            cause: None,
        }));
    }
    let payload = read(&memory, store, ptr, len as usize)?;
    match status {
        0 => Ok(payload),
        1 => Err(guest_error(&payload, method, store, limits)),
        other => Err(CallError::Internal(format!("unknown guest status {other}"))),
    }
}

fn export(
    instance: &Instance,
    store: &mut Store<CallState>,
    index: &wasmtime::ModuleExport,
) -> Result<Extern, CallError> {
    instance
        .get_module_export(&mut *store, index)
        .ok_or_else(|| CallError::Internal("a guest ABI export is missing".into()))
}

fn typed<P, R>(
    instance: &Instance,
    store: &mut Store<CallState>,
    index: &wasmtime::ModuleExport,
) -> Result<TypedFunc<P, R>, CallError>
where
    P: wasmtime::WasmParams,
    R: wasmtime::WasmResults,
{
    export(instance, store, index)?
        .into_func()
        .ok_or_else(|| CallError::Internal("a guest ABI export is not a function".into()))?
        .typed(&*store)
        .map_err(|e| CallError::Internal(format!("guest ABI export has the wrong type: {e}")))
}

fn write(
    memory: &Memory,
    store: &mut Store<CallState>,
    at: u32,
    bytes: &[u8],
) -> Result<(), CallError> {
    memory
        .write(&mut *store, at as usize, bytes)
        .map_err(|_| CallError::Internal("the guest returned an out-of-bounds buffer".into()))
}

fn read(
    memory: &Memory,
    store: &Store<CallState>,
    at: u32,
    len: usize,
) -> Result<Vec<u8>, CallError> {
    let start = at as usize;
    memory
        .data(store)
        .get(start..start.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| CallError::Internal("the guest returned an out-of-bounds buffer".into()))
}
