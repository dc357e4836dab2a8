//! One rule sizes a node: its workers fix how many calls it admits, the
//! calls it admits fix how many Wasm instance slots and blocking threads
//! the process needs. A call holds an instance slot and a blocking thread
//! from the moment it starts until it ends, waiting on its sub-calls
//! included; so a process with a slot and a thread for every call its
//! nodes let start never runs out of either, and a call past admission is
//! refused at once as `overloaded` instead of queued.
//!
//! ```text
//! client calls running   = workers × DEFAULT_CLIENT_CALLS_PER_WORKER  (--client-calls)
//! client calls waiting   ≤ workers × DEFAULT_QUEUE_PER_WORKER         (--queue)
//! sub-calls              = workers × DEFAULT_SUBCALLS_PER_WORKER      (--subcalls)
//! instance slots   = Σ over the process's nodes (client calls running + sub-calls)
//! blocking threads = instance slots + SPARE_BLOCKING_THREADS
//! ```
//!
//! A client call waiting to start holds neither a slot nor a thread, and
//! it waits only while the wait it can expect is a quarter of its deadline
//! (see `admission.rs`).

/// Client calls (depth 0) a node runs at once per worker, counting those
/// that wait on their sub-calls: each holds an instance slot and a thread.
/// Four per worker keeps every worker busy while the trees of admitted
/// calls run their sub-calls.
pub const DEFAULT_CLIENT_CALLS_PER_WORKER: usize = 4;

/// Client calls a node lets wait to start, per worker, at most; fewer when
/// the node's pace says they would wait more than a quarter of their
/// deadline.
pub const DEFAULT_QUEUE_PER_WORKER: usize = 256;

/// Sub-calls (depth 1 and deeper) a node admits per worker. They belong to
/// trees already admitted, never compete with client calls for admission,
/// and go before them for a worker. A fan-out wider than this is sent in a
/// window and the refused rest is sent again after a short pause.
pub const DEFAULT_SUBCALLS_PER_WORKER: usize = 64;

/// Blocking threads beyond the instance slots, for the process's other
/// blocking work (loading modules, reading files).
pub const SPARE_BLOCKING_THREADS: usize = 16;

/// How many calls a node runs and admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Calls run at once.
    pub workers: usize,
    /// Client calls running at once, waiting on sub-calls included.
    pub client_calls: usize,
    /// Client calls waiting to start, at most.
    pub queue: usize,
    /// Sub-calls admitted at once.
    pub subcalls: usize,
}

impl Sizing {
    /// The sizing of a node with `workers` workers; the other counts
    /// override the per-worker defaults.
    pub fn new(
        workers: usize,
        client_calls: Option<usize>,
        queue: Option<usize>,
        subcalls: Option<usize>,
    ) -> Self {
        let workers = workers.max(1);
        Self {
            workers,
            client_calls: client_calls
                .unwrap_or(workers * DEFAULT_CLIENT_CALLS_PER_WORKER)
                .max(1),
            queue: queue.unwrap_or(workers * DEFAULT_QUEUE_PER_WORKER),
            subcalls: subcalls
                .unwrap_or(workers * DEFAULT_SUBCALLS_PER_WORKER)
                .max(1),
        }
    }

    /// Calls that may hold an instance slot at once: every call running.
    pub fn instances(&self) -> usize {
        self.client_calls + self.subcalls
    }
}

/// The instance slots a process running `nodes` nodes of `sizing` needs.
pub fn instance_slots(sizing: Sizing, nodes: usize) -> usize {
    sizing.instances().saturating_mul(nodes.max(1))
}

/// The blocking threads a process with `instance_slots` slots needs: one
/// per call that can hold a slot, and a few spare.
pub fn blocking_threads(instance_slots: usize) -> usize {
    instance_slots.saturating_add(SPARE_BLOCKING_THREADS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_slots_and_threads_follow_from_the_workers() {
        let sizing = Sizing::new(2, None, None, None);
        assert_eq!(sizing.client_calls, 8);
        assert_eq!(sizing.queue, 512);
        assert_eq!(sizing.subcalls, 128);
        assert_eq!(instance_slots(sizing, 2), 2 * 136);
        assert_eq!(blocking_threads(272), 272 + SPARE_BLOCKING_THREADS);
        let overridden = Sizing::new(0, Some(0), Some(0), Some(5));
        assert_eq!((overridden.workers, overridden.client_calls), (1, 1));
        assert_eq!(overridden.instances(), 6);
    }
}
