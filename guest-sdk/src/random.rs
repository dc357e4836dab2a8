//! `Math.random` that is reseeded from host entropy on first use in a call.
//!
//! The generator's state lives in linear memory, so a generator touched at
//! build time would otherwise replay the same sequence in every call.

use std::cell::RefCell;

thread_local! {
    static GENERATOR: RefCell<Option<fastrand::Rng>> = const { RefCell::new(None) };
}

/// Forgets the current generator so the next `Math.random()` reseeds.
pub fn reset() {
    GENERATOR.with(|g| *g.borrow_mut() = None);
}

/// The `Math.random` implementation installed in the JS global scope.
pub fn next_f64() -> f64 {
    GENERATOR.with(|g| {
        g.borrow_mut()
            .get_or_insert_with(|| fastrand::Rng::with_seed(crate::host::random_seed()))
            .f64()
    })
}
