//! Admission of a node's client calls (depth 0). A client call starts at
//! once when one of the node's client-call slots and a worker are free.
//! Otherwise it may wait, but only while the wait it can expect is a small
//! share of its deadline and at most `queue` others wait; past that it is
//! refused at once as `overloaded`, so excess calls are turned away in
//! microseconds instead of expiring in a queue. The expected wait is the
//! calls ahead times the recent interval between client-call starts while
//! calls were waiting: it learns the node's pace, trivial calls or wide
//! trees alike.

use super::gate::{Gate, Priority, Slot};
use crate::rpc::RpcError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The share of a client call's time left that it may expect to spend
/// waiting to start: the rest is for running, sub-calls included.
const WAIT_SHARE: u32 = 8;

/// Weight of the newest interval in the moving average of the pace.
const PACE_WEIGHT: f64 = 0.2;

/// A client call that started: its client-call slot and its worker.
pub(super) struct Started {
    /// Held until the call ends, waiting on its sub-calls included.
    pub(super) call: OwnedSemaphorePermit,
    /// The worker; the call gives it back while it waits on sub-calls.
    pub(super) worker: Slot,
}

/// The client-call side of a node's admission.
pub(super) struct ClientAdmission {
    calls: Arc<Semaphore>,
    running: usize,
    waiting: AtomicUsize,
    queue: usize,
    pace: Mutex<Pace>,
}

#[derive(Default)]
struct Pace {
    last_start: Option<Instant>,
    /// Seconds between client-call starts while calls waited.
    interval: f64,
    /// Whether `interval` was measured yet.
    known: bool,
}

/// Counts a waiting call until it starts or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ClientAdmission {
    /// `calls` client calls running at once (waiting on sub-calls counts
    /// as running), and at most `queue` waiting to start.
    pub(super) fn new(calls: usize, queue: usize) -> Self {
        Self {
            calls: Arc::new(Semaphore::new(calls)),
            running: calls,
            waiting: AtomicUsize::new(0),
            queue,
            pace: Mutex::new(Pace::default()),
        }
    }

    /// Client calls admitted but not started yet.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Starts a client call whose deadline is `deadline`, or refuses it.
    pub(super) async fn admit(
        &self,
        gate: &Arc<Gate>,
        deadline: Instant,
    ) -> Result<Started, RpcError> {
        if let Ok(call) = self.calls.clone().try_acquire_owned() {
            if let Some(worker) = gate.try_acquire() {
                self.started(false);
                return Ok(Started { call, worker });
            }
            return self.wait(gate, deadline, Some(call)).await;
        }
        self.wait(gate, deadline, None).await
    }

    async fn wait(
        &self,
        gate: &Arc<Gate>,
        deadline: Instant,
        call: Option<OwnedSemaphorePermit>,
    ) -> Result<Started, RpcError> {
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting(&self.waiting);
        let left = deadline.saturating_duration_since(Instant::now());
        let too_long = match self.expected_wait(ahead + 1) {
            Some(wait) => wait > left / WAIT_SHARE,
            // Before the node has shown its pace, no more wait than run.
            None => ahead >= self.running,
        };
        if ahead >= self.queue || too_long {
            return Err(RpcError::overloaded(1));
        }
        let call = match call {
            Some(call) => call,
            None => self
                .calls
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| RpcError::internal("the worker pool is shut down"))?,
        };
        let worker = gate.acquire(Priority::Client).await;
        drop(waiting);
        self.started(true);
        Ok(Started { call, worker })
    }

    /// The wait a call with `position` calls ahead of it and itself can
    /// expect before it starts; `None` before the node's pace is known.
    fn expected_wait(&self, position: usize) -> Option<Duration> {
        let pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.known.then(|| {
            Duration::try_from_secs_f64(pace.interval * position as f64).unwrap_or(Duration::MAX)
        })
    }

    /// Learns the pace from a call that started: starts out of a queue
    /// tell how fast the node takes calls; a call that found a worker free
    /// tells that the node keeps up, and the expected wait shrinks.
    fn started(&self, waited: bool) {
        let now = Instant::now();
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        if !waited && self.waiting() == 0 {
            pace.interval *= 1.0 - PACE_WEIGHT;
        } else if let Some(last) = pace.last_start {
            let interval = now.saturating_duration_since(last).as_secs_f64();
            pace.interval = if pace.known {
                pace.interval * (1.0 - PACE_WEIGHT) + interval * PACE_WEIGHT
            } else {
                interval
            };
            pace.known = true;
        }
        pace.last_start = Some(now);
    }
}
