//! `madrpc run MODULE_OR_SCRIPT METHOD [JSON]`: one call, locally.

use super::limits::LimitArgs;
use anyhow::Context;
use clap::Args;
use madrpc::build;
use madrpc::runtime::{CallError, LocalSubcalls};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `madrpc run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A module built by `madrpc build`, or a `.js` script to build first.
    module: PathBuf,
    /// The registered function to call.
    method: String,
    /// The params as JSON: an array is spread as arguments, anything else is
    /// the single argument. Omit for no argument.
    params: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Runs the call; prints the result on stdout, or the error on stderr and
/// exits with status 1.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let limits = args.limits.to_limits();
    let runtime = super::call_runtime(&limits)?;
    let is_script = madrpc::build::is_script(&args.module);
    let module = if is_script {
        let built = build::build_file(&args.module)?;
        runtime.load(&built.wasm)
    } else {
        runtime.load_file(&args.module)
    }
    .with_context(|| format!("cannot load {}", args.module.display()))?;

    let params = args.params.unwrap_or_default();
    // Sub-calls (madrpc.call) run in this process, a few at a time.
    let subcalls = LocalSubcalls::new(
        runtime.clone(),
        module.clone(),
        limits.clone(),
        super::cores(),
    );
    let report = runtime.call_in_context(
        &module,
        &args.method,
        params.as_bytes(),
        &limits,
        subcalls.context(),
    );
    match report.result {
        Ok(result) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&result)?;
            stdout.write_all(b"\n")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            if let CallError::Threw(exception) = &error
                && let Some(stack) = &exception.stack
            {
                eprintln!("{}", stack.trim_end());
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
