//! The load run: starts the concurrent clients, separates warmup from
//! measurement, stops by itself (after a duration or a number of calls) and
//! merges what the clients counted into the final [`Report`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::check::{Checked, check_reply};
use crate::client::HttpClient;
use crate::report::{Report, Stats};
use crate::settings::{Settings, Stop};
use crate::workload::Workload;

/// Pause after a transport failure, so that a dead server is not hammered
/// in a tight loop.
const FAILURE_BACKOFF: Duration = Duration::from_millis(10);

/// The schedule shared by all clients.
#[derive(Debug)]
struct Plan {
    batch: u32,
    measure_from: Instant,
    deadline: Option<Instant>,
    /// Calls left to send while measuring, when bounded by calls.
    calls_left: Option<AtomicU64>,
}

impl Plan {
    /// How many calls the next measured request carries, or `None` when
    /// the run is over.
    fn take_calls(&self, now: Instant) -> Option<u32> {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            return None;
        }
        let Some(left) = &self.calls_left else {
            return Some(self.batch);
        };
        let batch = u64::from(self.batch);
        let before = left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (left > 0).then(|| left - left.min(batch))
            })
            .ok()?;
        // `before.min(batch)` is at most `self.batch`, so it fits in u32.
        u32::try_from(before.min(batch)).ok()
    }
}

/// Runs the load described by `settings` and returns its figures.
pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    let workload = Arc::new(Workload::new(settings.method.clone(), settings.batch > 1));
    let measure_from = Instant::now() + settings.warmup;
    let plan = Arc::new(Plan {
        batch: settings.batch,
        measure_from,
        deadline: match settings.stop {
            Stop::AfterDuration(duration) => Some(measure_from + duration),
            Stop::AfterCalls(_) => None,
        },
        calls_left: match settings.stop {
            Stop::AfterCalls(calls) => Some(AtomicU64::new(calls)),
            Stop::AfterDuration(_) => None,
        },
    });

    let mut clients = JoinSet::new();
    for _ in 0..settings.concurrency {
        let client = HttpClient::new(&settings.url)?;
        clients.spawn(drive(client, Arc::clone(&workload), Arc::clone(&plan)));
    }
    let mut total = Stats::new();
    while let Some(stats) = clients.join_next().await {
        total.merge(stats.context("a client task failed")?);
    }
    let measured = Instant::now().saturating_duration_since(measure_from);
    Ok(Report::new(&settings, measured, &total))
}

/// One client: sends one request at a time until the plan says stop, and
/// counts what happened to the calls sent while measuring.
async fn drive(mut client: HttpClient, workload: Arc<Workload>, plan: Arc<Plan>) -> Stats {
    let mut stats = Stats::new();
    loop {
        let now = Instant::now();
        let measured = now >= plan.measure_from;
        let count = if measured {
            match plan.take_calls(now) {
                Some(count) => count,
                None => break,
            }
        } else {
            plan.batch
        };
        let request = workload.request(count);
        let started = Instant::now();
        let reply = client.post(request.body.clone()).await;
        let latency = started.elapsed();

        let failed = match reply {
            Ok(reply) => {
                let checked =
                    check_reply(reply.status, &reply.body, &request.calls, request.batched);
                if measured {
                    stats.http_requests += 1;
                    stats.record_latency(latency);
                }
                match checked {
                    Checked::Verdicts(verdicts) => {
                        if measured {
                            verdicts.into_iter().for_each(|v| stats.record_verdict(v));
                        }
                        false
                    }
                    Checked::Transport(reason) => {
                        if measured {
                            stats.record_transport(u64::from(count), reason);
                        }
                        true
                    }
                }
            }
            Err(error) => {
                if measured {
                    stats.http_requests += 1;
                    stats.record_transport(u64::from(count), error.to_string());
                }
                true
            }
        };
        if failed {
            tokio::time::sleep(FAILURE_BACKOFF).await;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Method;

    use std::convert::Infallible;
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use serde_json::{Value, json};
    use tokio::net::TcpListener;

    /// How the test server misbehaves.
    #[derive(Clone, Copy)]
    enum Server {
        Correct,
        OffByOne,
        /// Correct, but closes the connection after every reply.
        NoKeepAlive,
    }

    fn answer(call: &Value, server: Server) -> Value {
        let id = call["id"].clone();
        match call["method"].as_str() {
            Some("add") => {
                let sum = call["params"][0].as_u64().unwrap_or(0)
                    + call["params"][1].as_u64().unwrap_or(0);
                let sum = match server {
                    Server::Correct | Server::NoKeepAlive => sum,
                    Server::OffByOne => sum + 1,
                };
                json!({"jsonrpc": "2.0", "result": sum, "id": id})
            }
            Some("noop") => json!({"jsonrpc": "2.0", "result": null, "id": id}),
            _ => {
                json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": id})
            }
        }
    }

    async fn handle(
        request: Request<Incoming>,
        server: Server,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let body = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let reply = match serde_json::from_slice::<Value>(&body) {
            // Answer batches in reverse order: the checker must match by id.
            Ok(Value::Array(calls)) => {
                Value::Array(calls.iter().rev().map(|c| answer(c, server)).collect())
            }
            Ok(call) => answer(&call, server),
            Err(_) => {
                json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null})
            }
        };
        Ok(Response::new(Full::new(Bytes::from(reply.to_string()))))
    }

    /// A tiny JSON-RPC server on 127.0.0.1, serving until the test ends;
    /// also returns the number of connections it accepted so far.
    async fn serve(server: Server) -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(request, server));
                    let _ = http1::Builder::new()
                        .keep_alive(!matches!(server, Server::NoKeepAlive))
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn settings(addr: SocketAddr, method: &str, batch: u32, stop: Stop) -> Settings {
        Settings {
            url: format!("http://{addr}/").parse().expect("valid URL"),
            concurrency: 4,
            batch,
            method: Method::from_name(method),
            warmup: Duration::from_millis(50),
            stop,
        }
    }

    #[tokio::test]
    async fn exact_number_of_calls_all_correct_over_keep_alive() {
        let (addr, accepted) = serve(Server::Correct).await;
        let report = run(settings(addr, "add", 1, Stop::AfterCalls(500)))
            .await
            .expect("run");
        assert_eq!(report.calls_ok, 500);
        assert_eq!(report.http_requests, 500);
        assert!(report.is_clean(), "{}", report.table());
        assert!(report.latency_ms.p50.is_some());
        // One connection per client, reused for warmup and measurement.
        assert_eq!(accepted.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn reconnects_when_the_server_closes_connections() {
        let (addr, accepted) = serve(Server::NoKeepAlive).await;
        let report = run(settings(addr, "add", 1, Stop::AfterCalls(50)))
            .await
            .expect("run");
        assert_eq!(report.calls_ok, 50);
        assert!(report.is_clean(), "{}", report.table());
        assert!(accepted.load(Ordering::Relaxed) >= 50);
    }

    #[tokio::test]
    async fn batches_with_a_partial_last_request() {
        let (addr, _) = serve(Server::Correct).await;
        let report = run(settings(addr, "add", 8, Stop::AfterCalls(100)))
            .await
            .expect("run");
        assert_eq!(report.calls_ok, 100);
        assert_eq!(report.http_requests, 13);
        assert!(report.is_clean(), "{}", report.table());
    }

    #[tokio::test]
    async fn duration_bounded_noop_run() {
        let (addr, _) = serve(Server::Correct).await;
        let report = run(settings(
            addr,
            "noop",
            2,
            Stop::AfterDuration(Duration::from_millis(200)),
        ))
        .await
        .expect("run");
        assert!(report.calls_ok > 0);
        assert!(report.is_clean(), "{}", report.table());
        assert!(report.duration_s >= 0.2);
    }

    #[tokio::test]
    async fn wrong_results_errors_and_dead_servers_are_counted() {
        let (addr, _) = serve(Server::OffByOne).await;
        let report = run(settings(addr, "add", 1, Stop::AfterCalls(20)))
            .await
            .expect("run");
        assert_eq!((report.calls_ok, report.wrong), (0, 20));

        let report = run(settings(addr, "missing", 1, Stop::AfterCalls(20)))
            .await
            .expect("run");
        assert_eq!(report.errors_by_code.get(&-32601), Some(&20));
        assert_eq!(report.error_messages, ["-32601: Method not found"]);

        // Nothing listens on a port just released.
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dead_addr = dead.local_addr().expect("local addr");
        drop(dead);
        let report = run(settings(dead_addr, "add", 1, Stop::AfterCalls(8)))
            .await
            .expect("run");
        assert_eq!(report.transport, 8);
        assert!(!report.is_clean());
    }
}
