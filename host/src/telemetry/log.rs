//! The log subscriber: text for people or one JSON object per line for
//! collectors, on stderr. Every line a call causes carries its request id
//! and trace id through the `request` span the edge opens around it.

use super::access::ACCESS_TARGET;
use tracing_appender::non_blocking::NonBlockingBuilder;
pub use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line, with the span's fields.
    Json,
}

/// Installs the subscriber: `verbose` 0 is INFO, 1 DEBUG, 2 TRACE;
/// `RUST_LOG` overrides it; `quiet` drops the access log.
///
/// Lines are written to stderr by a thread of their own, so a call never
/// waits on the terminal or pipe behind stderr: with the access log on,
/// writing in the caller's thread took a tenth to a half of the trivial
/// calls' throughput. Nothing is dropped (a full buffer makes callers
/// wait), and the returned guard writes out what is left when dropped:
/// hold it until the process ends.
pub fn init(verbose: u8, format: LogFormat, quiet: bool) -> WorkerGuard {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if quiet && let Ok(off) = format!("{ACCESS_TARGET}=off").parse() {
        filter = filter.add_directive(off);
    }
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("madrpc-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    guard
}
