//! The sandboxed runtime: loads madrpc modules and runs every call in a
//! fresh Wasm instance under CPU (fuel), memory and deadline limits.
//!
//! Nothing outside this module names a Wasmtime type.

mod cache;
mod call;
mod console;
mod context;
mod cpu;
mod engine;
mod error;
mod image;
mod imports;
mod limits;
mod local;
mod module;
mod outcome;
mod preinit;
mod resets;
mod stack;
mod state;
mod subcall;
mod tree;

pub use cache::ModuleCache;
pub use call::CallReport;
pub use console::{ConsoleLine, ConsoleOutput, ConsoleStream};
pub use context::{Budget, CallContext, INLINE_BUDGET, Subcall, SubcallHandler};
pub use cpu::{FUEL_PER_NANOSECOND, duration_to_fuel, fuel_to_duration};
pub use error::{CallError, GuestException, LoadError};
pub use limits::Limits;
pub use local::LocalSubcalls;
pub use module::LoadedModule;
pub use preinit::{BuildLimits, PreinitError, Preinitialized, preinitialize};
pub use stack::{CALL_THREAD_STACK_BYTES, has_room_for_call};
pub use tree::{TreeBudget, TreeLimit, TreeRef, Trees};

use engine::EpochTicker;
use state::CallState;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::{Engine, Linker};

/// Loading a fresh copy of a module costs about a millisecond: never more
/// often than this per module.
const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// Instance slots for a process that runs trees of `madrpc.call`s: a call
/// waiting on its sub-calls keeps its instance, so deep fan-out needs room
/// beyond the calls running at once. Slots are address space reserved up
/// front, not memory in use.
pub const FAN_OUT_INSTANCES: u32 = 1024;

/// How a [`Runtime`] is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The limits calls run under unless a call names its own.
    pub limits: Limits,
    /// How many calls may hold an instance at once (pooled slots).
    pub max_instances: u32,
    /// Where compiled modules are cached; `None` compiles on every load.
    pub cache: Option<ModuleCache>,
    /// Whether a module whose memory resets turn slow is loaded again from
    /// its cache entry so its calls move to clean slots (default). Off only
    /// to measure what the move saves.
    pub move_slow_slots: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_instances: 256,
            cache: ModuleCache::default_location().map(ModuleCache::new),
            move_slow_slots: true,
        }
    }
}

/// The engine, the linker with the host functions, and the epoch ticker.
/// One per process; share it between threads.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    config: RuntimeConfig,
    next_call: AtomicU64,
    trees: Trees,
    _ticker: EpochTicker,
}

/// Why a runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the Wasm runtime: {0}")]
pub struct StartError(String);

impl Runtime {
    /// Creates the engine (pooling allocator sized by `config`) and starts
    /// the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, StartError> {
        let engine = engine::build(config.max_instances, config.limits.memory_bytes)
            .map_err(|e| StartError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        imports::link(&mut linker).map_err(|e| StartError(format!("{e:#}")))?;
        let ticker = EpochTicker::start(&engine).map_err(|e| StartError(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            config,
            next_call: AtomicU64::new(1),
            trees: Trees::default(),
            _ticker: ticker,
        })
    }

    /// The call trees with calls in this process.
    pub fn trees(&self) -> &Trees {
        &self.trees
    }

    /// The limits calls run under by default.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Loads a module file (see [`Runtime::load`]).
    pub fn load_file(&self, path: &Path) -> Result<LoadedModule, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.load(&wasm)
    }

    /// Checks that `wasm` is a madrpc module for this ABI, compiles it (or
    /// takes it from the cache) and links it.
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedModule, LoadError> {
        let manifest = module::check_manifest(wasm)?;
        let (compiled, cached_at) = match &self.config.cache {
            Some(cache) => cache.load_or_compile(&self.engine, wasm),
            None => wasmtime::Module::new(&self.engine, wasm).map(|module| (module, None)),
        }
        .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let linked = self.link(&compiled)?;
        Ok(LoadedModule {
            id: crate::modules::ModuleId::of(wasm),
            summary: Arc::new(crate::manifest::ModuleSummary::of(wasm, &manifest)),
            manifest,
            slots: Arc::new(module::Slots::new(linked, cached_at)),
        })
    }

    fn link(&self, compiled: &wasmtime::Module) -> Result<module::Linked, LoadError> {
        image::prepare(compiled).map_err(|e| LoadError::Image(format!("{e:#}")))?;
        let exports = module::GuestExports::resolve(compiled)?;
        let pre = self
            .linker
            .instantiate_pre(compiled)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        Ok(module::Linked { pre, exports })
    }

    /// Moves `module`'s calls to clean slots after a reset that took
    /// `reset`, when that is slow (see `module::Slots`); at most once per
    /// [`REFRESH_INTERVAL`].
    fn refresh_if_slow(&self, module: &LoadedModule, reset: Duration) {
        if !self.config.move_slow_slots {
            return;
        }
        let Some(path) = module.slots.cached_at() else {
            return;
        };
        if !module.slots.is_slow(reset) || !module.slots.claim_refresh(REFRESH_INTERVAL) {
            return;
        }
        let fresh = cache::load_entry(&self.engine, path)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))
            .and_then(|compiled| self.link(&compiled));
        match fresh {
            Ok(linked) => {
                module.slots.replace(linked);
                tracing::debug!(
                    reset_us = reset.as_micros() as u64,
                    "moved calls to clean memory slots"
                );
            }
            Err(error) => {
                module.slots.give_up_refreshing();
                tracing::warn!(%error, "cannot reload the module from its cache entry; its calls stay in their memory slots");
            }
        }
    }

    /// Creates a fresh instance of `module` and drops it, returning how long
    /// that took: the fixed cost of a sandbox, for benchmarks and health
    /// checks.
    pub fn measure_instantiation(
        &self,
        module: &LoadedModule,
    ) -> Result<std::time::Duration, CallError> {
        stack::with_room(|| call::instantiate_only(&self.engine, module, &self.config.limits))
    }

    /// Runs `method` with the JSON `params` (empty for none) in a fresh
    /// instance under the default limits.
    pub fn call(&self, module: &LoadedModule, method: &str, params: &[u8]) -> CallReport {
        self.call_with_limits(module, method, params, &self.config.limits)
    }

    /// Like [`Runtime::call`] with explicit limits. A memory cap above the
    /// runtime's own is lowered to it (the pool's slots are that large).
    pub fn call_with_limits(
        &self,
        module: &LoadedModule,
        method: &str,
        params: &[u8],
        limits: &Limits,
    ) -> CallReport {
        self.call_in_context(module, method, params, limits, CallContext::top_level())
    }

    /// Like [`Runtime::call_with_limits`] for a call that sits somewhere in
    /// a tree of `madrpc.call`s: `context` gives its depth, its inherited
    /// deadline and the handler that runs its own sub-calls.
    pub fn call_in_context(
        &self,
        module: &LoadedModule,
        method: &str,
        params: &[u8],
        limits: &Limits,
        context: CallContext,
    ) -> CallReport {
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let mut limits = limits.clone();
        limits.memory_bytes = limits.memory_bytes.min(self.config.limits.memory_bytes);
        let (report, reset) =
            stack::with_room(|| call::run(&self.engine, module, method, params, &limits, context));
        // A call tried inline that must run again left no trace.
        if matches!(report.result, Err(CallError::NeedsWorker)) {
            return report;
        }
        log_report(call_id, method, &report);
        if !report.instantiation.is_zero() {
            crate::telemetry::metrics::record_sandbox(
                method,
                report.fuel_used,
                report.peak_memory,
                report.instantiation,
            );
        }
        self.refresh_if_slow(module, reset);
        report
    }
}

/// Sends a call's console output and outcome to the host's log, tagged with
/// the call.
fn log_report(call_id: u64, method: &str, report: &CallReport) {
    for line in &report.console.lines {
        match line.stream {
            ConsoleStream::Log => {
                tracing::info!(target: "madrpc::console", call = call_id, method, "{}", line.text)
            }
            ConsoleStream::Error => {
                tracing::warn!(target: "madrpc::console", call = call_id, method, "{}", line.text)
            }
        }
    }
    if report.console.dropped_bytes > 0 {
        tracing::warn!(
            target: "madrpc::console",
            call = call_id,
            method,
            dropped_bytes = report.console.dropped_bytes,
            "console output over the per-call limit was dropped"
        );
    }
    match &report.result {
        Ok(_) => tracing::debug!(
            call = call_id,
            method,
            fuel = report.fuel_used,
            elapsed_us = report.elapsed.as_micros() as u64,
            "call ok"
        ),
        // Nobody receives a cancelled call's error: the log is where it shows.
        Err(error @ CallError::Cancelled) => {
            tracing::info!(call = call_id, method, kind = error.kind(), %error, "call stopped")
        }
        Err(error) => {
            tracing::debug!(call = call_id, method, kind = error.kind(), %error, "call failed")
        }
    }
}
