//! The overload mode (`--retry-after`): clients that behave as a polite
//! client of an overloaded service does. A client sends one call at a time;
//! when the call is refused (HTTP 503 or 429) it waits as long as the
//! reply's `Retry-After` says before it sends the next. The mode reports
//! goodput (the sum of one numeric field of the results of the calls that
//! succeeded while measuring, per second), how many calls were refused and
//! how fast the refusals came back, and how many calls ran out their
//! deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{StatusCode, Uri};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::HttpClient;

/// JSON-RPC code of a call that ran out its deadline.
const DEADLINE_EXCEEDED: i64 = -32003;

/// Wait after a refusal that names no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What an overload run needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Endpoint to POST to.
    pub url: Uri,
    /// Concurrent clients.
    pub concurrency: u32,
    /// Method called.
    pub method: String,
    /// Params sent with every call (a JSON array or object), if any.
    pub params: Option<Value>,
    /// The numeric result field summed into goodput; without it each
    /// successful call counts 1.
    pub goodput_field: Option<String>,
    /// Unmeasured time before measurement.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
}

/// The figures of an overload run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Concurrent clients.
    pub concurrency: u32,
    /// Measured seconds.
    pub duration_s: f64,
    /// Calls that succeeded.
    pub calls_ok: u64,
    /// Goodput: the summed field of successful results per second.
    pub goodput_per_s: f64,
    /// Calls refused with 503 or 429.
    pub refused: u64,
    /// Refusals per second.
    pub refused_per_s: f64,
    /// Latency of refusals, median and 99th percentile, in milliseconds.
    pub refusal_p50_ms: Option<f64>,
    /// See `refusal_p50_ms`.
    pub refusal_p99_ms: Option<f64>,
    /// Latency of successful calls, median and 99th percentile, in ms.
    pub ok_p50_ms: Option<f64>,
    /// See `ok_p50_ms`.
    pub ok_p99_ms: Option<f64>,
    /// Calls that ended in `deadline_exceeded`.
    pub deadline_exceeded: u64,
    /// Other JSON-RPC errors, by code.
    pub other_errors: BTreeMap<i64, u64>,
    /// Results without the goodput field, or undecodable replies.
    pub wrong: u64,
    /// Requests lost below HTTP.
    pub transport: u64,
}

#[derive(Debug)]
struct Counts {
    ok: u64,
    units: f64,
    refused: u64,
    deadline_exceeded: u64,
    other_errors: BTreeMap<i64, u64>,
    wrong: u64,
    transport: u64,
    refusal_us: Histogram<u64>,
    ok_us: Histogram<u64>,
}

impl Counts {
    fn new() -> Self {
        let histogram =
            || Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
        Self {
            ok: 0,
            units: 0.0,
            refused: 0,
            deadline_exceeded: 0,
            other_errors: BTreeMap::new(),
            wrong: 0,
            transport: 0,
            refusal_us: histogram(),
            ok_us: histogram(),
        }
    }

    fn merge(&mut self, other: Counts) {
        self.ok += other.ok;
        self.units += other.units;
        self.refused += other.refused;
        self.deadline_exceeded += other.deadline_exceeded;
        for (code, count) in other.other_errors {
            *self.other_errors.entry(code).or_default() += count;
        }
        self.wrong += other.wrong;
        self.transport += other.transport;
        let _ = self.refusal_us.add(&other.refusal_us);
        let _ = self.ok_us.add(&other.ok_us);
    }
}

/// Runs the clients and returns the figures.
pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    let mut call = serde_json::json!({"jsonrpc": "2.0", "method": settings.method, "id": 1});
    if let Some(params) = &settings.params {
        call["params"] = params.clone();
    }
    let body = Bytes::from(call.to_string());
    let measure_from = Instant::now() + settings.warmup;
    let until = measure_from + settings.duration;
    let field = Arc::new(settings.goodput_field.clone());
    let mut clients = JoinSet::new();
    for _ in 0..settings.concurrency {
        let client = HttpClient::new(&settings.url)?;
        clients.spawn(drive(
            client,
            body.clone(),
            field.clone(),
            measure_from,
            until,
        ));
    }
    let mut total = Counts::new();
    while let Some(counts) = clients.join_next().await {
        total.merge(counts.context("a client task failed")?);
    }
    let secs = settings.duration.as_secs_f64();
    let ms = |h: &Histogram<u64>, q: f64| {
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
    };
    Ok(Report {
        concurrency: settings.concurrency,
        duration_s: secs,
        calls_ok: total.ok,
        goodput_per_s: total.units / secs,
        refused: total.refused,
        refused_per_s: total.refused as f64 / secs,
        refusal_p50_ms: ms(&total.refusal_us, 0.5),
        refusal_p99_ms: ms(&total.refusal_us, 0.99),
        ok_p50_ms: ms(&total.ok_us, 0.5),
        ok_p99_ms: ms(&total.ok_us, 0.99),
        deadline_exceeded: total.deadline_exceeded,
        other_errors: total.other_errors,
        wrong: total.wrong,
        transport: total.transport,
    })
}

/// One client: a call at a time; after a refusal, the wait it was told.
/// A call counts when its reply arrives while measuring, whenever it was
/// sent: goodput is the work finished in the window. A call still in
/// flight when the run ends is dropped.
async fn drive(
    mut client: HttpClient,
    body: Bytes,
    field: Arc<Option<String>>,
    measure_from: Instant,
    until: Instant,
) -> Counts {
    let mut counts = Counts::new();
    while Instant::now() < until {
        let started = Instant::now();
        let Ok(reply) = tokio::time::timeout_at(until, client.post(body.clone())).await else {
            break;
        };
        let measured = Instant::now() >= measure_from;
        let micros = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let pause = match reply {
            Err(_) => {
                if measured {
                    counts.transport += 1;
                }
                Some(Duration::from_millis(10))
            }
            Ok(reply)
                if reply.status == StatusCode::SERVICE_UNAVAILABLE
                    || reply.status == StatusCode::TOO_MANY_REQUESTS =>
            {
                if measured {
                    counts.refused += 1;
                    counts.refusal_us.saturating_record(micros);
                }
                Some(
                    reply
                        .retry_after
                        .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs),
                )
            }
            Ok(reply) => {
                if measured {
                    judge(&reply.body, field.as_deref(), micros, &mut counts);
                }
                None
            }
        };
        if let Some(pause) = pause {
            // Stop waiting when the run ends.
            tokio::time::sleep_until((Instant::now() + pause).min(until)).await;
        }
    }
    counts
}

/// Counts one reply that was not a refusal.
fn judge(body: &[u8], field: Option<&str>, micros: u64, counts: &mut Counts) {
    let Ok(reply) = serde_json::from_slice::<Value>(body) else {
        counts.wrong += 1;
        return;
    };
    if let Some(error) = reply.get("error") {
        match error["code"].as_i64() {
            Some(DEADLINE_EXCEEDED) => counts.deadline_exceeded += 1,
            Some(code) => *counts.other_errors.entry(code).or_default() += 1,
            None => counts.wrong += 1,
        }
        return;
    }
    let Some(result) = reply.get("result") else {
        counts.wrong += 1;
        return;
    };
    let units = match field {
        None => Some(1.0),
        Some(field) => result[field].as_f64(),
    };
    match units {
        Some(units) => {
            counts.ok += 1;
            counts.units += units;
            counts.ok_us.saturating_record(micros);
        }
        None => counts.wrong += 1,
    }
}

impl Report {
    /// Prints the figures as a table, or as one JSON object.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
            return Ok(());
        }
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} ms"));
        println!("clients              {}", self.concurrency);
        println!("measured             {:.1} s", self.duration_s);
        println!("calls ok             {}", self.calls_ok);
        println!("goodput/s            {:.1}", self.goodput_per_s);
        println!(
            "ok latency p50/p99   {} / {}",
            ms(self.ok_p50_ms),
            ms(self.ok_p99_ms)
        );
        println!(
            "refused              {} ({:.1}/s)",
            self.refused, self.refused_per_s
        );
        println!(
            "refusal p50/p99      {} / {}",
            ms(self.refusal_p50_ms),
            ms(self.refusal_p99_ms)
        );
        println!("deadline_exceeded    {}", self.deadline_exceeded);
        println!("other errors         {:?}", self.other_errors);
        println!("wrong                {}", self.wrong);
        println!("transport failures   {}", self.transport);
        Ok(())
    }

    /// Whether every call succeeded, was refused, or ran out its deadline
    /// (a figure of the run, not a fault of the tool or the server).
    pub fn is_clean(&self) -> bool {
        self.other_errors.is_empty() && self.wrong == 0 && self.transport == 0
    }
}
