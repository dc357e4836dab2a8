//! Admission of a node's client calls (depth 0). A client call starts at
//! once when one of the node's client-call places and a worker are free.
//! Otherwise it may wait, but only while the wait it can expect is a small
//! share of its deadline and at most `queue` others wait; past that it is
//! refused at once as `overloaded`, so excess calls are turned away in
//! microseconds instead of expiring in a queue.
//!
//! The expected wait is the calls ahead times the node's pace, the time
//! between two client calls finishing, learned by Little's law from the
//! calls that finish: how long a call ran divided by the client calls
//! running then. It follows trivial calls and wide trees alike. Until the
//! first call finishes the pace is unknown, and an eighth of `queue` may
//! wait.

use super::gate::{Gate, Priority, Slot};
use crate::rpc::RpcError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The share of a client call's time left that it may expect to spend
/// waiting to start: the rest is for running, sub-calls included.
const WAIT_SHARE: u32 = 4;

/// Weight of the newest sample in the moving average of the pace.
const PACE_WEIGHT: f64 = 0.2;

/// Until the pace is known, the share of `queue` that may wait.
const COLD_SHARE: usize = 8;

/// A client call that started: its place, its worker, and its timing.
pub(super) struct Started<'a> {
    /// Held until the call ends, waiting on its sub-calls included.
    pub(super) call: OwnedSemaphorePermit,
    /// The worker; the call gives it back while it waits on sub-calls.
    pub(super) worker: Slot,
    /// Dropped when the call ends.
    pub(super) running: Running<'a>,
}

/// The client-call side of a node's admission.
pub(super) struct ClientAdmission {
    calls: Arc<Semaphore>,
    running: AtomicUsize,
    waiting: AtomicUsize,
    queue: usize,
    /// Seconds between client calls finishing, once known.
    pace: Mutex<Option<f64>>,
}

/// A client call that runs: counted, and timed for the pace, until it
/// ends however it ends.
pub(super) struct Running<'a> {
    admission: &'a ClientAdmission,
    since: Instant,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let admission = self.admission;
        let running = admission.running.fetch_sub(1, Ordering::AcqRel).max(1);
        let sample = self.since.elapsed().as_secs_f64() / running as f64;
        let mut pace = admission.pace.lock().unwrap_or_else(|p| p.into_inner());
        *pace = Some(pace.map_or(sample, |pace| {
            pace * (1.0 - PACE_WEIGHT) + sample * PACE_WEIGHT
        }));
    }
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
            running: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            queue,
            pace: Mutex::new(None),
        }
    }

    /// Starts a client call whose deadline is `deadline`, or refuses it.
    pub(super) async fn admit(
        &self,
        gate: &Arc<Gate>,
        deadline: Instant,
    ) -> Result<Started<'_>, RpcError> {
        if let Ok(call) = self.calls.clone().try_acquire_owned() {
            if let Some(worker) = gate.try_acquire() {
                return Ok(self.started(call, worker));
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
    ) -> Result<Started<'_>, RpcError> {
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting(&self.waiting);
        let left = deadline.saturating_duration_since(Instant::now());
        let too_long = match self.expected_wait(ahead + 1) {
            Some(wait) => wait > left / WAIT_SHARE,
            // Before the node has shown its pace.
            None => ahead >= self.queue / COLD_SHARE,
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
        Ok(self.started(call, worker))
    }

    fn started(&self, call: OwnedSemaphorePermit, worker: Slot) -> Started<'_> {
        self.running.fetch_add(1, Ordering::AcqRel);
        Started {
            call,
            worker,
            running: Running {
                admission: self,
                since: Instant::now(),
            },
        }
    }

    /// The wait a call with `position` calls ahead of it and itself can
    /// expect before it starts; `None` before the node's pace is known.
    fn expected_wait(&self, position: usize) -> Option<Duration> {
        let pace = *self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.map(|pace| {
            Duration::try_from_secs_f64(pace * position as f64).unwrap_or(Duration::MAX)
        })
    }
}
