//! Which calls a node first tries on the thread that received them.
//!
//! Handing a call to a worker thread and its result back costs two thread
//! wake-ups, more than a trivial call itself. So a call, a client's or a
//! sub-call, is first tried on the receiving thread, within a short budget
//! ([`crate::runtime::INLINE_BUDGET`]) and without sub-calls; a call that
//! needs more gives up before anything of it left its fresh sandbox and
//! runs again on a worker. A method whose calls give up is not tried
//! inline for its next [`SKIP_AFTER_GIVING_UP`] calls, so heavy methods
//! pay for a wasted try only now and then.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Calls of a method run straight on a worker after one of its inline
/// tries gave up.
pub const SKIP_AFTER_GIVING_UP: u32 = 256;

/// Methods remembered at most (a module's own; an unknown method never
/// gives up, it fails at once).
const MAX_METHODS: usize = 4096;

/// The methods whose inline tries gave up lately.
#[derive(Default)]
pub(super) struct InlinePolicy {
    skips: RwLock<HashMap<Box<str>, AtomicU32>>,
}

impl InlinePolicy {
    /// Whether to try this call of `method` inline.
    pub(super) fn try_inline(&self, method: &str) -> bool {
        let skips = self.skips.read().unwrap_or_else(|p| p.into_inner());
        match skips.get(method) {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err(),
        }
    }

    /// An inline try of `method` gave up: send its next calls to a worker.
    pub(super) fn gave_up(&self, method: &str) {
        let mut skips = self.skips.write().unwrap_or_else(|p| p.into_inner());
        if let Some(left) = skips.get(method) {
            left.store(SKIP_AFTER_GIVING_UP, Ordering::Relaxed);
        } else if skips.len() < MAX_METHODS {
            skips.insert(method.into(), AtomicU32::new(SKIP_AFTER_GIVING_UP));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_that_gave_up_goes_to_a_worker_for_a_while_then_is_tried_again() {
        let policy = InlinePolicy::default();
        assert!(policy.try_inline("heavy"));
        policy.gave_up("heavy");
        for _ in 0..SKIP_AFTER_GIVING_UP {
            assert!(!policy.try_inline("heavy"));
        }
        assert!(policy.try_inline("heavy"));
        assert!(policy.try_inline("light"));
    }
}
