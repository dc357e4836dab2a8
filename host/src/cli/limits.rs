//! Command-line flags for the per-call limits and for admission, shared by
//! the subcommands that run calls.

use clap::Args;
use madrpc::node::Sizing;
use madrpc::runtime::{Limits, Runtime, RuntimeConfig};
use std::sync::Arc;

/// Per-call limit flags; each defaults to [`Limits::default`].
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// CPU budget per call, in fuel units: a unit is a tenth of a
    /// nanosecond of CPU time (default: 100,000,000,000, 10 s).
    #[arg(long, value_name = "UNITS")]
    pub fuel: Option<u64>,
    /// Linear-memory cap per call, e.g. 64MiB.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<bytesize::ByteSize>,
    /// Wall-clock deadline per call, e.g. 500ms or 10s.
    #[arg(long, value_name = "DURATION")]
    pub deadline: Option<humantime::Duration>,
    /// Largest params document, e.g. 4MiB.
    #[arg(long, value_name = "SIZE")]
    pub max_params: Option<bytesize::ByteSize>,
    /// Largest result document, e.g. 4MiB.
    #[arg(long, value_name = "SIZE")]
    pub max_result: Option<bytesize::ByteSize>,
    /// Console output kept per call, e.g. 64KiB.
    #[arg(long, value_name = "SIZE")]
    pub max_console: Option<bytesize::ByteSize>,
    /// Deepest chain of madrpc.call sub-calls.
    #[arg(long, value_name = "N")]
    pub max_depth: Option<u32>,
    /// Most sub-calls one call may make.
    #[arg(long, value_name = "N")]
    pub max_subcalls: Option<u32>,
    /// Most calls a client's call and all its descendants make together
    /// (default: 10,000).
    #[arg(long, value_name = "N")]
    pub max_tree_calls: Option<u64>,
    /// Fuel a client's call and all its descendants burn together
    /// (default: 1,000,000,000,000, ten calls' worth).
    #[arg(long, value_name = "UNITS")]
    pub max_tree_fuel: Option<u64>,
}

impl LimitArgs {
    /// The defaults with the given flags applied.
    pub fn to_limits(&self) -> Limits {
        let size = |s: bytesize::ByteSize| usize::try_from(s.as_u64()).unwrap_or(usize::MAX);
        let defaults = Limits::default();
        Limits {
            fuel: self.fuel.unwrap_or(defaults.fuel),
            memory_bytes: self.memory.map(size).unwrap_or(defaults.memory_bytes),
            deadline: self.deadline.map(Into::into).unwrap_or(defaults.deadline),
            max_params_bytes: self
                .max_params
                .map(size)
                .unwrap_or(defaults.max_params_bytes),
            max_result_bytes: self
                .max_result
                .map(size)
                .unwrap_or(defaults.max_result_bytes),
            max_console_bytes: self
                .max_console
                .map(size)
                .unwrap_or(defaults.max_console_bytes),
            max_depth: self.max_depth.unwrap_or(defaults.max_depth),
            max_subcalls: self.max_subcalls.unwrap_or(defaults.max_subcalls),
            max_tree_calls: self.max_tree_calls.unwrap_or(defaults.max_tree_calls),
            max_tree_fuel: self.max_tree_fuel.unwrap_or(defaults.max_tree_fuel),
        }
    }
}

/// Admission flags of the commands that run nodes. Unset, each follows the
/// one rule of [`madrpc::node::Sizing`]: admission from the workers, slots
/// and blocking threads from admission.
#[derive(Debug, Clone, Args)]
pub struct AdmissionArgs {
    /// Client calls a node runs at once, those waiting on their sub-calls
    /// included (default: 4 per worker).
    #[arg(long, value_name = "N")]
    pub client_calls: Option<usize>,
    /// Client calls that may wait to start before the node answers
    /// "overloaded" with Retry-After (default: 256 per worker, fewer when
    /// they would wait more than a quarter of their deadline).
    #[arg(long, value_name = "N")]
    pub queue: Option<usize>,
    /// Sub-calls a node admits at once, running or waiting (default: 64 per
    /// worker). Client calls never take this room, and sub-calls get a
    /// worker before them.
    #[arg(long, value_name = "N")]
    pub subcalls: Option<usize>,
    /// Sandbox instance slots of the process (default: one for every call
    /// its nodes admit). Fewer save address space; calls that find no slot
    /// are refused as "overloaded".
    #[arg(long, value_name = "N")]
    pub instance_slots: Option<u32>,
}

impl AdmissionArgs {
    /// The sizing of a node with `workers` workers.
    pub fn sizing(&self, workers: usize) -> Sizing {
        Sizing::new(workers, self.client_calls, self.queue, self.subcalls)
    }

    /// The instance slots of a process running `nodes` nodes of `sizing`.
    pub fn instance_slots(&self, sizing: Sizing, nodes: usize) -> u32 {
        self.instance_slots.unwrap_or_else(|| {
            u32::try_from(madrpc::node::instance_slots(sizing, nodes)).unwrap_or(u32::MAX)
        })
    }

    /// The blocking threads of a process running `nodes` nodes of `sizing`:
    /// one for every call they admit, since a call holds its thread while it
    /// waits on its sub-calls (more slots than that are never used).
    pub fn blocking_threads(&self, sizing: Sizing, nodes: usize) -> usize {
        madrpc::node::blocking_threads(madrpc::node::instance_slots(sizing, nodes))
    }
}

/// The runtime of a command that runs nodes: its limits, and `slots`
/// instance slots, as many as the calls its nodes admit.
pub fn node_runtime(limits: &Limits, slots: u32) -> anyhow::Result<Arc<Runtime>> {
    Ok(Arc::new(Runtime::new(RuntimeConfig {
        limits: limits.clone(),
        max_instances: slots.max(1),
        ..RuntimeConfig::default()
    })?))
}
