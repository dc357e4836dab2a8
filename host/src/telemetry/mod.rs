//! What makes a running grid observable: Prometheus series
//! ([`metrics`]), request ids and trace context ([`trace`]), the log
//! format ([`log`]), the access log ([`access`]) and the recent
//! statistics behind `_metrics`, `madrpc top` and the status page
//! ([`stats`]), and the `/ready` reply ([`ready`]). It sits on the bottom floor: it names no other module.

pub mod access;
pub mod log;
mod log_writer;
pub mod metrics;
pub mod ready;
pub mod stats;
pub mod trace;

pub use access::{CallLog, CallRecord, method_label};
pub use trace::{REQUEST_ID_HEADER, RequestId, TRACEPARENT_HEADER, TraceParent};
