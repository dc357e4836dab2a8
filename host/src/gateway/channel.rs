//! The gateway's side of the call channel ([`crate::wire`]): one
//! long-lived connection per node, opened on the first call with an HTTP
//! `Upgrade` that carries the cluster credential. Calls bound for the node
//! are written as frames, every call waiting at that moment (or about to
//! be sent by a task ready to run) in one write, and replies are matched
//! to their calls by id, in whatever order they finish. There is no cap
//! on the calls in flight: a parent waiting on its children must never
//! wait for room on the channel; admission on the node decides what runs.

use super::node_client::NodeClient;
use crate::cluster::NODE_REPLY_HEADER;
use crate::wire::{self, FrameReader, Tag};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// How a call on the channel ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The node's reply: its tag and body.
    Reply(Tag, Bytes),
    /// The node's reply was longer than the limit (its length).
    Oversized(usize),
}

/// Why a call got no reply on the channel.
#[derive(Debug)]
pub(super) enum ChannelError {
    /// The node does not offer the channel (it answered the upgrade with
    /// 404 or 405): it takes calls on its HTTP call route.
    Unsupported,
    /// The node answered the upgrade with something else; the caller
    /// sorts it as it would an HTTP reply.
    Refused(hyper::http::response::Parts),
    /// No connection, or it broke before the reply.
    Broken(String),
}

/// The channel to one node: connected on demand, replaced when it breaks
/// or when the gateway's credential changes.
#[derive(Default)]
pub struct Link {
    open: Mutex<Option<Arc<Open>>>,
    connecting: tokio::sync::Mutex<()>,
    unsupported: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("unsupported", &self.unsupported.load(Ordering::Relaxed))
            .finish()
    }
}

/// An open channel.
struct Open {
    frames: mpsc::UnboundedSender<Vec<Bytes>>,
    calls: Arc<Calls>,
    /// The credential it was opened with.
    authorization: Option<HeaderValue>,
    /// Its reader and writer.
    task: tokio::task::AbortHandle,
}

impl Drop for Open {
    /// No call uses the channel any more: it closes now, even when its
    /// connection is stuck behind a cut link.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Calls waiting for their replies on one channel.
#[derive(Default)]
struct Calls {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Outcome, String>>>>,
    next_id: AtomicU64,
    broken: AtomicBool,
}

impl Calls {
    /// Fails every waiting call, and any later one, with `why`.
    fn break_all(&self, why: &str) {
        self.broken.store(true, Ordering::Release);
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, waiter) in waiting {
            let _ = waiter.send(Err(why.to_owned()));
        }
    }
}

/// Takes a call's place out of the waiting list if the call is given up
/// (its timeout, or its node found failed) before the reply came, and tells
/// the node to stop it.
struct Waiting<'a> {
    open: &'a Open,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let given_up = self
            .open
            .calls
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id)
            .is_some();
        if given_up {
            let cancel = wire::frame_head(Tag::Cancel, self.id, 0);
            let _ = self.open.frames.send(vec![Bytes::copy_from_slice(&cancel)]);
        }
    }
}

impl Link {
    /// Whether the node takes calls on its HTTP call route instead.
    pub(super) fn unsupported(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    /// Drops the open channel, so the next call opens a fresh one: after a
    /// node was found failed, the old connection may be stuck behind a cut
    /// link long after the node is back. Calls still on it are failed over
    /// by their callers.
    pub(super) fn reset(&self) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Sends one call and waits for its reply. The caller bounds the wait.
    pub(super) async fn call(
        &self,
        client: &NodeClient,
        url: &str,
        method: &str,
        meta: &[(&'static str, String)],
        params: Bytes,
    ) -> Result<Outcome, ChannelError> {
        let open = self.open(client, url).await?;
        let calls = &open.calls;
        let id = calls.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = calls.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if calls.broken.load(Ordering::Acquire) {
                return Err(ChannelError::Broken(
                    "the channel to the node closed".into(),
                ));
            }
            waiting.insert(id, tx);
        }
        let _waiting = Waiting { open: &open, id };
        let head = wire::call_head(id, method, meta, params.len());
        if open.frames.send(vec![head, params]).is_err() {
            return Err(ChannelError::Broken(
                "the channel to the node closed".into(),
            ));
        }
        match rx.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(why)) => Err(ChannelError::Broken(why)),
            Err(_) => Err(ChannelError::Broken(
                "the channel to the node closed".into(),
            )),
        }
    }

    /// The open channel, opening one when there is none, the last one
    /// broke, or the cluster credential changed since it was opened (a
    /// node that does not take the new one must refuse the next call).
    async fn open(&self, client: &NodeClient, url: &str) -> Result<Arc<Open>, ChannelError> {
        let authorization = client.token.authorization();
        if let Some(open) = self.current(&authorization) {
            return Ok(open);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(open) = self.current(&authorization) {
            return Ok(open);
        }
        let open = match connect(client, url, authorization).await {
            Ok(open) => Arc::new(open),
            Err(ChannelError::Unsupported) => {
                tracing::info!(node = %url, "the node has no call channel; calls go over its HTTP call route");
                self.unsupported.store(true, Ordering::Relaxed);
                return Err(ChannelError::Unsupported);
            }
            Err(error) => return Err(error),
        };
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = Some(open.clone());
        Ok(open)
    }

    fn current(&self, authorization: &Option<HeaderValue>) -> Option<Arc<Open>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.as_ref()
            .filter(|open| {
                !open.calls.broken.load(Ordering::Acquire) && open.authorization == *authorization
            })
            .cloned()
    }
}

/// Asks the node for the channel and starts its reader and writer.
async fn connect(
    client: &NodeClient,
    url: &str,
    authorization: Option<HeaderValue>,
) -> Result<Open, ChannelError> {
    let mut request = Request::get(format!("{url}{}", wire::PATH))
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, wire::PROTOCOL);
    if let Some(authorization) = &authorization {
        request = request.header(header::AUTHORIZATION, authorization.clone());
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| ChannelError::Broken(format!("cannot ask {url} for a call channel: {e}")))?;
    let response = client
        .http
        .request(request)
        .await
        .map_err(|e| ChannelError::Broken(crate::http::describe(&e)))?;
    let marked = response
        .headers()
        .get(NODE_REPLY_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let agreed = response
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(wire::PROTOCOL.as_bytes()));
    match response.status() {
        StatusCode::SWITCHING_PROTOCOLS if marked && agreed => {}
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED if marked => {
            return Err(ChannelError::Unsupported);
        }
        _ => return Err(ChannelError::Refused(response.into_parts().0)),
    }
    let io = hyper::upgrade::on(response)
        .await
        .map_err(|e| ChannelError::Broken(format!("the call channel's upgrade failed: {e}")))?;
    let (read, write) = tokio::io::split(TokioIo::new(io));
    let (frames, queue) = mpsc::unbounded_channel();
    let calls = Arc::new(Calls::default());
    let limit = client.max_reply_bytes;
    let node = url.to_owned();
    let reader_calls = calls.clone();
    let task = tokio::spawn(async move {
        let why = tokio::select! {
            why = read_replies(FrameReader::new(read), &reader_calls, limit) => why,
            written = wire::write_frames(write, queue, true) => match written {
                Ok(()) => "the channel was closed".to_owned(),
                Err(error) => format!("writing to the channel failed: {error}"),
            },
        };
        tracing::debug!(node = %node, reason = %why, "a call channel closed");
        reader_calls.break_all(&format!("the channel to the node broke: {why}"));
    });
    Ok(Open {
        frames,
        calls,
        authorization,
        task: task.abort_handle(),
    })
}

/// Hands each reply to its call until the channel closes; returns why it
/// closed.
async fn read_replies<R>(mut reader: FrameReader<R>, calls: &Calls, limit: usize) -> String
where
    R: tokio::io::AsyncRead + Unpin,
{
    loop {
        let frame = match reader.next(limit).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return "the node closed it".to_owned(),
            Err(error) => return error.to_string(),
        };
        if matches!(frame.tag, Tag::Call | Tag::Cancel) {
            return "the node sent a call frame".to_owned();
        }
        let waiter = calls
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&frame.id);
        // No waiter: the call was given up (timed out) before its reply.
        if let Some(waiter) = waiter {
            let outcome = match frame.oversized {
                Some(len) => Outcome::Oversized(len),
                None => Outcome::Reply(frame.tag, frame.body),
            };
            let _ = waiter.send(Ok(outcome));
        }
    }
}
