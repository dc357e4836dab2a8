//! `madrpc build script.js [-o script.wasm]`.

use anyhow::Context;
use clap::Args;
use madrpc::build;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `madrpc build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The JavaScript file to build.
    script: PathBuf,
    /// Where to write the module (default: the script's path with `.wasm`).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// CPU budget of the script's top level, in Wasm instructions, counted
    /// so that a build fails or succeeds the same way on every machine
    /// (default 50,000,000,000, a few seconds).
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// Memory cap of the script's top level, e.g. 512MiB (default 1GiB).
    #[arg(long, value_name = "SIZE")]
    memory: Option<bytesize::ByteSize>,
}

/// Builds the script, writes the module and prints its path, size and
/// methods.
pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let defaults = build::BuildLimits::default();
    let limits = build::BuildLimits {
        fuel: args.fuel.unwrap_or(defaults.fuel),
        memory_bytes: args.memory.map_or(defaults.memory_bytes, |size| {
            usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
        }),
    };
    let built = build::build_file_with(&args.script, &limits)?;
    let output = args
        .output
        .unwrap_or_else(|| args.script.with_extension("wasm"));
    std::fs::write(&output, &built.wasm)
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "built {} ({}) in {:.2} s; methods: {}",
        output.display(),
        bytesize::ByteSize(built.wasm.len() as u64),
        started.elapsed().as_secs_f64(),
        built.manifest.methods.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
