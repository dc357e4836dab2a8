//! `performance.now()`: milliseconds since the start of the current call.
//!
//! The start is read from the host's monotonic clock when the call begins,
//! never from the build, so a value measures the call.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static CALL_START: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Marks the start of a call.
pub fn start_call() {
    CALL_START.with(|start| start.set(Some(Instant::now())));
}

/// Milliseconds since [`start_call`], with sub-millisecond precision; at
/// build time, since the first reading.
pub fn now() -> f64 {
    CALL_START.with(|start| {
        let origin = start.get().unwrap_or_else(|| {
            let now = Instant::now();
            start.set(Some(now));
            now
        });
        origin.elapsed().as_secs_f64() * 1000.0
    })
}
