//! Whether a module's memory resets have turned slow: the signal that its
//! calls should move to clean slots (see `module::Slots`).
//!
//! One slow reset says little. Under steady load a reset now and then
//! takes ten times the usual (its thread was preempted or interrupted), and
//! reacting to each of those reloaded a busy module four times a second,
//! each reload costing milliseconds of CPU and a round of page faults in
//! the fresh slots. A slot that has turned slow, polluted by a heavy call
//! or slow for a while for the kernel's own reasons, is slow on every
//! reset instead. So the signal is the share of recent resets that were
//! slow: a decaying average that scattered spikes keep low and a slow slot
//! lifts within a few calls, even when it takes only half of them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The share of resets that counts as all of them.
const WHOLE: u32 = 1 << 16;

/// Each reset moves the share this fraction of the way to 0 or 1.
const DECAY: u32 = 16;

/// The share of recent resets that must be slow (3/8): more than six
/// standard deviations above the share that one slow reset in fifteen
/// gives, and reached in about 16 calls when half the calls land in one
/// slow slot.
const SLOW_SHARE: u32 = WHOLE / 8 * 3;

/// What a module's resets have cost lately.
#[derive(Debug)]
pub(crate) struct ResetWatch {
    /// The fastest reset seen, in nanoseconds: what a clean slot costs.
    best: AtomicU64,
    /// The decaying share of slow resets, in `1 / WHOLE`.
    slow_share: AtomicU32,
}

impl Default for ResetWatch {
    fn default() -> Self {
        Self {
            best: AtomicU64::new(u64::MAX),
            slow_share: AtomicU32::new(0),
        }
    }
}

impl ResetWatch {
    /// Counts a reset that took `reset`; whether resets have lately been
    /// slow. A reset is slow when it takes more than twice the fastest
    /// seen, plus 2 µs.
    pub(crate) fn lately_slow(&self, reset: Duration) -> bool {
        let nanos = u64::try_from(reset.as_nanos()).unwrap_or(u64::MAX);
        let best = self.best.fetch_min(nanos, Ordering::Relaxed).min(nanos);
        let slow = nanos > best.saturating_mul(2).saturating_add(2_000);
        let step = |share: u32| share - share / DECAY + if slow { WHOLE / DECAY } else { 0 };
        let before = self
            .slow_share
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |share| {
                Some(step(share))
            })
            .unwrap_or_else(|share| share);
        step(before) >= SLOW_SHARE
    }

    /// Starts over after the module moved to clean slots.
    pub(crate) fn clear(&self) {
        self.slow_share.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: Duration = Duration::from_micros(5);
    const SLOW: Duration = Duration::from_micros(35);

    /// A reset pattern: `slow_every`-th resets are slow.
    fn first_alarm(watch: &ResetWatch, calls: usize, slow_every: usize) -> Option<usize> {
        (1..=calls).find(|n| watch.lately_slow(if n % slow_every == 0 { SLOW } else { CLEAN }))
    }

    #[test]
    fn scattered_slow_resets_never_count_as_slow() {
        let watch = ResetWatch::default();
        // One in five, three times the noise of a busy machine.
        assert_eq!(first_alarm(&watch, 100_000, 5), None);
    }

    #[test]
    fn a_polluted_slot_is_noticed_within_a_few_calls() {
        let watch = ResetWatch::default();
        assert_eq!(first_alarm(&watch, 1_000, usize::MAX), None);
        let alarm = first_alarm(&watch, 100, 1).expect("every reset slow");
        assert!(alarm <= 8, "noticed after {alarm} calls");
        watch.clear();
        // Half the calls land in the polluted slot.
        let alarm = first_alarm(&watch, 100, 2).expect("every other reset slow");
        assert!(alarm <= 32, "noticed after {alarm} calls");
    }

    #[test]
    fn clearing_starts_over() {
        let watch = ResetWatch::default();
        assert!(!watch.lately_slow(CLEAN));
        while !watch.lately_slow(SLOW) {}
        watch.clear();
        assert!(!watch.lately_slow(SLOW), "one slow reset after a move");
    }
}
