//! What a load run is told: where to send, how many clients, which calls,
//! and when to stop.

use std::time::Duration;

use hyper::Uri;

use crate::workload::Method;

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Endpoint to POST to.
    pub url: Uri,
    /// Number of concurrent clients.
    pub concurrency: u32,
    /// Calls per HTTP request (above 1: batch arrays).
    pub batch: u32,
    /// Method called.
    pub method: Method,
    /// Unmeasured time before measurement starts.
    pub warmup: Duration,
    /// When measurement ends.
    pub stop: Stop,
}

/// When the measured part of a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No new request is started after this much measured time.
    AfterDuration(Duration),
    /// No new request is started once this many calls were sent.
    AfterCalls(u64),
}
