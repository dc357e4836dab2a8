//! The log subscriber: text for people or one JSON object per line for
//! collectors, on stderr. Every line a call causes carries its request id
//! and trace id through the `request` span the edge opens around it.

use super::access::ACCESS_TARGET;
pub use super::log_writer::FlushGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

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
/// Lines are written to stderr by a thread of their own (see
/// `log_writer`), so a call never waits on the terminal or pipe behind
/// stderr: with the access log on, writing in the caller's thread took a
/// tenth to a half of the trivial calls' throughput. Nothing is dropped,
/// and the returned guard writes out what is left when dropped: hold it
/// until the process ends. Should the thread not start, lines are written
/// in the caller's thread.
pub fn init(verbose: u8, format: LogFormat, quiet: bool) -> Option<FlushGuard> {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if quiet && let Ok(off) = format!("{ACCESS_TARGET}=off").parse() {
        filter = filter.add_directive(off);
    }
    let (writer, guard) = match super::log_writer::stderr() {
        Ok((writer, guard)) => (BoxMakeWriter::new(writer), Some(guard)),
        Err(_) => (BoxMakeWriter::new(std::io::stderr), None),
    };
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
