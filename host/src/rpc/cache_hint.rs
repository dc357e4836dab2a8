//! What a client asked of the result cache, and what the cache did, for
//! one call of the HTTP endpoint. The endpoint sets a [`CacheHint`] around
//! a single call; the gateway's cache claims it, so the endpoint can answer
//! with `x-madrpc-cache` without every [`super::Dispatch`] returning more
//! than its result. A task-local keeps it off the call path of everything
//! that does not cache (nodes, batches, jobs).

use std::sync::Mutex;

/// The response header saying whether a cacheable call was served from the
/// cache (`hit`) or ran (`miss`).
pub const CACHE_HEADER: &str = "x-madrpc-cache";

/// What the cache did with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache, or from an identical call in flight.
    Hit,
    /// Ran on a node.
    Miss,
}

impl CacheOutcome {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

/// The cache request of one call, and what came of it.
#[derive(Debug, Default)]
pub struct CacheHint {
    state: Mutex<HintState>,
}

#[derive(Debug, Default)]
struct HintState {
    bypass: bool,
    claimed: bool,
    outcome: Option<CacheOutcome>,
}

tokio::task_local! {
    static HINT: std::sync::Arc<CacheHint>;
}

impl CacheHint {
    /// A hint for a call whose client sent `Cache-Control: no-cache`
    /// (`bypass`) or not.
    pub fn new(bypass: bool) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            state: Mutex::new(HintState {
                bypass,
                ..HintState::default()
            }),
        })
    }

    /// Runs `future` with `hint` as its call's hint.
    pub async fn scope<F: Future>(hint: std::sync::Arc<Self>, future: F) -> F::Output {
        HINT.scope(hint, future).await
    }

    /// Claims the hint of the current call: `Some(bypass)` for the first
    /// cacheable call of the scope (the client's own call), `None` for any
    /// other (its sub-calls, or a call outside an endpoint).
    pub fn claim() -> Option<Claim> {
        HINT.try_with(|hint| {
            let mut state = hint.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.claimed {
                return None;
            }
            state.claimed = true;
            Some(Claim {
                hint: hint.clone(),
                bypass: state.bypass,
            })
        })
        .ok()
        .flatten()
    }

    /// What the cache did, once the call is over.
    pub fn outcome(&self) -> Option<CacheOutcome> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).outcome
    }
}

/// The client's call, claimed by the cache.
pub struct Claim {
    hint: std::sync::Arc<CacheHint>,
    /// Whether the client asked to bypass the cache.
    pub bypass: bool,
}

impl Claim {
    /// Records what the cache did, for the response header.
    pub fn record(&self, outcome: CacheOutcome) {
        self.hint
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outcome = Some(outcome);
    }
}
