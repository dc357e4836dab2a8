//! `madrpc build`: JavaScript in, pre-initialized madrpc module out.
//!
//! The script's top level runs exactly once, here, under Wizer; the module
//! carries the resulting heap (with the registered functions in it) and a
//! manifest of the method names.

mod location;

use crate::manifest::{ABI_VERSION, Manifest};
use crate::plugin::PLUGIN_WASM;
pub use crate::runtime::BuildLimits;
use crate::runtime::{self, ConsoleOutput, PreinitError};
use serde::Deserialize;
use std::path::Path;

pub use location::SourceLocation;

/// A built module and what it registers.
#[derive(Debug)]
pub struct BuiltModule {
    /// The module's bytes, ready to write to a `.wasm` file.
    pub wasm: Vec<u8>,
    /// The manifest embedded in it.
    pub manifest: Manifest,
    /// Console output of the script's top level.
    pub console: ConsoleOutput,
}

/// Why a script could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The script file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The script's path.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The script is not UTF-8 text.
    #[error("{path} is not UTF-8 text; save the script as UTF-8")]
    NotUtf8 {
        /// The script's path.
        path: String,
    },
    /// The script has a syntax error or its top level threw.
    #[error("{}{name}: {message}", .location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Script {
        /// Where, when the engine said.
        location: Option<SourceLocation>,
        /// The error's name (`SyntaxError`, `TypeError`, ...).
        name: String,
        /// The error's message.
        message: String,
        /// The JS stack, when there was one.
        stack: Option<String>,
    },
    /// The top level ran but registered nothing.
    #[error(
        "{script}: the script registers no function; call madrpc.register(name, fn) at its top level"
    )]
    NoMethods {
        /// The script's name.
        script: String,
    },
    /// The top level hit the build-time CPU, memory or stack limit.
    #[error("{script}: {reason}")]
    Limit {
        /// The script's name.
        script: String,
        /// The limit that was hit.
        reason: PreinitError,
    },
    /// A failure of the build machinery itself.
    #[error("build failed: {0}")]
    Internal(String),
}

/// The guest's JSON error object (see `guest-sdk/src/error.rs`).
#[derive(Deserialize)]
struct GuestReport {
    kind: String,
    name: String,
    message: String,
    #[serde(default)]
    stack: Option<String>,
}

#[derive(Deserialize)]
struct InitOutput {
    methods: Vec<String>,
    /// Cacheable functions and their time to live in milliseconds.
    #[serde(default)]
    cache: std::collections::BTreeMap<String, u64>,
}

/// Whether `path` names a script to build (`.js`, `.mjs`) rather than a
/// built module.
pub fn is_script(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("js") || ext.eq_ignore_ascii_case("mjs"))
}

/// Builds the script at `path`; messages name it by its file name.
pub fn build_file(path: &Path) -> Result<BuiltModule, BuildError> {
    build_file_with(path, &BuildLimits::default())
}

/// [`build_file`] with the top level's fuel and memory limits given.
pub fn build_file_with(path: &Path, limits: &BuildLimits) -> Result<BuiltModule, BuildError> {
    let bytes = std::fs::read(path).map_err(|source| BuildError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let source = String::from_utf8(bytes).map_err(|_| BuildError::NotUtf8 {
        path: path.display().to_string(),
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "script.js".to_owned());
    build_source_with(&name, &source, limits)
}

/// Builds `source`, naming it `script_name` in stacks and messages.
pub fn build_source(script_name: &str, source: &str) -> Result<BuiltModule, BuildError> {
    build_source_with(script_name, source, &BuildLimits::default())
}

/// [`build_source`] with the top level's fuel and memory limits given.
pub fn build_source_with(
    script_name: &str,
    source: &str,
    limits: &BuildLimits,
) -> Result<BuiltModule, BuildError> {
    let script_name = script_name.replace('\n', " ");
    let preinitialized = runtime::preinitialize(PLUGIN_WASM, &script_name, source, limits)
        .map_err(|error| match error {
            PreinitError::Guest { report, .. } => from_report(&script_name, &report),
            PreinitError::Limit(_) => BuildError::Limit {
                script: script_name.clone(),
                reason: error,
            },
            PreinitError::Internal(message) => BuildError::Internal(message),
        })?;
    let output: InitOutput = serde_json::from_slice(&preinitialized.stdout)
        .map_err(|e| BuildError::Internal(format!("the plugin printed no method list: {e}")))?;
    let manifest = Manifest {
        abi: ABI_VERSION,
        script: script_name,
        methods: output.methods,
        cache: output.cache,
    };
    let mut wasm = preinitialized.wasm;
    manifest.append_to(&mut wasm);
    Ok(BuiltModule {
        wasm,
        manifest,
        console: preinitialized.console,
    })
}

fn from_report(script_name: &str, report: &[u8]) -> BuildError {
    let report: GuestReport = match serde_json::from_slice(report) {
        Ok(report) => report,
        Err(_) => {
            return BuildError::Internal(String::from_utf8_lossy(report).into_owned());
        }
    };
    if report.kind == "no_methods" {
        return BuildError::NoMethods {
            script: script_name.to_owned(),
        };
    }
    let location = report
        .stack
        .as_deref()
        .and_then(|stack| SourceLocation::find_in(stack, script_name))
        .or_else(|| SourceLocation::find_in(&report.message, script_name));
    BuildError::Script {
        location: location.or_else(|| {
            Some(SourceLocation {
                file: script_name.to_owned(),
                line: None,
                column: None,
            })
        }),
        name: report.name,
        message: report.message,
        stack: report.stack,
    }
}
