//! How a sub-call's budget travels over HTTP: two request headers that the
//! gateway forwards and nodes honor. They can only tighten a call's limits.

use axum::http::HeaderMap;
use std::time::{Duration, Instant};

/// The call's depth in a `madrpc.call` tree (absent: 0).
pub const DEPTH_HEADER: &str = "x-madrpc-depth";
/// Milliseconds left before the parent's deadline (absent: no inherited
/// deadline).
pub const DEADLINE_HEADER: &str = "x-madrpc-deadline-ms";

/// The budget a call arrives with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallBudget {
    /// Depth in the call tree.
    pub depth: u32,
    /// Inherited absolute deadline.
    pub deadline: Option<Instant>,
}

impl CallBudget {
    /// Reads the budget headers; malformed values are ignored.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Self {
            depth: number(DEPTH_HEADER).map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX)),
            deadline: number(DEADLINE_HEADER).map(|ms| Instant::now() + Duration::from_millis(ms)),
        }
    }

    /// The headers that carry this budget onward, the deadline as the time
    /// left now.
    pub fn to_headers(self) -> Vec<(&'static str, String)> {
        if self == Self::default() {
            return Vec::new();
        }
        let mut headers = vec![(DEPTH_HEADER, self.depth.to_string())];
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            headers.push((DEADLINE_HEADER, left.as_millis().to_string()));
        }
        headers
    }

    /// Time left, if a deadline was inherited.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_headers() {
        let budget = CallBudget {
            depth: 3,
            deadline: Some(Instant::now() + Duration::from_millis(500)),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in budget.to_headers() {
            headers.insert(name, value.parse().unwrap());
        }
        let read = CallBudget::from_headers(&headers);
        assert_eq!(read.depth, 3);
        let left = read.remaining().unwrap();
        assert!(left <= Duration::from_millis(500) && left > Duration::from_millis(400));
    }

    #[test]
    fn absent_or_malformed_headers_mean_no_budget() {
        let mut headers = HeaderMap::new();
        headers.insert(DEPTH_HEADER, "lots".parse().unwrap());
        assert_eq!(CallBudget::from_headers(&headers), CallBudget::default());
    }
}
