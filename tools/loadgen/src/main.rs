//! `madrpc-loadgen`: drives a JSON-RPC 2.0 over HTTP server with concurrent
//! keep-alive clients, checks every reply and prints throughput and latency.
//!
//! This file only parses the command line, runs the load and maps the
//! outcome to the exit status; each concern lives in its own module.

mod check;
mod cli;
mod client;
mod idle;
mod overload;
mod report;
mod run;
mod settings;
mod workload;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = cli::Cli::parse();
    if cli.retry_after {
        let report = overload::run(cli.overload_settings()).await?;
        report.print(cli.json)?;
        return Ok(if report.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let idle = match cli.idle_connections {
        0 => None,
        count => Some(idle::IdleConnections::open(&cli.url, count).await?),
    };
    let report = run::run(cli.settings()).await?;
    report.print(cli.json)?;
    let idle_kept = idle.as_ref().is_none_or(|idle| {
        let open = idle.still_open();
        eprintln!("idle connections still open: {open} of {}", idle.len());
        open == idle.len()
    });
    Ok(if report.is_clean() && idle_kept {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
