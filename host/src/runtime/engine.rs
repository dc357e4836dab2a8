//! The one Wasmtime engine a runtime uses, and the ticker behind deadlines.
//!
//! Every setting here serves the call path measured in
//! `PERFORMANCE-NOTES.md`: a fresh instance per call is cheap only with the
//! pooling allocator, copy-on-write memory images and, where the kernel
//! has it, `PAGEMAP_SCAN` to reset just the pages a call dirtied.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

/// How often the engine's epoch advances; the granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How many of the pages a call wrote are reset in place (and stay
/// resident) per pooled slot; the kernel's scan stops there and the rest of
/// the slot is given back (`madvise`), to be faulted in again by the calls
/// that need it. A trivial call writes 7-25 pages, a call parsing 100 KB of
/// JSON a few hundred: 1 MiB (256 pages) keeps them resident. More would
/// let every slot a heavy call once used hold that much for good (64 MiB
/// per slot left `serve` at gigabytes after bursts of heavy calls), and the
/// calls that follow a heavy one would restore that much after each call.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Unused slots that stay affine to their module. Enough for the workers of
/// a node to find their own warm slots again; few enough that the slots of
/// replaced module copies are soon taken over and their memory let go.
const MAX_UNUSED_WARM_SLOTS: u32 = 8;

/// Builds the engine. `max_instances` bounds how many calls can be in flight
/// at once (each holds one pooled slot); `max_memory_bytes` is the largest
/// linear memory any call may use.
pub fn build(max_instances: u32, max_memory_bytes: usize) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(max_instances)
        .total_memories(max_instances)
        .total_tables(max_instances)
        .max_memory_size(max_memory_bytes)
        // A module copy loaded to move calls to clean slots (see
        // `Runtime::refresh_if_slow`) takes over the slots the old copies
        // left once more than this many sit unused, instead of warming yet
        // another slot: each warm slot keeps up to KEEP_RESIDENT_BYTES of its
        // last calls' pages resident, so memory would grow with every move.
        .max_unused_warm_slots(MAX_UNUSED_WARM_SLOTS);
    // Without PAGEMAP_SCAN (Linux < 6.7), keeping memory resident would reset
    // it with a full memset on every call (hundreds of µs for a large heap):
    // leave the default madvise reset in place there.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(1 << 20)
            .pagemap_scan(Enabled::Yes);
    }

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        // The CPU budget is read from the thread's CPU clock at epoch
        // checks (see `cpu.rs`), not counted as fuel: fuel metering slowed
        // QuickJS by 10-30%.
        .epoch_interruption(true)
        .max_wasm_stack(super::stack::WASM_STACK_BYTES)
        // Only build-time pre-initialization runs async; its fibers need
        // room for the same Wasm stack.
        .async_stack_size(super::stack::CALL_THREAD_STACK_BYTES)
        .cranelift_opt_level(OptLevel::Speed);
    Engine::new(&config)
}

/// Advances an engine's epoch every [`EPOCH_TICK`] on a background thread,
/// so that calls past their deadline are interrupted. Stops when dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let thread = std::thread::Builder::new()
            .name("madrpc-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The number of epoch ticks that covers `deadline`.
pub fn ticks_for(deadline: Duration) -> u64 {
    let ticks = deadline.as_micros().div_ceil(EPOCH_TICK.as_micros());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}
