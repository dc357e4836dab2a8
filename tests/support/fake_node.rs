//! A node that fails on purpose: a plain TCP server on 127.0.0.1 that
//! passes the gateway's health checks (its replies carry the node
//! protocol's mark) and answers calls as told (closing
//! the connection before replying, or a broken reply), so the tests can
//! show what the gateway does when a node fails mid-call. It offers no call
//! channel (it answers its upgrade with 404), so the gateway sends it calls
//! on the HTTP call route, as it does to nodes without the channel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake node answers one call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Reads the request and closes the connection without a reply, as a
    /// node that crashed mid-call does.
    Close,
    /// Answers with this HTTP status and body.
    Http(u16, &'static str),
}

struct Plan {
    next: VecDeque<Reply>,
    then: Reply,
}

/// The fake node; it stops when dropped.
pub struct FakeNode {
    pub url: String,
    calls: Arc<AtomicUsize>,
    checks: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    plan: Arc<Mutex<Plan>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeNode {
    /// Serves `methods`, answering calls with `next` in order, then always
    /// with `then`.
    pub async fn start(methods: &[&str], next: Vec<Reply>, then: Reply) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let health = serde_json::json!({"status": "ok", "methods": methods}).to_string();
        let calls = Arc::new(AtomicUsize::new(0));
        let checks = Arc::new(Mutex::new(Vec::new()));
        let plan = Arc::new(Mutex::new(Plan {
            next: next.into(),
            then,
        }));
        let task = {
            let (calls, plan, checks) = (calls.clone(), plan.clone(), checks.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let seen = Seen {
                        calls: calls.clone(),
                        checks: checks.clone(),
                    };
                    tokio::spawn(serve(stream, seen, plan.clone(), health.clone()));
                }
            })
        };
        FakeNode {
            url,
            calls,
            checks,
            plan,
            task,
        }
    }

    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// When each health check arrived.
    pub fn health_checks(&self) -> Vec<std::time::Instant> {
        self.checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Answers the next calls with `next`, then with `then`.
    pub fn plan(&self, next: Vec<Reply>, then: Reply) {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        plan.next = next.into();
        plan.then = then;
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the fake node counts.
struct Seen {
    calls: Arc<AtomicUsize>,
    checks: Arc<Mutex<Vec<std::time::Instant>>>,
}

/// One request per connection, then the connection closes.
async fn serve(mut stream: TcpStream, seen: Seen, plan: Arc<Mutex<Plan>>, health: String) {
    let Some(head) = read_request(&mut stream).await else {
        return;
    };
    let reply = if head.starts_with("GET /v1/channel") {
        Reply::Http(404, "")
    } else if head.starts_with("GET /health") {
        seen.checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::time::Instant::now());
        Reply::Http(200, "")
    } else {
        seen.calls.fetch_add(1, Ordering::SeqCst);
        let mut plan = plan.lock().unwrap_or_else(|p| p.into_inner());
        let then = plan.then.clone();
        plan.next.pop_front().unwrap_or(then)
    };
    let (status, body) = match reply {
        Reply::Close => return,
        Reply::Http(200, "") => (200, health.as_str()),
        Reply::Http(status, body) => (status, body),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-madrpc-node-reply: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads the request line, headers and body; returns the head.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        return Some(head);
    }
}
