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
//! running then. It follows trivial calls and wide trees alike. A call is
//! refused at once only on that learned pace.
//!
//! The mean age of the calls running bounds the pace from below, which
//! tells a node that has not finished a call yet, or whose calls turned
//! slow, what to expect. That bound rests on a few calls and can be one
//! slow call among trivial ones, so a call it alone judges too late is let
//! wait: it checks again every `RECHECK` and leaves as soon as the wait it
//! can expect passes its share of the time left (half of it while the pace
//! is still being learned).
//!
//! Until a call finished, an eighth of `queue` may wait at once; a call
//! past that share waits for the first to finish (at most the share of its
//! time left it may spend waiting). Until the first `WARM_SAMPLES` calls
//! finished, every waiting call is unsure and checks again as above, so a
//! cold burst of trivial calls is not refused for want of a figure, and a
//! cold flood of heavy ones is refused within a check of the first finish.

use super::gate::{Gate, Priority, Slot};
use crate::rpc::RpcError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The share of a client call's time left that it may expect to spend
/// waiting to start: the rest is for running, sub-calls included.
const WAIT_SHARE: u32 = 4;

/// Weight of the newest sample in the moving average of the pace.
const PACE_WEIGHT: f64 = 0.2;

/// Until the pace is known, the share of `queue` that may wait.
const COLD_SHARE: usize = 8;

/// Client calls whose plain mean is the pace before the moving average
/// takes over; until they finished, no call is refused at once on the
/// pace. A node's first calls run slow (fresh slots, cold caches): one of
/// them alone would make a trivial call look like a heavy one and turn a
/// cold burst away.
const WARM_SAMPLES: u32 = 8;

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
    /// Woken when the first client call finishes.
    first_finish: Notify,
}

/// What the node knows of its pace.
struct Pace {
    /// Seconds between client calls finishing, once one finished: the
    /// mean of the first `WARM_SAMPLES`, then a moving average.
    learned: Option<f64>,
    /// The first samples summed, and their count.
    warm_sum: f64,
    warm_count: u32,
    /// When the calls running started, summed as seconds since `base`:
    /// their mean age bounds the pace from below before any finishes, or
    /// when they run far longer than the calls before them.
    started_sum: f64,
    base: Instant,
}

impl Pace {
    /// Seconds between client calls finishing, as far as known: the
    /// learned pace, bounded from below by the age of the calls running.
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
        match pace.learned {
            Some(learned) if pace.warm_count >= WARM_SAMPLES => {
                pace.learned = Some(learned * (1.0 - PACE_WEIGHT) + sample * PACE_WEIGHT);
            }
            _ => {
                pace.warm_sum += sample;
                pace.warm_count += 1;
                pace.learned = Some(pace.warm_sum / f64::from(pace.warm_count));
                if pace.warm_count == 1 {
                    drop(pace);
                    admission.first_finish.notify_waiters();
                }
            }
        }
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
                warm_sum: 0.0,
                warm_count: 0,
                started_sum: 0.0,
                base: Instant::now(),
            }),
            first_finish: Notify::new(),
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
        if ahead >= self.queue {
            return Err(RpcError::overloaded(1));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if ahead >= self.queue / COLD_SHARE && !self.await_first_finish(left / WAIT_SHARE).await {
            return Err(RpcError::overloaded(1));
        }
        let position = ticket.saturating_sub(self.departed.load(Ordering::Acquire)) + 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let (paced, bounded) = self.expected_wait(position);
        if paced.is_some_and(|wait| wait > left / WAIT_SHARE) {
            return Err(RpcError::overloaded(1));
        }
        // Unsure: the pace is not known yet, or only the age of the calls
        // running says the wait is long. They may have turned slow, or be
        // one slow call among trivial ones (a fresh slot, a descheduled
        // thread); such a call waits, checking again, and leaves as soon as
        // the wait it can expect passes its share of the time left (half
        // of it while the pace is still being learned): refused within a
        // check or two when the calls did turn slow.
        let unsure = paced.is_none() || bounded.is_some_and(|wait| wait > left / WAIT_SHARE);
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
        let (call, worker) = loop {
            tokio::select! {
                started = &mut start => break started?,
                () = tokio::time::sleep(RECHECK), if unsure => {
                    let position = ticket.saturating_sub(self.departed.load(Ordering::Acquire)) + 1;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let (_, bounded) = self.expected_wait(position);
                    // Half its time left while the pace is being learned
                    // from a few calls; its share once it is known.
                    let share = if self.learned() { WAIT_SHARE } else { 2 };
                    if bounded.is_some_and(|wait| wait > left / share) {
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

    /// Waits until a client call finished here, at most `limit`; whether
    /// one did. Before, nothing is known of the pace; after, a call waits
    /// as an unsure one until `WARM_SAMPLES` did.
    async fn await_first_finish(&self, limit: Duration) -> bool {
        let notified = self.first_finish.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
            if pace.learned.is_some() {
                return true;
            }
        }
        tokio::time::timeout(limit, notified).await.is_ok()
    }

    /// Whether the pace is known yet: `WARM_SAMPLES` calls finished.
    fn learned(&self) -> bool {
        let pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.warm_count >= WARM_SAMPLES
    }

    /// The wait a call with `position` calls ahead of it and itself can
    /// expect before it starts: on the learned pace alone (`None` until
    /// `WARM_SAMPLES` calls finished), and on the pace bounded by the age of the calls running
    /// (`None` when neither is known).
    fn expected_wait(&self, position: usize) -> (Option<Duration>, Option<Duration>) {
        let pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        let running = self.running.load(Ordering::Acquire);
        let wait = |pace: f64| {
            Duration::try_from_secs_f64(pace * position as f64).unwrap_or(Duration::MAX)
        };
        let learned = pace.learned.filter(|_| pace.warm_count >= WARM_SAMPLES);
        (learned.map(wait), pace.seconds(running).map(wait))
    }
}
