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
//! running then. It follows trivial calls and wide trees alike. The mean
//! age of the calls running bounds it from below, which tells a node that
//! has not finished a call yet, or whose calls turned slow, what to expect.
//! Until a call finished, an eighth of `queue` may wait, and such a call
//! is refused as soon as it can no longer expect to start within half its
//! time left.

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

/// How often a waiting call checks that it can still expect to start in
/// time.
const RECHECK: Duration = Duration::from_millis(20);

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
    /// Waiting calls numbered in arrival order, and how many of them left
    /// the queue: a waiting call's place in line is their difference.
    tickets: AtomicUsize,
    departed: AtomicUsize,
    queue: usize,
    pace: Mutex<Pace>,
}

/// What the node knows of its pace.
struct Pace {
    /// Seconds between client calls finishing, once one finished.
    learned: Option<f64>,
    /// When the calls running started, summed as seconds since `base`:
    /// their mean age bounds the pace from below before any finishes, or
    /// when they run far longer than the calls before them.
    started_sum: f64,
    base: Instant,
}

impl Pace {
    /// Seconds between client calls finishing, as far as known.
    fn seconds(&self, running: usize) -> Option<f64> {
        let floor = (running > 0).then(|| {
            let mean_start = self.started_sum / running as f64;
            let mean_age = (self.base.elapsed().as_secs_f64() - mean_start).max(0.0);
            mean_age / running as f64
        });
        match (self.learned, floor) {
            (Some(learned), Some(floor)) => Some(learned.max(floor)),
            (learned, floor) => learned.or(floor),
        }
    }
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
        let mut pace = admission.pace.lock().unwrap_or_else(|p| p.into_inner());
        let running = admission.running.fetch_sub(1, Ordering::AcqRel).max(1);
        let sample = self.since.elapsed().as_secs_f64() / running as f64;
        pace.started_sum -= self
            .since
            .saturating_duration_since(pace.base)
            .as_secs_f64();
        pace.learned = Some(pace.learned.map_or(sample, |pace| {
            pace * (1.0 - PACE_WEIGHT) + sample * PACE_WEIGHT
        }));
    }
}

/// Counts a waiting call until it starts or gives up.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    departed: &'a AtomicUsize,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.departed.fetch_add(1, Ordering::AcqRel);
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
            tickets: AtomicUsize::new(0),
            departed: AtomicUsize::new(0),
            queue,
            pace: Mutex::new(Pace {
                learned: None,
                started_sum: 0.0,
                base: Instant::now(),
            }),
        }
    }

    /// Whether a client call arriving now could start at once (given
    /// whether a worker is free) or wait for a start.
    pub(super) fn has_room(&self, worker_free: bool) -> bool {
        (worker_free && self.calls.available_permits() > 0)
            || self.waiting.load(Ordering::Acquire) < self.queue
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
        let waiting = Waiting {
            count: &self.waiting,
            departed: &self.departed,
        };
        let ticket = self.tickets.fetch_add(1, Ordering::AcqRel);
        let left = deadline.saturating_duration_since(Instant::now());
        let too_long = self
            .expected_wait(ahead + 1)
            .is_some_and(|wait| wait > left / WAIT_SHARE)
            // Before a call finished, little is known of the pace.
            || (!self.learned() && ahead >= self.queue / COLD_SHARE);
        if ahead >= self.queue || too_long {
            return Err(RpcError::overloaded(1));
        }
        let start = async {
            let call = match call {
                Some(call) => call,
                None => self
                    .calls
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| RpcError::internal("the worker pool is shut down"))?,
            };
            Ok::<_, RpcError>((call, gate.acquire(Priority::Client).await))
        };
        tokio::pin!(start);
        // A call let in before any call finished, when little was known of
        // the pace, leaves once it can no longer expect to start in half
        // its time left: refused late rather than run out its deadline
        // here. Calls let in later were let in on the pace, and wait.
        let cold = !self.learned();
        let (call, worker) = loop {
            tokio::select! {
                started = &mut start => break started?,
                () = tokio::time::sleep(RECHECK), if cold => {
                    let position = ticket.saturating_sub(self.departed.load(Ordering::Acquire)) + 1;
                    let left = deadline.saturating_duration_since(Instant::now());
                    if self.expected_wait(position).is_some_and(|wait| wait > left / 2) {
                        return Err(RpcError::overloaded(1));
                    }
                }
            }
        };
        drop(waiting);
        Ok(self.started(call, worker))
    }

    fn started(&self, call: OwnedSemaphorePermit, worker: Slot) -> Started<'_> {
        let since = Instant::now();
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        self.running.fetch_add(1, Ordering::AcqRel);
        pace.started_sum += since.saturating_duration_since(pace.base).as_secs_f64();
        Started {
            call,
            worker,
            running: Running {
                admission: self,
                since,
            },
        }
    }

    /// Whether a client call finished here yet.
    fn learned(&self) -> bool {
        let pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.learned.is_some()
    }

    /// The wait a call with `position` calls ahead of it and itself can
    /// expect before it starts; `None` before the node's pace is known.
    fn expected_wait(&self, position: usize) -> Option<Duration> {
        let pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        let running = self.running.load(Ordering::Acquire);
        pace.seconds(running).map(|pace| {
            Duration::try_from_secs_f64(pace * position as f64).unwrap_or(Duration::MAX)
        })
    }
}
