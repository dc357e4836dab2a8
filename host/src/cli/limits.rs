//! Command-line flags for the per-call limits, shared by the subcommands
//! that run calls.

use clap::Args;
use madrpc::runtime::Limits;

/// Per-call limit flags; each defaults to [`Limits::default`].
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// CPU budget per call, in fuel units (about one per Wasm instruction).
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
