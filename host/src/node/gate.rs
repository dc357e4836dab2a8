//! A node's worker slots, handed out by priority. A call that is already
//! part of an admitted tree (a sub-call, or a parent taking its worker back
//! after its sub-calls) goes before a client's call that has not started:
//! otherwise a flood of new client calls would take the workers the
//! admitted trees need to finish, and those trees would run out their
//! deadlines in the queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Who is waiting for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Priority {
    /// Work of a tree already admitted: served first.
    Admitted,
    /// A client's call that has not started yet.
    Client,
}

/// The worker slots of one node.
#[derive(Debug)]
pub(super) struct Gate {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    admitted: VecDeque<oneshot::Sender<Slot>>,
    client: VecDeque<oneshot::Sender<Slot>>,
}

/// One worker slot; it goes to the next waiter when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    gate: Option<Arc<Gate>>,
}

impl Gate {
    /// A gate with `workers` slots.
    pub(super) fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: workers,
                admitted: VecDeque::new(),
                client: VecDeque::new(),
            }),
        })
    }

    /// Waits for a slot. Waiters of [`Priority::Admitted`] are served
    /// before any of [`Priority::Client`], each class in arrival order.
    /// Dropping the future while it waits gives up its place.
    pub(super) async fn acquire(self: &Arc<Self>, priority: Priority) -> Slot {
        loop {
            let waiting = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if state.free > 0 {
                    state.free -= 1;
                    return Slot {
                        gate: Some(self.clone()),
                    };
                }
                let (sender, receiver) = oneshot::channel();
                match priority {
                    Priority::Admitted => state.admitted.push_back(sender),
                    Priority::Client => state.client.push_back(sender),
                }
                receiver
            };
            // The senders live in the gate, which `self` keeps alive: the
            // receiver only fails if the gate was torn down meanwhile.
            if let Ok(slot) = waiting.await {
                return slot;
            }
        }
    }

    /// Hands a freed slot to the next waiter that is still waiting, or
    /// marks it free.
    fn release(self: &Arc<Self>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let next = match state.admitted.pop_front() {
                Some(next) => next,
                None => match state.client.pop_front() {
                    Some(next) => next,
                    None => {
                        state.free += 1;
                        return;
                    }
                },
            };
            match next.send(Slot {
                gate: Some(self.clone()),
            }) {
                Ok(()) => return,
                // That waiter gave up; disarm the slot so that dropping it
                // does not release it a second time, and try the next.
                Err(mut slot) => drop(slot.gate.take()),
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn admitted_work_goes_before_client_calls() {
        let gate = Gate::new(1);
        let held = gate.acquire(Priority::Client).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (name, priority) in [
            ("client-1", Priority::Client),
            ("sub-1", Priority::Admitted),
            ("client-2", Priority::Client),
            ("sub-2", Priority::Admitted),
        ] {
            let (waiter, order) = (gate.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _slot = waiter.acquire(priority).await;
                order.lock().unwrap().push(name);
            }));
            // Let each waiter queue before the next.
            let queued = || {
                let state = gate.state.lock().unwrap();
                state.admitted.len() + state.client.len()
            };
            while queued() < waiters.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["sub-1", "sub-2", "client-1", "client-2"]
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_does_not_lose_the_slot() {
        let gate = Gate::new(1);
        let held = gate.acquire(Priority::Client).await;
        let gone =
            tokio::time::timeout(Duration::from_millis(10), gate.acquire(Priority::Admitted));
        assert!(gone.await.is_err());
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), gate.acquire(Priority::Client));
        assert!(
            again.await.is_ok(),
            "the slot was lost to a waiter that left"
        );
    }
}
