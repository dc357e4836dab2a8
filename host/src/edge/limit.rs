//! Rate and concurrency limits: per API key (each key's own limits), or per
//! client IP when there are no keys. Token buckets come from `governor`;
//! a batch takes one token per entry.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest quiet per-IP state is kept between two sweeps.
pub const EVICT_EVERY: Duration = Duration::from_secs(30);

/// The shortest time between two sweeps of quiet per-IP state: a sweep
/// visits every address kept.
const EVICT_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// A call refused by a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Whole seconds to wait, at least 1.
    pub retry_after_secs: u64,
    /// What was exceeded, for the error message.
    pub reason: String,
}

/// A rate of `rate` calls per second with bursts of `burst` (default: one
/// second's worth, at least 1).
pub fn quota(rate: f64, burst: Option<u32>) -> Option<Quota> {
    if !(rate.is_finite() && rate > 0.0) {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let default_burst = u32::try_from(rate.ceil() as u64).unwrap_or(u32::MAX);
    let burst = NonZeroU32::new(burst.unwrap_or(default_burst).max(1))?;
    Some(Quota::with_period(period)?.allow_burst(burst))
}

/// The limits of one key.
pub struct KeyLimits {
    rate: Option<(DefaultDirectRateLimiter, Quota)>,
    concurrency: Option<(Arc<Semaphore>, u32)>,
}

impl KeyLimits {
    /// Limits from a key's settings; `None` fields mean unlimited.
    pub fn new(rate: Option<f64>, burst: Option<u32>, concurrency: Option<u32>) -> Self {
        Self {
            rate: rate
                .and_then(|r| quota(r, burst))
                .map(|q| (RateLimiter::direct(q), q)),
            concurrency: concurrency.map(|n| (Arc::new(Semaphore::new(n as usize)), n)),
        }
    }

    /// Takes `calls` tokens and concurrency permits, or says how long to
    /// wait. The permits are held until the returned value drops.
    pub fn admit(&self, calls: u32) -> Result<Option<OwnedSemaphorePermit>, Refusal> {
        let calls = NonZeroU32::new(calls.max(1)).unwrap_or(NonZeroU32::MIN);
        if let Some((limiter, quota)) = &self.rate {
            check(limiter.check_n(calls), calls, quota)?;
        }
        match &self.concurrency {
            None => Ok(None),
            Some((slots, limit)) => slots
                .clone()
                .try_acquire_many_owned(calls.get())
                .map(Some)
                .map_err(|_| Refusal {
                    retry_after_secs: 1,
                    reason: format!(
                        "at its limit of {limit} {} running at once",
                        if *limit == 1 { "call" } else { "calls" }
                    ),
                }),
        }
    }
}

/// Per-IP rate limits for callers without keys. An IPv6 client is limited
/// by its /64 prefix, the block one host or one customer usually gets, so
/// that rotating through its own addresses neither escapes the limit nor
/// fills memory with buckets.
pub struct IpLimits {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    quota: Quota,
}

impl IpLimits {
    /// `rate` calls per second per client address.
    pub fn new(rate: f64, burst: Option<u32>) -> Option<Arc<Self>> {
        let quota = quota(rate, burst)?;
        Some(Arc::new(Self {
            limiter: RateLimiter::keyed(quota),
            quota,
        }))
    }

    /// Takes `calls` tokens for `ip`, or says how long to wait.
    pub fn admit(&self, ip: IpAddr, calls: u32) -> Result<(), Refusal> {
        let calls = NonZeroU32::new(calls.max(1)).unwrap_or(NonZeroU32::MIN);
        check(
            self.limiter.check_key_n(&client_block(ip), calls),
            calls,
            &self.quota,
        )
    }

    /// How often to sweep quiet addresses: once a bucket can be full again
    /// (burst / rate after its last call), within 1 s to [`EVICT_EVERY`].
    pub fn evict_every(&self) -> Duration {
        let refill = self
            .quota
            .replenish_interval()
            .saturating_mul(self.quota.burst_size().get());
        refill.clamp(EVICT_AT_MOST_EVERY, EVICT_EVERY)
    }

    /// Drops the state of addresses whose buckets are full again, so
    /// memory follows the clients seen recently, not every client ever.
    /// Returns how many were dropped and how many are kept.
    pub fn evict_quiet(&self) -> (usize, usize) {
        let before = self.limiter.len();
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let kept = self.limiter.len();
        (before.saturating_sub(kept), kept)
    }

    /// Addresses with state kept.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// The key an address is limited by: an IPv4 address itself (also when
/// mapped into IPv6), an IPv6 address's /64 prefix.
fn client_block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

fn check(
    outcome: Result<
        Result<(), governor::NotUntil<governor::clock::QuantaInstant>>,
        governor::InsufficientCapacity,
    >,
    calls: NonZeroU32,
    quota: &Quota,
) -> Result<(), Refusal> {
    let per_second = 1.0 / quota.replenish_interval().as_secs_f64();
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(Refusal {
                retry_after_secs: whole_seconds(wait),
                reason: format!("over the limit of {per_second:.3} calls/s"),
            })
        }
        Err(_) => Err(Refusal {
            retry_after_secs: 1,
            reason: format!(
                "a batch of {calls} calls is larger than the burst of {}; split it",
                quota.burst_size()
            ),
        }),
    }
}

/// `wait` in whole seconds, rounded up, never 0.
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }

    #[test]
    fn a_key_gets_its_burst_then_is_refused() {
        let limits = KeyLimits::new(Some(1.0), Some(3), None);
        for _ in 0..3 {
            assert!(limits.admit(1).is_ok());
        }
        let refusal = limits.admit(1).unwrap_err();
        assert_eq!(refusal.retry_after_secs, 1);
        let too_big = limits.admit(10).unwrap_err();
        assert!(too_big.reason.contains("split it"), "{}", too_big.reason);
    }

    #[test]
    fn concurrency_permits_come_back_when_dropped() {
        let limits = KeyLimits::new(None, None, Some(2));
        let held = limits.admit(2).unwrap();
        assert!(limits.admit(1).is_err());
        drop(held);
        assert!(limits.admit(1).is_ok());
    }

    #[test]
    fn each_ip_has_its_own_bucket_and_quiet_ones_are_evicted() {
        let limits = IpLimits::new(1000.0, Some(1)).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limits.admit(a, 1).is_ok());
        assert!(limits.admit(a, 1).is_err());
        assert!(limits.admit(b, 1).is_ok());
        assert_eq!(limits.tracked(), 2);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(limits.evict_quiet(), (2, 0));
        assert_eq!(limits.tracked(), 0);
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_slash_64() {
        let limits = IpLimits::new(1000.0, Some(1)).unwrap();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let next_block: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.admit(one, 1).is_ok());
        assert!(limits.admit(same_block, 1).is_err());
        assert!(limits.admit(next_block, 1).is_ok());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let plain: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limits.admit(mapped, 1).is_ok());
        assert!(limits.admit(plain, 1).is_err());
        assert_eq!(limits.tracked(), 3);
    }

    #[test]
    fn sweeps_follow_the_time_a_bucket_takes_to_fill() {
        let sweep = |rate, burst| IpLimits::new(rate, burst).unwrap().evict_every();
        assert_eq!(sweep(100.0, Some(1)), Duration::from_secs(1));
        assert_eq!(sweep(1.0, Some(5)), Duration::from_secs(5));
        assert_eq!(sweep(1.0 / 60.0, None), EVICT_EVERY);
    }
}
