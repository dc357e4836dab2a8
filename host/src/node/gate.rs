//! A node's worker slots, handed out by priority. A call that is already
//! part of an admitted tree (a sub-call, or a parent taking its worker back
//! after its sub-calls) goes before a client's call that has not started:
//! otherwise a flood of new client calls would take the workers the
//! admitted trees need to finish, and those trees would run out their
//! deadlines in the queue. Only a client call that holds one of the node's
//! few client-call places waits here, so letting one through after every
//! [`ADMITTED_RUN`] admitted ones costs the trees little and keeps a stream
//! of sub-calls from other nodes' trees from starving this node's own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Admitted waiters served in a row while a client call waits, at most.
const ADMITTED_RUN: usize = 8;

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
    /// Admitted waiters served since a client call last was.
    run: usize,
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
                run: 0,
            }),
        })
    }

    /// How many slots are free now.
    pub(super) fn free(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).free
    }

    /// A slot if one is free now.
    pub(super) fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.free > 0).then(|| {
            state.free -= 1;
            Slot {
                gate: Some(self.clone()),
            }
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
            let client_turn = state.run >= ADMITTED_RUN || state.admitted.is_empty();
            let next = match (client_turn, state.client.is_empty()) {
                (true, false) => {
                    state.run = 0;
                    state.client.pop_front()
                }
                _ => {
                    state.run += 1;
                    state.admitted.pop_front()
                }
            };
            let Some(next) = next else {
                state.free += 1;
                state.run = 0;
                return;
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

    /// The order in which waiters queued as `queued` get the one slot.
    async fn served(queued: &[(&'static str, Priority)]) -> Vec<&'static str> {
        let gate = Gate::new(1);
        let held = gate.acquire(Priority::Client).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for &(name, priority) in queued {
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
        order.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn admitted_work_goes_before_client_calls() {
        let order = served(&[
            ("client-1", Priority::Client),
            ("sub-1", Priority::Admitted),
            ("client-2", Priority::Client),
            ("sub-2", Priority::Admitted),
        ])
        .await;
        assert_eq!(order, ["sub-1", "sub-2", "client-1", "client-2"]);
    }

    #[tokio::test]
    async fn a_client_call_gets_a_turn_after_a_run_of_admitted_work() {
        let mut queued = vec![("client", Priority::Client)];
        queued.extend(std::iter::repeat_n(("sub", Priority::Admitted), 10));
        let order = served(&queued).await;
        assert_eq!(
            order.iter().position(|&n| n == "client"),
            Some(ADMITTED_RUN)
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
