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
    // Held to the end of main: dropping it writes out the last log lines.
    let _log = cli::init_telemetry(&args);
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
