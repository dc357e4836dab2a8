//! Command-line interface: one module per subcommand.

mod build;
mod call;
mod completions;
mod deploy;
mod edge;
mod endpoint;
mod gateway;
mod job;
mod job_flags;
mod keys;
mod limits;
mod node;
mod run;
mod serve;
mod signal;
mod submit;
mod top;
mod top_status;
mod top_view;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// What `madrpc --version` prints after the name: the release, the commit
/// it was built from and the Wasmtime that runs the sandboxes.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MADRPC_GIT_COMMIT"),
    ", wasmtime ",
    env!("MADRPC_WASMTIME_VERSION"),
    ")"
);

/// madrpc runs plain JavaScript functions in WebAssembly sandboxes, on one
/// machine or across a grid.
#[derive(Debug, Parser)]
#[command(name = "madrpc", version = VERSION, about)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text, env = "MADRPC_LOG_FORMAT")]
    pub log_format: LogFormatArg,
    /// No access log line per call (errors and warnings stay).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile a script into a pre-initialized WebAssembly module.
    Build(build::BuildArgs),
    /// Run one call locally and print its JSON result.
    Run(run::RunArgs),
    /// Run the whole grid on this machine: a gateway and local nodes.
    Serve(serve::ServeArgs),
    /// Run a node that executes calls, optionally joining a gateway.
    Node(node::NodeArgs),
    /// Run a gateway that balances JSON-RPC calls across nodes.
    Gateway(gateway::GatewayArgs),
    /// Call a function through a gateway and print its JSON result.
    Call(call::CallArgs),
    /// Manage the API keys of `serve --keys` and `gateway --keys`.
    Keys(keys::KeysArgs),
    /// Watch a running grid live: nodes, calls/s, latency, errors.
    Top(top::TopArgs),
    /// Ship a new module version to a running grid, or roll back.
    Deploy(deploy::DeployArgs),
    /// Submit a durable job and print its id (with --wait, its result).
    Submit(submit::SubmitArgs),
    /// Show a job (with --wait, once it has finished).
    Job(job::JobArgs),
    /// Print shell completions: `madrpc completions bash > /etc/bash_completion.d/madrpc`.
    Completions(completions::CompletionsArgs),
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(
        cli.command,
        Command::Serve(_) | Command::Node(_) | Command::Gateway(_)
    ) {
        // The long-running commands serve /metrics.
        madrpc::telemetry::metrics::install();
    }
    match cli.command {
        Command::Build(args) => build::run(args),
        Command::Run(args) => run::run(args),
        Command::Serve(args) => {
            async_runtime_with(args.blocking_threads())?.block_on(serve::run(args))
        }
        Command::Node(args) => {
            async_runtime_with(args.blocking_threads())?.block_on(node::run(args))
        }
        Command::Gateway(args) => async_runtime()?.block_on(gateway::run(args)),
        Command::Call(args) => async_runtime()?.block_on(call::run(args)),
        Command::Keys(args) => keys::run(args),
        Command::Top(args) => top::run(args),
        Command::Deploy(args) => async_runtime()?.block_on(deploy::run(args)),
        Command::Submit(args) => async_runtime()?.block_on(submit::run(args)),
        Command::Job(args) => async_runtime()?.block_on(job::run(args)),
        Command::Completions(args) => completions::run(args),
    }
}

/// The Tokio runtime of the long-running commands. Its threads (blocking
/// pool included, where calls run) get stacks large enough for Wasm.
fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    async_runtime_with(512)
}

/// [`async_runtime`] with room for `max_blocking_threads` calls at once
/// (see `madrpc::node::Sizing`).
fn async_runtime_with(max_blocking_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(madrpc::runtime::CALL_THREAD_STACK_BYTES)
        .max_blocking_threads(max_blocking_threads.max(1))
        .build()?)
}

/// The runtime of a command that runs calls: its limits, and a slot for
/// every call of a full fan-out at once.
fn call_runtime(
    limits: &madrpc::runtime::Limits,
) -> anyhow::Result<std::sync::Arc<madrpc::runtime::Runtime>> {
    Ok(std::sync::Arc::new(madrpc::runtime::Runtime::new(
        madrpc::runtime::RuntimeConfig {
            limits: limits.clone(),
            max_instances: madrpc::runtime::FAN_OUT_INSTANCES,
            ..madrpc::runtime::RuntimeConfig::default()
        },
    )?))
}

/// Loads a module file off the async threads (compiling it takes a second
/// when it is not cached yet).
async fn load_module(
    runtime: &std::sync::Arc<madrpc::runtime::Runtime>,
    path: &std::path::Path,
) -> anyhow::Result<madrpc::runtime::LoadedModule> {
    use anyhow::Context;
    let runtime = runtime.clone();
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || runtime.load_file(&owned))
        .await?
        .with_context(|| format!("cannot load {}", path.display()))
}

/// The number of cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs go to stderr; `RUST_LOG` takes precedence over `-v`.
pub fn init_telemetry(args: &Cli) -> Option<madrpc::telemetry::log::FlushGuard> {
    use madrpc::telemetry::log::{self, LogFormat};
    let format = match args.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    log::init(args.verbose, format, args.quiet)
}
