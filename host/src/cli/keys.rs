//! `madrpc keys new|list|revoke`: API keys for `serve --keys` and
//! `gateway --keys`. The file keeps names, SHA-256 digests and limits; a
//! secret is printed once, alone on stdout, and kept nowhere.

use super::edge::parse_rate;
use clap::{Args, Subcommand};
use madrpc::edge::keys::KeysFile;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `madrpc keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret (only the secret, on stdout).
    New {
        /// Who holds the key (letters, digits, '-', '_', '.').
        name: String,
        /// The keys file (created when missing, readable by its owner only).
        #[arg(long, value_name = "FILE", env = "MADRPC_KEYS")]
        file: PathBuf,
        /// Average calls allowed, e.g. 100/s or 600/min (default: no limit).
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        rate: Option<f64>,
        /// Calls allowed at once above the average rate (default: one
        /// second's worth of --rate).
        #[arg(long, value_name = "N", requires = "rate", value_parser = clap::value_parser!(u32).range(1..))]
        burst: Option<u32>,
        /// Calls that may run at once (default: no limit).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: Option<u32>,
    },
    /// List the keys' names and limits (never secrets).
    List {
        /// The keys file.
        #[arg(long, value_name = "FILE", env = "MADRPC_KEYS")]
        file: PathBuf,
    },
    /// Remove a key; running grids refuse it after SIGHUP.
    Revoke {
        /// The key's name.
        name: String,
        /// The keys file.
        #[arg(long, value_name = "FILE", env = "MADRPC_KEYS")]
        file: PathBuf,
    },
}

/// Runs the keys subcommand.
pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::New {
            name,
            file,
            rate,
            burst,
            concurrency,
        } => {
            let mut keys = KeysFile::read_or_empty(&file)?;
            let secret = keys.add(&name, rate, burst, concurrency)?;
            keys.write(&file)?;
            println!("{secret}");
            eprintln!(
                "created key '{name}' in {}; the secret above is shown only now. Running grids pick it up on SIGHUP.",
                file.display()
            );
        }
        KeysCommand::List { file } => {
            let keys = KeysFile::read(&file)?;
            for key in &keys.keys {
                let limit = |value: Option<String>| value.unwrap_or_else(|| "-".into());
                println!(
                    "{}\trate={}\tburst={}\tconcurrency={}",
                    key.name,
                    limit(key.rate.map(|r| format!("{r}/s"))),
                    limit(key.burst.map(|b| b.to_string())),
                    limit(key.concurrency.map(|c| c.to_string())),
                );
            }
        }
        KeysCommand::Revoke { name, file } => {
            let mut keys = KeysFile::read(&file)?;
            keys.revoke(&name)?;
            keys.write(&file)?;
            eprintln!(
                "revoked key '{name}'; send SIGHUP to running grids to refuse it from now on"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
