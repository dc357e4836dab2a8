//! What one connection is doing, as its timeouts need to know: waiting for
//! a request head, running requests, or sitting idle. The socket wrapper
//! notes when bytes arrive; the service notes when a request starts and
//! ends.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a client may take to send a request head, and to leave a
/// keep-alive connection idle.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a request head (from accept, or from its first byte).
    pub head: Duration,
    /// For an idle spell between requests.
    pub idle: Duration,
}

/// Marks "no request head pending".
const NONE: u64 = u64::MAX;

/// The timing state of one connection. Times are milliseconds since the
/// connection opened, so they fit atomics.
pub struct Activity {
    opened: Instant,
    /// Requests running on the connection.
    running: AtomicUsize,
    /// When the first byte of a request head not yet parsed arrived.
    head_since: AtomicU64,
    /// When the connection last became idle.
    idle_since: AtomicU64,
}

impl Activity {
    /// A connection just accepted: it owes a request head from now on.
    pub fn new() -> Self {
        Self {
            opened: Instant::now(),
            running: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// A request head was parsed and its handler starts; the returned
    /// guard marks its end.
    pub fn begin_request(self: &std::sync::Arc<Self>) -> RequestGuard {
        self.running.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        RequestGuard(self.clone())
    }

    fn bytes_arrived(&self) {
        if self.running.load(Ordering::Acquire) == 0 {
            let now = self.now();
            let _ =
                self.head_since
                    .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// When the connection should next be looked at, given how long a
    /// request head and an idle spell may take.
    pub fn deadline(&self, timeouts: Timeouts) -> Instant {
        if self.running.load(Ordering::Acquire) > 0 {
            // A request runs; its own deadline bounds it. Look again later.
            return Instant::now() + timeouts.head;
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != NONE {
            return self.at(head) + timeouts.head;
        }
        self.at(self.idle_since.load(Ordering::Acquire)) + timeouts.idle
    }

    /// Whether the client took too long: to send a request head, or to
    /// use an idle keep-alive connection.
    pub fn expired(&self, timeouts: Timeouts) -> bool {
        self.running.load(Ordering::Acquire) == 0 && Instant::now() >= self.deadline(timeouts)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Marks a request as running until dropped.
pub struct RequestGuard(std::sync::Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let now = self.0.now();
        self.0.idle_since.store(now, Ordering::Release);
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that reports arriving bytes to its connection's [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: std::sync::Arc<Activity>,
}

impl<S> Watched<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, activity: std::sync::Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limits() -> Timeouts {
        Timeouts {
            head: Duration::from_secs(10),
            idle: Duration::from_secs(100),
        }
    }

    #[test]
    fn a_new_connection_owes_a_head_within_the_header_timeout() {
        let activity = Activity::new();
        let deadline = activity.deadline(limits());
        assert_eq!(deadline, activity.opened + Duration::from_secs(10));
        assert!(!activity.expired(limits()));
    }

    #[test]
    fn after_a_request_the_idle_timeout_applies_until_bytes_arrive() {
        let activity = Arc::new(Activity::new());
        drop(activity.begin_request());
        let idle = activity.deadline(limits());
        assert!(idle >= activity.opened + Duration::from_secs(100));
        activity.bytes_arrived();
        let head = activity.deadline(limits());
        assert!(head < activity.opened + Duration::from_secs(11));
    }

    #[test]
    fn a_running_request_never_expires() {
        let activity = Arc::new(Activity::new());
        let _running = activity.begin_request();
        let zero = Timeouts {
            head: Duration::ZERO,
            idle: Duration::ZERO,
        };
        assert!(!activity.expired(zero));
    }
}
