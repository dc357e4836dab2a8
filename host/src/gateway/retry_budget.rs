//! How many re-sends the gateway allows, so that a grid-wide failure does
//! not double the load: every call puts a tenth of a token in a bucket,
//! every re-send takes a whole one, and a slow trickle keeps a quiet grid
//! able to re-send a few calls.

use std::sync::Mutex;
use std::time::Instant;

/// Tokens one call adds: re-sends stay near 10% of recent calls.
const PER_CALL: f64 = 0.1;
/// Tokens added per second whatever the traffic.
const PER_SECOND: f64 = 5.0;
/// Most tokens kept: a burst of re-sends after a long quiet spell is
/// bounded too.
const MAX_TOKENS: f64 = 50.0;

/// The gateway's budget of re-sends.
#[derive(Debug)]
pub struct RetryBudget {
    state: Mutex<(f64, Instant)>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            state: Mutex::new((PER_SECOND, Instant::now())),
        }
    }
}

impl RetryBudget {
    /// A call was sent.
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Takes a token for a re-send; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(Instant::now())
    }

    fn deposit_at(&self, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        refill(&mut state, now);
        state.0 = (state.0 + PER_CALL).min(MAX_TOKENS);
    }

    fn withdraw_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        refill(&mut state, now);
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(state: &mut (f64, Instant), now: Instant) {
    let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
    state.0 = (state.0 + elapsed * PER_SECOND).min(MAX_TOKENS);
    state.1 = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_sends_stay_near_a_tenth_of_the_calls() {
        let budget = RetryBudget::default();
        let now = Instant::now();
        // Spend the starting tokens.
        while budget.withdraw_at(now) {}
        for _ in 0..1000 {
            budget.deposit_at(now);
        }
        let mut allowed = 0;
        while budget.withdraw_at(now) {
            allowed += 1;
        }
        assert!((45..=50).contains(&allowed), "{allowed}");
        // Time alone brings back a few.
        let later = now + std::time::Duration::from_secs(1);
        let mut trickle = 0;
        while budget.withdraw_at(later) {
            trickle += 1;
        }
        assert_eq!(trickle, 5);
    }

    #[test]
    fn a_long_quiet_spell_does_not_bank_an_unbounded_burst() {
        let budget = RetryBudget::default();
        let later = Instant::now() + std::time::Duration::from_secs(3600);
        let mut allowed = 0;
        while budget.withdraw_at(later) {
            allowed += 1;
        }
        assert_eq!(allowed, 50);
    }
}
