//! Statistics and the final report: what each client counted, merged into
//! the figures printed at the end, as an aligned table or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::Verdict;
use crate::settings::{Settings, Stop};

/// Largest latency the histogram resolves, in microseconds (above the
/// 30 s request timeout; larger values are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;
/// How many distinct diagnostic messages are kept per kind of failure.
const SAMPLES: usize = 3;

/// Counters of one client, or of all clients once merged.
///
/// Every call sent during measurement ends up in exactly one of `ok`,
/// `unchecked`, `errors`, `wrong` or `transport` (batch reply entries that
/// match no call sent are counted as `wrong` too).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Calls answered with exactly the expected result.
    pub ok: u64,
    /// Calls answered with a result that could not be verified.
    pub unchecked: u64,
    /// Calls answered with a JSON-RPC error, by error code.
    pub errors: BTreeMap<i64, u64>,
    /// First distinct `code: message` texts of JSON-RPC errors.
    pub error_messages: Vec<String>,
    /// Calls answered wrongly (bad id, wrong result, malformed, missing).
    pub wrong: u64,
    /// First distinct reasons for wrong replies.
    pub wrong_samples: Vec<String>,
    /// Calls lost below JSON-RPC (connection, timeout, bare HTTP status).
    pub transport: u64,
    /// First distinct transport failures.
    pub transport_samples: Vec<String>,
    /// HTTP requests completed or failed.
    pub http_requests: u64,
    /// Latency of HTTP requests that got a response, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Self {
        Self {
            ok: 0,
            unchecked: 0,
            errors: BTreeMap::new(),
            error_messages: Vec::new(),
            wrong: 0,
            wrong_samples: Vec::new(),
            transport: 0,
            transport_samples: Vec::new(),
            http_requests: 0,
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Records the latency of one HTTP request that got a response.
    pub fn record_latency(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(micros.clamp(1, MAX_LATENCY_US));
    }

    /// Counts the verdict on one call.
    pub fn record_verdict(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Ok => self.ok += 1,
            Verdict::Unchecked => self.unchecked += 1,
            Verdict::Error { code, message } => {
                *self.errors.entry(code).or_default() += 1;
                keep_sample(&mut self.error_messages, format!("{code}: {message}"));
            }
            Verdict::Wrong(reason) => {
                self.wrong += 1;
                keep_sample(&mut self.wrong_samples, reason);
            }
        }
    }

    /// Counts `calls` calls lost to one transport failure.
    pub fn record_transport(&mut self, calls: u64, reason: String) {
        self.transport += calls;
        keep_sample(&mut self.transport_samples, reason);
    }

    /// Adds another client's counters to these.
    pub fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.unchecked += other.unchecked;
        for (code, count) in other.errors {
            *self.errors.entry(code).or_default() += count;
        }
        self.wrong += other.wrong;
        self.transport += other.transport;
        self.http_requests += other.http_requests;
        for sample in other.error_messages {
            keep_sample(&mut self.error_messages, sample);
        }
        for sample in other.wrong_samples {
            keep_sample(&mut self.wrong_samples, sample);
        }
        for sample in other.transport_samples {
            keep_sample(&mut self.transport_samples, sample);
        }
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }
}

fn keep_sample(samples: &mut Vec<String>, sample: String) {
    if samples.len() < SAMPLES && !samples.contains(&sample) {
        samples.push(sample);
    }
}

/// Latency percentiles per HTTP request, in milliseconds (`None` when no
/// request got a response).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Slowest request.
    pub max: Option<f64>,
}

/// The final figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Target URL.
    pub url: String,
    /// Method called.
    pub method: String,
    /// Concurrent clients.
    pub concurrency: u32,
    /// Calls per HTTP request.
    pub batch: u32,
    /// `--requests`, when the run was bounded by a number of calls.
    pub requests_limit: Option<u64>,
    /// Measured time in seconds (warmup excluded).
    pub duration_s: f64,
    /// Calls answered correctly.
    pub calls_ok: u64,
    /// Calls answered with an unverifiable result (custom methods).
    pub calls_unchecked: u64,
    /// Calls answered with a JSON-RPC error.
    pub errors: u64,
    /// JSON-RPC errors by code.
    pub errors_by_code: BTreeMap<i64, u64>,
    /// First distinct JSON-RPC error messages.
    pub error_messages: Vec<String>,
    /// Calls answered wrongly.
    pub wrong: u64,
    /// First distinct reasons for wrong replies.
    pub wrong_samples: Vec<String>,
    /// Calls lost to transport failures.
    pub transport: u64,
    /// First distinct transport failures.
    pub transport_samples: Vec<String>,
    /// HTTP requests made while measuring.
    pub http_requests: u64,
    /// Successful calls (ok, plus unchecked) per second of measured time.
    pub calls_per_s: f64,
    /// HTTP requests per second of measured time.
    pub http_requests_per_s: f64,
    /// Latency per HTTP request.
    pub latency_ms: Latency,
}

impl Report {
    /// Builds the figures of a run from the merged counters.
    pub fn new(settings: &Settings, measured: Duration, stats: &Stats) -> Self {
        let secs = measured.as_secs_f64();
        let per_second = |count: u64| {
            if secs > 0.0 {
                round3(count as f64 / secs)
            } else {
                0.0
            }
        };
        let hist = &stats.latency_us;
        let percentile =
            |q: f64| (!hist.is_empty()).then(|| micros_to_ms(hist.value_at_quantile(q)));
        Self {
            url: settings.url.to_string(),
            method: settings.method.name().to_owned(),
            concurrency: settings.concurrency,
            batch: settings.batch,
            requests_limit: match settings.stop {
                Stop::AfterCalls(calls) => Some(calls),
                Stop::AfterDuration(_) => None,
            },
            duration_s: round3(secs),
            calls_ok: stats.ok,
            calls_unchecked: stats.unchecked,
            errors: stats.errors.values().sum(),
            errors_by_code: stats.errors.clone(),
            error_messages: stats.error_messages.clone(),
            wrong: stats.wrong,
            wrong_samples: stats.wrong_samples.clone(),
            transport: stats.transport,
            transport_samples: stats.transport_samples.clone(),
            http_requests: stats.http_requests,
            calls_per_s: per_second(stats.ok + stats.unchecked),
            http_requests_per_s: per_second(stats.http_requests),
            latency_ms: Latency {
                p50: percentile(0.50),
                p90: percentile(0.90),
                p99: percentile(0.99),
                max: (!hist.is_empty()).then(|| micros_to_ms(hist.max())),
            },
        }
    }

    /// Whether every call succeeded: no errors, wrong replies or transport
    /// failures.
    pub fn is_clean(&self) -> bool {
        self.errors + self.wrong + self.transport == 0
    }

    /// Prints the report on stdout, as JSON or as an aligned table.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        let text = if json {
            let mut text = serde_json::to_string_pretty(self)?;
            text.push('\n');
            text
        } else {
            self.table()
        };
        std::io::stdout().lock().write_all(text.as_bytes())?;
        Ok(())
    }

    /// The figures as `label  value` lines with aligned values, ready to
    /// paste into a README code block.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("target", self.url.clone()),
            ("method", self.method.clone()),
            ("concurrency", self.concurrency.to_string()),
            ("batch size", self.batch.to_string()),
        ];
        if let Some(limit) = self.requests_limit {
            rows.push(("requests", limit.to_string()));
        }
        rows.push(("duration", format!("{:.3} s", self.duration_s)));
        rows.push(("calls ok", self.calls_ok.to_string()));
        if self.calls_unchecked > 0 || !matches!(self.method.as_str(), "add" | "noop") {
            rows.push(("calls unchecked", self.calls_unchecked.to_string()));
        }
        rows.push(("errors", self.errors_text()));
        rows.extend(self.error_messages.iter().map(|m| ("  error", m.clone())));
        rows.push(("wrong", self.wrong.to_string()));
        rows.extend(self.wrong_samples.iter().map(|m| ("  wrong", m.clone())));
        rows.push(("transport", self.transport.to_string()));
        rows.extend(
            self.transport_samples
                .iter()
                .map(|m| ("  transport", m.clone())),
        );
        rows.push(("calls/s", format!("{:.1}", self.calls_per_s)));
        rows.push((
            "HTTP requests/s",
            format!("{:.1}", self.http_requests_per_s),
        ));
        let latency = self.latency_ms;
        for (label, value) in [
            ("latency p50", latency.p50),
            ("latency p90", latency.p90),
            ("latency p99", latency.p99),
            ("latency max", latency.max),
        ] {
            rows.push((
                label,
                value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.3} ms")),
            ));
        }

        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (label, value) in rows {
            let _ = writeln!(out, "{label:<width$}  {value}");
        }
        out
    }

    /// `0`, or the total followed by the count of each code.
    fn errors_text(&self) -> String {
        if self.errors_by_code.is_empty() {
            return "0".to_owned();
        }
        let by_code: Vec<String> = self
            .errors_by_code
            .iter()
            .map(|(code, count)| format!("{code}: {count}"))
            .collect();
        format!("{} ({})", self.errors, by_code.join(", "))
    }
}

fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Method;

    fn settings() -> Settings {
        Settings {
            url: "http://127.0.0.1:8080/".parse().expect("valid URL"),
            concurrency: 4,
            batch: 1,
            method: Method::Add,
            warmup: Duration::ZERO,
            stop: Stop::AfterDuration(Duration::from_secs(2)),
        }
    }

    #[test]
    fn merged_counts_and_rates() {
        let mut a = Stats::new();
        a.http_requests = 3;
        a.record_verdict(Verdict::Ok);
        a.record_verdict(Verdict::Ok);
        a.record_latency(Duration::from_micros(1500));
        let mut b = Stats::new();
        b.http_requests = 1;
        b.record_verdict(Verdict::Error {
            code: -32601,
            message: "Method not found".to_owned(),
        });
        b.record_verdict(Verdict::Wrong("id 1: result 2, expected 3".to_owned()));
        b.record_transport(2, "connection refused".to_owned());
        b.record_latency(Duration::from_millis(3));
        a.merge(b);

        let report = Report::new(&settings(), Duration::from_secs(2), &a);
        assert_eq!(report.calls_ok, 2);
        assert_eq!(report.errors, 1);
        assert_eq!(report.errors_by_code.get(&-32601), Some(&1));
        assert_eq!(report.wrong, 1);
        assert_eq!(report.transport, 2);
        assert_eq!(report.calls_per_s, 1.0);
        assert_eq!(report.http_requests_per_s, 2.0);
        // The histogram keeps 3 significant digits.
        let max = report.latency_ms.max.expect("latency recorded");
        assert!((max - 3.0).abs() < 0.005, "{max}");
        assert!(!report.is_clean());

        let table = report.table();
        assert!(table.contains("errors           1 (-32601: 1)"), "{table}");
        assert!(
            table.contains("  error          -32601: Method not found"),
            "{table}"
        );
        assert!(table.contains("latency max      3.00"), "{table}");
    }

    #[test]
    fn samples_are_distinct_and_bounded() {
        let mut stats = Stats::new();
        for i in 0..10 {
            stats.record_verdict(Verdict::Error {
                code: -1,
                message: format!("m{}", i % 5),
            });
        }
        assert_eq!(stats.error_messages, ["-1: m0", "-1: m1", "-1: m2"]);
    }

    #[test]
    fn empty_run_has_no_latency() {
        let report = Report::new(&settings(), Duration::from_secs(1), &Stats::new());
        assert!(report.is_clean());
        assert!(report.latency_ms.p50.is_none());
        assert!(report.table().contains("latency p50      -"));
    }
}
