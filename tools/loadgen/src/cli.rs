//! Command-line interface: the flags a user types, their defaults and
//! validation, turned into the [`Settings`] the load run works from.

use std::time::Duration;

use clap::Parser;
use hyper::Uri;

use crate::settings::{Settings, Stop};
use crate::workload::Method;

/// Load generator for JSON-RPC 2.0 over HTTP servers.
///
/// Runs C concurrent clients, each sending one HTTP POST at a time over its
/// own keep-alive connection, checks every reply (id, result, errors) and
/// prints throughput and latency. Exits with status 1 when any call failed.
#[derive(Debug, Parser)]
#[command(name = "madrpc-loadgen", version, about, long_about)]
pub struct Cli {
    /// Endpoint to POST JSON-RPC requests to (plain http only).
    #[arg(long, default_value = "http://127.0.0.1:8080/", value_parser = parse_url)]
    pub url: Uri,

    /// Number of concurrent clients, each with its own keep-alive connection.
    #[arg(short, long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// How long to measure after warmup (e.g. `10s`, `500ms`, `1m`);
    /// ignored when `--requests` is given.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub duration: Duration,

    /// Total number of JSON-RPC calls to measure; when given, the run stops
    /// after that many calls instead of after `--duration`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Calls per HTTP request; above 1 each request is a JSON-RPC batch array.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,

    /// Method to call: `add` (params [I, 1000000], expects I + 1000000),
    /// `noop` (no params, expects null), `sum_field` (params
    /// {"items": [...]} with 2,500 small objects, about 125 KB, the first
    /// with `qty` I; expects the sum of their `qty`) or any other name (no
    /// params, only checks that a result is present; counted as unchecked).
    #[arg(long, default_value = "add")]
    pub method: String,

    /// Expect every call to be answered with this JSON-RPC error code
    /// instead of a result (e.g. -32601 for an unknown `--method`: the
    /// server's HTTP and JSON-RPC floor).
    #[arg(
        long,
        value_name = "CODE",
        allow_hyphen_values = true,
        conflicts_with = "retry_after"
    )]
    pub expect_error: Option<i64>,

    /// Time spent loading the server before measuring; calls made during
    /// warmup are not counted (`0s` disables it).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Print the final figures as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Overload mode: each client sends one call at a time and, when it is
    /// refused (HTTP 503 or 429), waits as long as `Retry-After` says. The
    /// run reports goodput, refusals and their latency, and calls that ran
    /// out their deadline, instead of failing on errors.
    #[arg(long)]
    pub retry_after: bool,

    /// Params of every call in overload mode, as JSON, e.g.
    /// '{"batches":10,"samples":100000}'.
    #[arg(long, value_parser = parse_json, requires = "retry_after")]
    pub params: Option<serde_json::Value>,

    /// In overload mode, the numeric field of a result that counts as
    /// useful work (e.g. `total`); goodput is its sum per second. Without
    /// it every successful call counts 1.
    #[arg(long, value_name = "FIELD", requires = "retry_after")]
    pub goodput: Option<String>,

    /// Idle keep-alive connections to hold open during the run (each makes
    /// one `GET /health`, then stays silent); the run fails when the server
    /// closes any of them.
    #[arg(long, default_value_t = 0)]
    pub idle_connections: usize,
}

impl Cli {
    /// The settings of an overload run (`--retry-after`).
    pub fn overload_settings(&self) -> crate::overload::Settings {
        crate::overload::Settings {
            url: self.url.clone(),
            concurrency: self.concurrency,
            method: self.method.clone(),
            params: self.params.clone(),
            goodput_field: self.goodput.clone(),
            warmup: self.warmup,
            duration: self.duration,
        }
    }

    /// Turns the parsed flags into the settings of one load run.
    pub fn settings(&self) -> Settings {
        Settings {
            url: self.url.clone(),
            concurrency: self.concurrency,
            batch: self.batch,
            method: match self.expect_error {
                Some(code) => Method::Refused(self.method.clone(), code),
                None => Method::from_name(&self.method),
            },
            warmup: self.warmup,
            stop: match self.requests {
                Some(calls) => Stop::AfterCalls(calls),
                None => Stop::AfterDuration(self.duration),
            },
        }
    }
}

/// Accepts absolute `http://` URLs only: the tool speaks plain HTTP/1.1.
fn parse_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text.parse().map_err(|e| format!("invalid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => Ok(uri),
        Some("http") => Err("URL has no host".to_owned()),
        Some(other) => Err(format!(
            "unsupported scheme `{other}`: only http:// is supported"
        )),
        None => Err("URL must be absolute, e.g. http://127.0.0.1:8080/".to_owned()),
    }
}

/// A JSON array or object.
fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str(text) {
        Ok(value @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => Ok(value),
        Ok(_) => Err("params must be a JSON array or object".to_owned()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// A humantime duration that is not zero (a zero-length run measures nothing).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("duration must be greater than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = Cli::parse_from(["madrpc-loadgen"]);
        assert_eq!(cli.url, "http://127.0.0.1:8080/");
        assert_eq!(cli.concurrency, 16);
        assert_eq!(cli.batch, 1);
        assert_eq!(cli.duration, Duration::from_secs(10));
        assert_eq!(cli.warmup, Duration::from_secs(1));
        assert!(cli.requests.is_none());
        assert!(!cli.json);
    }

    #[test]
    fn rejects_https_and_zero_values() {
        assert!(Cli::try_parse_from(["x", "--url", "https://example.com/"]).is_err());
        assert!(Cli::try_parse_from(["x", "--url", "/relative"]).is_err());
        assert!(Cli::try_parse_from(["x", "-c", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--batch", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--duration", "0s"]).is_err());
        assert!(Cli::try_parse_from(["x", "--warmup", "0s"]).is_ok());
    }

    #[test]
    fn overload_flags() {
        let cli = Cli::parse_from([
            "x",
            "--retry-after",
            "--method",
            "aggregate",
            "--params",
            r#"{"batches":10}"#,
            "--goodput",
            "total",
        ]);
        let settings = cli.overload_settings();
        assert_eq!(settings.params, Some(serde_json::json!({"batches": 10})));
        assert_eq!(settings.goodput_field.as_deref(), Some("total"));
        assert!(Cli::try_parse_from(["x", "--params", "{}"]).is_err());
        assert!(Cli::try_parse_from(["x", "--retry-after", "--params", "3"]).is_err());
    }
}
