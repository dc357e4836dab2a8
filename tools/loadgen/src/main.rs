//! `madrpc-loadgen`: drives a JSON-RPC 2.0 over HTTP server with concurrent
//! keep-alive clients, checks every reply and prints throughput and latency.
//!
//! This file only parses the command line, runs the load and maps the
//! outcome to the exit status; each concern lives in its own module.

mod check;
mod cli;
mod client;
mod report;
mod run;
mod workload;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = cli::Cli::parse();
    let report = run::run(cli.settings()).await?;
    report.print(cli.json)?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
