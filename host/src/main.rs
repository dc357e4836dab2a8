//! The `madrpc` command: parses the command line and hands over to one
//! subcommand; errors are printed once, here.

mod cli;

/// mimalloc rather than the system allocator: the request path of the
/// gateway and the nodes allocates and frees many small buffers per call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Dropping it writes out the last log lines, before the error if any.
    let log = cli::init_telemetry(&args);
    let outcome = cli::dispatch(args);
    drop(log);
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
