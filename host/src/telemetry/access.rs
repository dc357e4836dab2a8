//! What every finished call leaves behind: an access log line (target
//! `madrpc::access`, at INFO; `--quiet` turns it off), its Prometheus
//! series, and its share of the in-memory statistics.

use super::metrics::{self, Surface};
use super::stats::{CallStats, Finished};
use std::time::Duration;

/// The log target of access lines, which `--quiet` silences.
pub const ACCESS_TARGET: &str = "madrpc::access";

/// Records calls for one gateway or node.
#[derive(Default)]
pub struct CallLog {
    surface: Option<Surface>,
    stats: CallStats,
}

/// One finished call, as [`CallLog::finish`] records it.
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    /// The method label: a method the module has, or `unknown`.
    pub method: &'a str,
    /// `ok`, or the error's `data.kind`.
    pub kind: &'a str,
    /// The error's message, when it failed.
    pub message: Option<&'a str>,
    /// The node that ran it, if it reached one.
    pub node: Option<&'a str>,
    /// The API key the call is attributed to.
    pub key: Option<&'a str>,
    /// The request id (kept with recent errors; never a metric label).
    pub request_id: Option<&'a str>,
    /// How long it took.
    pub elapsed: Duration,
}

impl CallLog {
    /// A call log whose series carry `surface`'s prefix.
    pub fn new(surface: Surface) -> Self {
        Self {
            surface: Some(surface),
            stats: CallStats::default(),
        }
    }

    /// The statistics behind `_metrics`, `top` and the status page.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Logs, counts and times a finished call.
    pub fn finish(&self, call: &CallRecord<'_>) {
        tracing::info!(
            target: ACCESS_TARGET,
            method = call.method,
            outcome = call.kind,
            duration_ms = call.elapsed.as_micros() as f64 / 1000.0,
            node = call.node.unwrap_or("-"),
            key = call.key.unwrap_or("-"),
            "call"
        );
        if let Some(surface) = self.surface {
            metrics::record_call(surface, call.method, call.kind, call.elapsed);
        }
        self.stats.record(&Finished {
            method: call.method,
            kind: call.kind,
            message: call.message,
            node: call.node,
            request_id: call.request_id,
            elapsed: call.elapsed,
        });
    }
}

/// The label for `method`: itself when the module has it, else
/// `unknown`, so a client cannot mint series.
pub fn method_label<'a>(method: &'a str, methods: &[String]) -> &'a str {
    if methods.iter().any(|m| m == method) {
        method
    } else {
        "unknown"
    }
}
