//! What a call's Wasmtime store holds: a capability-free WASI context, the
//! memory limiter and the console capture.

use super::console::ConsoleCapture;
use super::context::{CallContext, SubcallSession};
use super::cpu::CpuMeter;
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

/// Per-call store data.
pub(crate) struct CallState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) console: ConsoleCapture,
    pub(crate) subcalls: SubcallSession,
    /// The call's CPU time, its budget's measure.
    pub(crate) cpu: CpuMeter,
}

impl CallState {
    pub(crate) fn new(limits: &super::Limits, context: CallContext, deadline: Instant) -> Self {
        let memory_bytes = limits.memory_bytes;
        let console_bytes = limits.max_console_bytes;
        Self {
            // No preopened directories, no environment, no arguments, no
            // network, closed stdin and discarded stdout/stderr: the guest
            // gets clocks and randomness and nothing else.
            wasi: WasiCtxBuilder::new().build_p1(),
            limiter: MemoryLimiter {
                limit: memory_bytes,
                hit: false,
                peak: 0,
            },
            console: ConsoleCapture::new(console_bytes),
            subcalls: SubcallSession {
                context,
                deadline,
                max_depth: limits.max_depth,
                max_subcalls: limits.max_subcalls,
                max_results_bytes: limits.memory_bytes / 4,
                made: 0,
                outcomes: Vec::new(),
                deadline_hit: false,
            },
            cpu: CpuMeter::start(),
        }
    }
}

/// Refuses linear-memory growth past the call's cap and remembers that it
/// did, so the failure it causes inside the guest (an allocation that
/// returns null, an abort) is reported as the memory limit.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) hit: bool,
    /// The largest linear memory granted (creation counts as growth).
    pub(crate) peak: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // QuickJS never grows its function table; refuse runaway growth.
        Ok(desired <= 1 << 16)
    }
}
