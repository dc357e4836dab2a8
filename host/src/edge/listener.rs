//! The accept loop every listener runs (gateway, `serve`, node). It is ours
//! rather than `axum::serve` so that each connection is bounded: a cap on
//! open connections, the TLS handshake and the request head under a
//! timeout, idle keep-alive connections closed, and a graceful drain.
//!
//! Each connection gets its own task; the accept loop never awaits a
//! handshake or a read, so one slow client cannot hold up the others.

use super::conn::{Activity, Timeouts, Watched};
use super::tls::TlsServer;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Default for [`ConnectionLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ConnectionLimits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`ConnectionLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default for [`ConnectionLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// How long and how many connections a listener tolerates.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's head (and to finish
    /// the TLS handshake). Default 10 s: a slow-header client is cut off
    /// instead of holding a socket for good.
    pub header_timeout: Duration,
    /// Longest a request body may stall between two chunks. Default 30 s.
    pub body_timeout: Duration,
    /// Longest a keep-alive connection may sit with no request. Default
    /// 120 s, longer than the usual client pool timeouts (60–90 s), so
    /// clients close first and never send into a closing socket.
    pub idle_timeout: Duration,
    /// Most connections open at once; past it, new ones are answered 503
    /// and closed. Default 20,000, lowered to fit the file descriptor limit.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The JSON-RPC error a connection over the cap is answered with.
const OVER_CAPACITY_BODY: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32010,"message":"Overloaded: too many open connections; retry in 1 s","data":{"kind":"overloaded","retry_after_secs":1}}}"#;

/// What a listener answers a connection over its cap with: a whole HTTP
/// response, its length counted, written before the connection closes.
fn over_capacity() -> &'static [u8] {
    static RESPONSE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    RESPONSE.get_or_init(|| {
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{OVER_CAPACITY_BODY}",
            OVER_CAPACITY_BODY.len()
        )
        .into_bytes()
    })
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<TlsServer>>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .layer(axum::middleware::from_fn(super::request_id::request_id));
    let live = Arc::new(Live::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept:
                    // pause briefly rather than spin, and keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if live.count.load(Ordering::Acquire) >= limits.max_connections {
            refuse(stream, peer, limits.max_connections, tls.is_some());
            continue;
        }
        let _ = stream.set_nodelay(true);
        live.count.fetch_add(1, Ordering::AcqRel);
        let guard = Arc::new(LiveGuard(live.clone()));
        let router = router.clone();
        let tls = tls.clone();
        let limits = limits.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, peer, router, &limits, stop, guard).await,
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, tls.acceptor().accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            connection(stream, peer, router, &limits, stop, guard).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    live.drained().await;
    Ok(())
}

/// Serves like [`serve`], but drains before it closes. When `shutdown`
/// completes, the listener stays open while `drain` runs (calls in flight
/// may still need it, e.g. for their sub-calls); then it stops accepting
/// and waits for its connections to close. All of it is bounded by
/// `timeout` from the signal: past it, the server returns with whatever
/// is still in flight.
pub async fn serve_draining<D>(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<TlsServer>>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: impl FnOnce() -> D + Send + 'static,
    timeout: Duration,
) -> std::io::Result<()>
where
    D: Future<Output = ()> + Send,
{
    let (deadline_tx, deadline_rx) = tokio::sync::oneshot::channel();
    let phases = async move {
        shutdown.await;
        let deadline = tokio::time::Instant::now() + timeout;
        let _ = deadline_tx.send(deadline);
        if tokio::time::timeout_at(deadline, drain()).await.is_err() {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "the drain timeout passed with calls still in flight; closing"
            );
        }
    };
    let server = serve(listener, router, tls, limits, phases);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        deadline = deadline_rx => match deadline {
            Ok(deadline) => match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("the drain timeout passed with connections still open; closing");
                    Ok(())
                }
            },
            Err(_) => server.await,
        },
    }
}

/// Answers a connection over the cap and closes it, without waiting on it.
/// A TLS listener closes it without an answer: a plain-text reply would
/// reach its client as a broken handshake, and a handshake per refused
/// connection is the work the cap is there to save.
fn refuse(stream: TcpStream, peer: SocketAddr, cap: usize, tls: bool) {
    if !tls {
        let _ = stream.try_write(over_capacity());
    }
    tracing::warn!(%peer, cap, "refused a connection: too many open connections");
}

/// Given to every request that asks for an upgrade, as an extension, so
/// that a route which takes its connection over keeps it counted as open,
/// and so held by a drain, and learns when the listener stops.
#[derive(Clone)]
pub struct Takeover {
    _live: Arc<LiveGuard>,
    stop: watch::Receiver<bool>,
    stall: Duration,
}

impl Takeover {
    /// The listener's body timeout: how long a message the connection
    /// carries from now on may stall halfway.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// Completes when the listener stops taking connections.
    pub async fn stopped(&mut self) {
        let _ = self.stop.wait_for(|stopped| *stopped).await;
    }
}

/// Serves HTTP/1.1 on one connection until the client closes it, a
/// timeout fires, or the listener drains.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    limits: &ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    live: Arc<LiveGuard>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let service_activity = activity.clone();
    let takeover = Takeover {
        _live: live,
        stop: stop.clone(),
        stall: limits.body_timeout,
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let call = service_activity.begin_request();
        request.extensions_mut().insert(ConnectInfo(peer));
        // Only a request that asks to take the connection over needs it;
        // every other request goes without the clone.
        if request.headers().contains_key(hyper::header::UPGRADE) {
            request.extensions_mut().insert(takeover.clone());
        }
        let response = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            let response = response.await;
            drop(call);
            response
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // The head timeout is ours (it also covers idle connections, with a
    // separate bound); hyper's would start on every keep-alive wait.
    http.timer(TokioTimer::new()).header_read_timeout(None);
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let timeouts = Timeouts {
            head: limits.header_timeout,
            idle: limits.idle_timeout,
        };
        let deadline = activity.deadline(timeouts);
        tokio::select! {
            outcome = conn.as_mut() => {
                if let Err(error) = outcome {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if activity.expired(timeouts) {
                    tracing::debug!(%peer, "closed a connection that timed out");
                    return;
                }
            }
            changed = stop.changed(), if !draining => {
                if changed.is_err() || *stop.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Open connections, and a way to wait until none are left.
#[derive(Default)]
struct Live {
    count: AtomicUsize,
    empty: Notify,
}

impl Live {
    async fn drained(&self) {
        loop {
            let notified = self.empty.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a connection as open until its task, and whatever took it over,
/// ends.
struct LiveGuard(Arc<Live>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.empty.notify_waiters();
        }
    }
}
