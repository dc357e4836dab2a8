//! Command-line interface: one module per subcommand.

mod build;
mod limits;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// madrpc runs plain JavaScript functions in WebAssembly sandboxes, on one
/// machine or across a grid.
#[derive(Debug, Parser)]
#[command(name = "madrpc", version, about)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile a script into a pre-initialized WebAssembly module.
    Build(build::BuildArgs),
    /// Run one call locally and print its JSON result.
    Run(run::RunArgs),
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build::run(args),
        Command::Run(args) => run::run(args),
    }
}

/// Logs go to stderr; `RUST_LOG` takes precedence over `-v`.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
