//! `madrpc completions bash|zsh|fish`: shell completions generated from the
//! same definitions the parser uses, so they never drift from the flags.

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `madrpc completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    shell: String,
}

/// Writes the completion script to stdout.
pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        _ => Shell::Fish,
    };
    let mut command = super::Cli::command();
    // Generated into memory: clap_complete panics on a failed write, and
    // stdout may be a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "madrpc", &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}
