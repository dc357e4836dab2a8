//! `madrpc job ID [--wait]`: shows a job; with `--wait`, once it has
//! finished. Also the HTTP and waiting helpers `submit` shares.

use super::edge::TrustArgs;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the job API is and who calls it; shared by `submit` and `job`.
#[derive(Debug, Clone, Args)]
pub struct JobClientArgs {
    /// The gateway (or `serve`) that keeps the jobs.
    #[arg(long, env = "MADRPC_URL", default_value = "http://127.0.0.1:8080/")]
    pub url: String,
    /// The API key, when the grid requires one.
    #[arg(long, env = "MADRPC_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// With --wait, how long to wait at most.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub timeout: humantime::Duration,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// Arguments of `madrpc job`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id, as `madrpc submit` printed it.
    id: String,
    /// Wait until the job has finished.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    client: JobClientArgs,
}

/// Prints the job as JSON; exit status 1 if it failed or was cancelled.
pub async fn run(args: JobArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.client)?;
    let job = if args.wait {
        api.wait(&args.id, args.client.timeout.into()).await?
    } else {
        api.get(&args.id, None).await?
    };
    println!("{}", serde_json::to_string_pretty(&job)?);
    Ok(match job["state"].as_str() {
        Some("failed" | "cancelled") => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// The job API of one gateway.
pub struct Api {
    http: madrpc::http::HttpClient,
    base: String,
    key: Option<String>,
}

impl Api {
    /// A client for the gateway `args` names.
    pub fn new(args: &JobClientArgs) -> anyhow::Result<Self> {
        // MADRPC_URL may list several gateways for `call`; jobs go to the
        // first, which keeps them (or shares their store).
        let url = args.url.split(',').next().unwrap_or_default().trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!(
                "--url must be an http:// or https:// URL, for example http://127.0.0.1:8080/ (got '{url}')"
            );
        }
        args.trust.apply()?;
        Ok(Self {
            http: madrpc::http::client(),
            base: format!("{}/v1/jobs", url.trim_end_matches('/')),
            key: args.key.clone(),
        })
    }

    /// Sends one request; an answer outside 2xx becomes an error that
    /// quotes the server's message.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut request = hyper::Request::builder().method(method).uri(&url);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = &self.key {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach {url}: {}; is the gateway running and is --url right?",
                    innermost(&e)
                )
            })?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(300), exchange)
            .await
            .map_err(|_| anyhow::anyhow!("{url} did not answer within 300 s"))??;
        let value: Value = serde_json::from_slice(&body).map_err(|_| {
            anyhow::anyhow!(
                "unexpected answer from {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        })?;
        if !(200..300).contains(&status) {
            let message = value["error"]["message"].as_str().unwrap_or("no message");
            let hint = if status == 401 {
                "; pass the key with --key or MADRPC_KEY"
            } else {
                ""
            };
            anyhow::bail!("HTTP {status}: {message}{hint}");
        }
        Ok((status, value))
    }

    /// The job `id`, held up to `wait` until it finishes.
    pub async fn get(&self, id: &str, wait: Option<Duration>) -> anyhow::Result<Value> {
        let query = wait.map_or(String::new(), |w| format!("?wait={}ms", w.as_millis()));
        let path = format!("/{}{query}", encode(id));
        Ok(self.send(hyper::Method::GET, &path, None, &[]).await?.1)
    }

    /// Waits until job `id` has finished, at most `timeout`. On a terminal
    /// it shows the state and the time waited, once a second; piped, it
    /// prints nothing but the job.
    pub async fn wait(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let progress = std::io::stderr().is_terminal();
        let step = if progress {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(30)
        };
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let job = self.get(id, Some(step.min(left))).await?;
            let state = job["state"].as_str().unwrap_or("unknown");
            let over = matches!(state, "succeeded" | "failed" | "cancelled");
            if progress {
                let mut err = std::io::stderr();
                let _ = write!(
                    err,
                    "\r\x1b[2K{id}: {state}, {} s",
                    start.elapsed().as_secs()
                );
                if over {
                    let _ = writeln!(err);
                }
                let _ = err.flush();
            }
            if over {
                return Ok(job);
            }
            if start.elapsed() >= timeout {
                anyhow::bail!(
                    "job {id} is still {state} after {}; wait again with `madrpc job {id} --wait`",
                    humantime::format_duration(timeout)
                );
            }
        }
    }
}

/// Percent-encodes an id for a path segment (ids are hex, but a typo
/// must not change the path).
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The innermost cause of an error (for example "Connection refused").
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = error;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}
