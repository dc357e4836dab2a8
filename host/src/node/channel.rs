//! The node's side of the call channel ([`crate::wire`]): a gateway asks
//! for it with `GET /v1/channel` and an `Upgrade`, and from then on sends
//! calls as frames on that connection. A short call runs on the task that
//! reads the channel; one that waits or is slow goes on as a task of its
//! own, as a call on the HTTP route does. Replies that are ready leave
//! together in one write. Nothing bounds the calls a channel carries:
//! admission decides, as for every call, so a parent waiting on its
//! children never waits on the channel.

use super::observed::Observed;
use super::pool::WorkerPool;
use crate::cluster::ClusterToken;
use crate::edge::Takeover;
use crate::rpc::{CallBudget, RpcError, codes};
use crate::wire::{self, Frame, FrameReader, Tag};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::Instrument;

/// What a channel needs of the node.
pub(super) struct Channels {
    pub(super) pool: Arc<WorkerPool>,
    pub(super) observed: Observed,
    /// Calls on a channel opened with the token may carry a job's grant.
    pub(super) token: Arc<ClusterToken>,
    /// The largest params a call may carry.
    pub(super) max_params: usize,
}

/// `GET /v1/channel`: switches the connection to the call channel. The
/// token check in front of the call routes has already run.
pub(super) async fn upgrade(
    axum::extract::State(channels): axum::extract::State<Arc<Channels>>,
    mut request: Request,
) -> Response {
    let asked = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(wire::PROTOCOL.as_bytes()));
    let on_upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>();
    let takeover = request.extensions_mut().remove::<Takeover>();
    let (true, Some(on_upgrade), Some(takeover)) = (asked, on_upgrade, takeover) else {
        let message = format!(
            "this route switches the connection to the {} call channel: send `Connection: upgrade` and `Upgrade: {}`",
            wire::PROTOCOL,
            wire::PROTOCOL
        );
        return (StatusCode::UPGRADE_REQUIRED, message).into_response();
    };
    let trusted = channels.token.presented_in(request.headers());
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => serve(TokioIo::new(io), channels, trusted, takeover).await,
            Err(error) => tracing::debug!(%error, "the call channel's upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(wire::PROTOCOL));
    response
}

/// Calls running from one channel, each with a way to stop it, and a
/// wake-up when none are left.
#[derive(Default)]
struct Running {
    count: AtomicUsize,
    idle: Notify,
    stops: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

impl Running {
    fn stops(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<()>>> {
        self.stops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves one channel until the gateway closes it, it breaks, or the
/// listener stops; then lets the calls it carries finish and sends their
/// replies before it closes.
async fn serve<S>(io: S, channels: Arc<Channels>, trusted: bool, mut takeover: Takeover)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (replies, queue) = mpsc::unbounded_channel();
    let writer = tokio::spawn(wire::write_frames(write, queue, false));
    let running = Arc::new(Running::default());
    {
        // Half a frame may stall no longer than a request body.
        let reader = FrameReader::new(read).with_stall(takeover.stall());
        let reading = read_calls(reader, &channels, trusted, replies, &running);
        tokio::pin!(reading);
        tokio::select! {
            () = &mut reading => {}
            () = takeover.stopped() => {
                // The gateway has stopped routing here before the listener
                // stops; what arrives now still runs, until the channel is
                // idle.
                let idle = async {
                    loop {
                        let notified = running.idle.notified();
                        if running.count.load(Ordering::Acquire) == 0 {
                            return;
                        }
                        notified.await;
                    }
                };
                tokio::select! {
                    () = &mut reading => {}
                    () = idle => {}
                }
            }
        }
    }
    // The gateway went away: the calls it left behind stop, as calls whose
    // HTTP clients went away do. Each holds a sender; the writer finishes
    // once they are gone.
    running.stops().clear();
    if let Ok(Err(error)) = writer.await {
        tracing::debug!(%error, "a call channel closed while writing replies");
    }
}

/// Reads calls and starts each, until the channel closes or breaks.
async fn read_calls<R>(
    mut reader: FrameReader<R>,
    channels: &Arc<Channels>,
    trusted: bool,
    replies: mpsc::UnboundedSender<Vec<Bytes>>,
    running: &Arc<Running>,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    let limit = channels.max_params.saturating_add(wire::CALL_OVERHEAD);
    let mut slow = SlowMethods::default();
    // Replies of calls that finished on this task, sent in one write once
    // no more calls wait to be read. Nothing is awaited while any are held,
    // so none is lost when the channel closes.
    let mut ready = Vec::new();
    loop {
        if !ready.is_empty() && !reader.has_frame() {
            let _ = replies.send(std::mem::take(&mut ready));
        }
        let frame = match reader.next(limit).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "closed a call channel");
                return;
            }
        };
        match frame.tag {
            Tag::Call => {}
            Tag::Cancel => {
                // Dropping the sender stops the call; one already finished
                // is gone from the list.
                running.stops().remove(&frame.id);
                continue;
            }
            _ => {
                tracing::warn!("closed a call channel that sent a reply frame to the node");
                return;
            }
        }
        let id = frame.id;
        let outcome = match prepare(frame, channels, trusted) {
            Ok(Some(call)) => start(call, id, channels, &replies, running, &mut slow).await,
            Ok(None) => return,
            Err(error) => Some(Err(error)),
        };
        if let Some(outcome) = outcome {
            ready.extend(reply_frame(id, outcome));
        }
    }
}

/// Starts a call. A call that finishes on its first poll (a short call, run
/// on this thread) is answered here, without a task of its own or a
/// wake-up; one that waits (for a worker, or its sub-calls), or whose
/// method is slow, goes on as a task, and the channel reads on.
async fn start(
    call: Prepared,
    id: u64,
    channels: &Arc<Channels>,
    replies: &mpsc::UnboundedSender<Vec<Bytes>>,
    running: &Arc<Running>,
    slow: &mut SlowMethods,
) -> Option<Result<Bytes, RpcError>> {
    running.count.fetch_add(1, Ordering::AcqRel);
    let (stop, stopped) = oneshot::channel();
    running.stops().insert(id, stop);
    let span = call.span;
    let method = call.method.clone();
    let work = {
        let channels = channels.clone();
        let running = running.clone();
        async move {
            let run = channels
                .observed
                .run(&channels.pool, call.method, call.params, call.budget);
            let outcome = tokio::select! {
                outcome = run => {
                    running.stops().remove(&id);
                    Some(outcome)
                }
                // Cancelled, or the channel broke: the gateway has given
                // the call up, so it stops here, as a call whose HTTP
                // client went away does.
                _ = stopped => None,
            };
            if running.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                running.idle.notify_waiters();
            }
            outcome
        }
    };
    let mut work = Box::pin(work.instrument(span));
    if !slow.is_slow(&method) {
        let started = Instant::now();
        let polled = futures::poll!(work.as_mut());
        slow.took(&method, started.elapsed());
        if let std::task::Poll::Ready(outcome) = polled {
            return outcome;
        }
    }
    let replies = replies.clone();
    tokio::spawn(async move {
        if let Some(outcome) = work.await {
            let _ = replies.send(reply_frame(id, outcome).to_vec());
        }
    });
    None
}

/// Longest a call may hold the channel's reader when run on it. A method
/// whose calls took longer [`STRIKES`] times in a row runs as tasks of its
/// own for its next [`SLOW_CALLS`] calls. Trivial calls (about 10 µs) run
/// on the reader, where a task each would cost more than the call;
/// anything heavier runs as tasks on every core, and calls behind it are
/// not held up. A call that was merely descheduled once does not count.
const SLOW_POLL: Duration = Duration::from_micros(50);

/// See [`SLOW_POLL`].
const STRIKES: u8 = 3;

/// See [`SLOW_POLL`].
const SLOW_CALLS: u32 = 256;

/// The methods of one channel whose calls lately held its reader too long:
/// slow polls in a row, and calls left to run as tasks.
#[derive(Default)]
struct SlowMethods(HashMap<String, (u8, u32)>);

impl SlowMethods {
    fn is_slow(&mut self, method: &str) -> bool {
        match self.0.get_mut(method) {
            Some((_, left)) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    fn took(&mut self, method: &str, took: Duration) {
        if took <= SLOW_POLL {
            if let Some((strikes, _)) = self.0.get_mut(method) {
                *strikes = 0;
            }
            return;
        }
        if self.0.len() >= 4096 && !self.0.contains_key(method) {
            return;
        }
        let (strikes, left) = self.0.entry(method.to_owned()).or_default();
        *strikes += 1;
        if *strikes >= STRIKES {
            *strikes = 0;
            *left = SLOW_CALLS;
        }
    }
}

/// A call read from the channel, ready to run.
struct Prepared {
    method: String,
    params: Bytes,
    budget: CallBudget,
    span: tracing::Span,
}

/// A call frame's call; an error for a call that cannot run; `None` when
/// the frame is not the protocol's.
fn prepare(frame: Frame, channels: &Channels, trusted: bool) -> Result<Option<Prepared>, RpcError> {
    if let Some(len) = frame.oversized {
        return Err(RpcError::new(
            codes::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the params ({len} bytes with the call's name and budget) are larger than the node's limit of {} bytes",
                channels.max_params
            ),
        ));
    }
    let call = match wire::parse_call(frame.body) {
        Ok(call) => call,
        Err(error) => {
            tracing::warn!(%error, "closed a call channel");
            return Ok(None);
        }
    };
    let mut headers = HeaderMap::with_capacity(call.meta.len());
    for (name, value) in &call.meta {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(RpcError::invalid_request(format!(
                "the call's budget entry {name:?} is not a valid header"
            )));
        };
        headers.insert(name, value);
    }
    // As for a request on the HTTP call route: this hop's ids, and its
    // span around everything the call logs.
    let (span, _) = crate::edge::hop(&mut headers);
    // A channel opened with the token comes from the gateway, so the key
    // name and grant it forwards are believed.
    let budget = CallBudget::from_headers(&headers)?.with_key_from(&headers);
    let budget = if trusted {
        budget.with_grant_from(&headers)
    } else {
        budget
    };
    Ok(Some(Prepared {
        method: call.method,
        params: call.params,
        budget,
        span,
    }))
}

/// A call's reply frame: its head and its body.
fn reply_frame(id: u64, outcome: Result<Bytes, RpcError>) -> [Bytes; 2] {
    let (tag, body) = match outcome {
        Ok(result) => (Tag::Ok, result),
        Err(error) => {
            let tag = if error.is_unavailable() {
                Tag::Unavailable
            } else {
                Tag::Error
            };
            (
                tag,
                Bytes::from(serde_json::to_vec(&error).unwrap_or_default()),
            )
        }
    };
    let head = Bytes::copy_from_slice(&wire::frame_head(tag, id, body.len()));
    [head, body]
}
