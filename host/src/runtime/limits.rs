//! Per-call resource limits.

use std::time::Duration;

/// The hard limits every call runs under. A call that breaches one ends with
/// its own typed error; the runtime serves the next call normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// CPU budget in fuel units: a unit is a tenth of a nanosecond of the
    /// call's CPU time (see `cpu.rs`). The default, 100 billion, is 10 s of
    /// CPU (a million Monte Carlo samples take about 2 billion): what the
    /// default 10 s deadline allows, so neither limit cuts a call the other
    /// would let through; still finite for runaway loops.
    pub fuel: u64,
    /// Cap on the instance's linear memory in bytes. The default, 128 MiB,
    /// holds the snapshot of a large script (a 1 MB script snapshots to about
    /// 12 MB) with plenty left for the call's own data.
    pub memory_bytes: usize,
    /// Wall-clock deadline of the call, enforced by epoch interruption; it
    /// also bounds time spent waiting on the host. Default 10 s.
    pub deadline: Duration,
    /// Largest params document accepted, in bytes. Default 4 MiB.
    pub max_params_bytes: usize,
    /// Largest result document returned, in bytes. Default 4 MiB.
    pub max_result_bytes: usize,
    /// Console output kept per call, in bytes; output past it is dropped and
    /// counted. Default 64 KiB.
    pub max_console_bytes: usize,
    /// Deepest chain of `madrpc.call`s (a client's call is depth 0).
    /// Default 8.
    pub max_depth: u32,
    /// Most sub-calls one call may make. Default 1,000.
    pub max_subcalls: u32,
    /// Most calls a client's call and all its descendants may make
    /// together. Default 10,000: ten full fan-outs.
    pub max_tree_calls: u64,
    /// Fuel a client's call and all its descendants may burn together.
    /// Default 1,000 billion, ten calls' worth: 100 s of CPU, what ten
    /// cores give a tree within the default 10 s deadline.
    pub max_tree_fuel: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 100_000_000_000,
            memory_bytes: 128 << 20,
            deadline: Duration::from_secs(10),
            max_params_bytes: 4 << 20,
            max_result_bytes: 4 << 20,
            max_console_bytes: 64 << 10,
            max_depth: 8,
            max_subcalls: 1000,
            max_tree_calls: 10_000,
            max_tree_fuel: 1_000_000_000_000,
        }
    }
}
