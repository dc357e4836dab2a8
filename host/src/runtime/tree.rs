//! Budgets shared by a call tree: a client's call and all its descendants
//! share a number of calls (`--max-tree-calls`) and a total of fuel
//! (`--max-tree-fuel`). Within one process every call of a tree draws on
//! the same counters; a sub-call sent to another process carries what was
//! left when it was sent ([`TreeRef`]), and that process's calls of the
//! tree draw on a copy of it. A breach stops every call of the tree in the
//! process at its next check.

use super::limits::Limits;
pub use crate::rpc::TreeRef;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Which budget of a tree ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeLimit {
    /// `--max-tree-calls`.
    Calls(u64),
    /// `--max-tree-fuel`.
    Fuel(u64),
}

/// Raised from the epoch check when a call's tree was stopped.
#[derive(Debug, thiserror::Error)]
#[error("the call's tree was stopped")]
pub(crate) struct TreeStopped(pub(crate) TreeLimit);

/// The live budget of one tree in this process.
#[derive(Debug)]
pub struct TreeBudget {
    id: u64,
    calls: AtomicU64,
    fuel: AtomicU64,
    stopped: Mutex<Option<TreeLimit>>,
    stop_flag: AtomicBool,
    max_calls: u64,
    max_fuel: u64,
}

impl TreeBudget {
    fn new(id: u64, calls: u64, fuel: u64, limits: &Limits) -> Self {
        Self {
            id,
            calls: AtomicU64::new(calls.min(limits.max_tree_calls)),
            fuel: AtomicU64::new(fuel.min(limits.max_tree_fuel)),
            stopped: Mutex::new(None),
            stop_flag: AtomicBool::new(false),
            max_calls: limits.max_tree_calls,
            max_fuel: limits.max_tree_fuel,
        }
    }

    /// What the tree has left, to send with a sub-call.
    pub fn reference(&self) -> TreeRef {
        TreeRef {
            id: self.id,
            calls: self.calls.load(Ordering::Acquire),
            fuel: self.fuel.load(Ordering::Acquire),
        }
    }

    /// Takes `count` calls from the tree; on a breach the tree stops.
    pub(crate) fn take_calls(&self, count: u64) -> Result<(), TreeLimit> {
        self.check()?;
        let taken = self
            .calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(count)
            });
        match taken {
            Ok(_) => Ok(()),
            Err(_) => Err(self.stop(TreeLimit::Calls(self.max_calls))),
        }
    }

    /// Fuel the tree has left: the most a call of it may start with.
    pub(crate) fn fuel_left(&self) -> Result<u64, TreeLimit> {
        self.check()?;
        match self.fuel.load(Ordering::Acquire) {
            0 => Err(self.stop(TreeLimit::Fuel(self.max_fuel))),
            left => Ok(left),
        }
    }

    /// Charges fuel a call of the tree burned; past what is left, the tree
    /// stops. Calls charge as they run (every few milliseconds), so the
    /// tree overshoots by at most what its running calls burn between two
    /// charges.
    pub(crate) fn charge(&self, burned: u64) -> Result<(), TreeLimit> {
        let charged = self
            .fuel
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(burned)
            });
        match charged {
            Ok(_) => self.check(),
            Err(_) => {
                self.fuel.store(0, Ordering::Release);
                Err(self.stop(TreeLimit::Fuel(self.max_fuel)))
            }
        }
    }

    /// Stops the tree: every call of it in this process ends at its next
    /// check, and no new one starts.
    pub(crate) fn stop(&self, limit: TreeLimit) -> TreeLimit {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let limit = *stopped.get_or_insert(limit);
        self.stop_flag.store(true, Ordering::Release);
        limit
    }

    /// The breach that stopped the tree, if it stopped.
    pub(crate) fn check(&self) -> Result<(), TreeLimit> {
        if !self.stop_flag.load(Ordering::Acquire) {
            return Ok(());
        }
        match *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(limit) => Err(limit),
            None => Ok(()),
        }
    }
}

/// The trees with calls in this process, by identity.
#[derive(Debug, Default)]
pub struct Trees {
    live: Mutex<HashMap<u64, Weak<TreeBudget>>>,
}

/// Trees remembered before dead entries are swept out.
const SWEEP_AT: usize = 1024;

impl Trees {
    /// The budget of the tree `tree` belongs to: the one already here, or a
    /// new one from what it carried (or, for a client's call, the limits).
    pub fn join(&self, tree: Option<TreeRef>, limits: &Limits) -> Arc<TreeBudget> {
        let tree = tree.unwrap_or_else(|| {
            use rand::RngExt;
            TreeRef {
                id: rand::rng().random(),
                calls: u64::MAX,
                fuel: u64::MAX,
            }
        });
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(budget) = live.get(&tree.id).and_then(Weak::upgrade) {
            return budget;
        }
        if live.len() >= SWEEP_AT {
            live.retain(|_, budget| budget.strong_count() > 0);
        }
        let budget = Arc::new(TreeBudget::new(tree.id, tree.calls, tree.fuel, limits));
        live.insert(tree.id, Arc::downgrade(&budget));
        budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(calls: u64, fuel: u64) -> Limits {
        Limits {
            max_tree_calls: calls,
            max_tree_fuel: fuel,
            ..Limits::default()
        }
    }

    #[test]
    fn calls_are_shared_and_a_breach_stops_the_tree() {
        let trees = Trees::default();
        let root = trees.join(None, &limits(5, 1000));
        let same = trees.join(Some(root.reference()), &limits(5, 1000));
        assert!(Arc::ptr_eq(&root, &same));
        assert_eq!(root.take_calls(3), Ok(()));
        assert_eq!(same.take_calls(3), Err(TreeLimit::Calls(5)));
        assert_eq!(root.check(), Err(TreeLimit::Calls(5)));
        assert_eq!(root.fuel_left(), Err(TreeLimit::Calls(5)));
    }

    #[test]
    fn fuel_is_charged_and_never_raised_by_a_reference() {
        let trees = Trees::default();
        let tree = trees.join(None, &limits(10, 100));
        assert_eq!(tree.fuel_left(), Ok(100));
        assert_eq!(tree.charge(70), Ok(()));
        assert_eq!(tree.fuel_left(), Ok(30));
        let forged = TreeRef {
            id: 7,
            calls: u64::MAX,
            fuel: u64::MAX,
        };
        let joined = trees.join(Some(forged), &limits(10, 100));
        assert_eq!(joined.reference().calls, 10);
        assert_eq!(joined.reference().fuel, 100);
        assert_eq!(tree.charge(31), Err(TreeLimit::Fuel(100)));
        assert_eq!(tree.fuel_left(), Err(TreeLimit::Fuel(100)));
        assert_eq!(tree.take_calls(1), Err(TreeLimit::Fuel(100)));
    }
}
