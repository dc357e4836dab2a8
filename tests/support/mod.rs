//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

pub mod edge;
pub mod fake_node;
pub mod grid;
pub mod jobs;
pub mod load;
pub mod logged;
pub mod netns;
pub mod postgres;
pub mod wasm;

use madrpc::runtime::{LoadedModule, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `madrpc` binary under test.
pub fn madrpc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_madrpc"))
}

/// Runs `madrpc` with `args` in `dir`, capturing its output.
pub fn run_cli(dir: &Path, args: &[&str]) -> Output {
    madrpc()
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("the madrpc binary runs")
}

/// Path of a script under `tests/scripts`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/scripts")
        .join(name)
}

/// Path of a sample script under `examples/`.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// One runtime per test binary, with default limits.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the runtime starts"))
}

/// Builds `tests/scripts/<name>` and loads it into [`runtime`].
pub fn load_script(name: &str) -> LoadedModule {
    let built = madrpc::build::build_file(&script(name)).expect("the test script builds");
    runtime().load(&built.wasm).expect("the built module loads")
}

/// Builds `source` (named `name` in error locations) and loads it into
/// [`runtime`].
pub fn load_source(name: &str, source: &str) -> LoadedModule {
    let built = madrpc::build::build_source(name, source).expect("the source builds");
    runtime().load(&built.wasm).expect("the built module loads")
}

/// Builds `tests/scripts/<name>` into `dir` and returns the module's path.
pub fn build_into(dir: &Path, name: &str) -> PathBuf {
    let built = madrpc::build::build_file(&script(name)).expect("the test script builds");
    let path = dir.join(name.replace(".js", ".wasm"));
    std::fs::write(&path, built.wasm).expect("the module is written");
    path
}

/// Text of a process's stdout and stderr.
pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
