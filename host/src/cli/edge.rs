//! Flags for what a listener does before JSON-RPC (TLS, timeouts,
//! connection cap; API keys, rate limits and CORS on `serve` and the
//! gateway), and the SIGHUP reload of keys and certificates.

use anyhow::Context;
use clap::Args;
use madrpc::edge::{self, ConnectionLimits, Edge, IpLimits, Policy, TlsServer};
use std::path::PathBuf;
use std::sync::Arc;

/// TLS and connection flags, on every listener.
#[derive(Debug, Clone, Args)]
pub struct ListenerArgs {
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    /// Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Longest a client may take to send a request's head (and finish the
    /// TLS handshake) before the connection is closed.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub header_timeout: humantime::Duration,
    /// Longest a request body may stall between two chunks.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub body_timeout: humantime::Duration,
    /// Longest a keep-alive connection may stay open without a request.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    pub idle_timeout: humantime::Duration,
    /// Most client connections open at once; past it new connections get
    /// 503 and are closed (default: 20,000, or what the open-file limit
    /// allows; that limit is raised to its hard limit at start).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
}

/// Client-facing policy flags of `serve` and the gateway.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Require an API key on every call, from this keys file (made with
    /// `madrpc keys new`). Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", env = "MADRPC_KEYS")]
    pub keys: Option<PathBuf>,
    /// Limit callers without a key to this rate per client IP, e.g. 50/s
    /// or 600/min (default: no limit).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub rate_per_ip: Option<f64>,
    /// Calls a client IP may make at once above --rate-per-ip (default:
    /// one second's worth).
    #[arg(long, value_name = "N", requires = "rate_per_ip")]
    pub burst_per_ip: Option<u32>,
    /// Let web pages from this origin call the grid (CORS), e.g.
    /// https://app.example.com (repeatable; default: none).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
}

/// Trust flag of every command that makes HTTPS requests.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// Also trust this PEM CA certificate for https:// peers (a private CA
    /// or a self-signed certificate); the system's roots stay trusted.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl TrustArgs {
    /// Makes this process's HTTP clients trust `--ca`.
    pub fn apply(&self) -> anyhow::Result<()> {
        if let Some(ca) = &self.ca {
            madrpc::trust::trust_ca(ca)?;
        }
        Ok(())
    }
}

/// A rate: `N`, `N/s`, `N/min` or `N/h`, as calls per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (number, per) = text.split_once('/').unwrap_or((text, "s"));
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("unknown unit '/{other}': use /s, /min or /h")),
    };
    let count: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a rate; write it as e.g. 50/s or 600/min"))?;
    if !(count.is_finite() && count > 0.0) {
        return Err(format!("the rate '{text}' must be above zero"));
    }
    Ok(count / seconds)
}

impl ListenerArgs {
    /// TLS and connection limits; raises the open-file limit.
    pub fn edge(&self) -> anyhow::Result<Edge> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsServer::load(cert, key)?),
            _ => None,
        };
        let fd_limit = edge::raise_fd_limit();
        Ok(Edge {
            tls,
            connections: ConnectionLimits {
                header_timeout: self.header_timeout.into(),
                body_timeout: self.body_timeout.into(),
                idle_timeout: self.idle_timeout.into(),
                max_connections: edge::fit_connections(
                    self.max_connections
                        .map_or(edge::DEFAULT_MAX_CONNECTIONS, |n| {
                            usize::try_from(n).unwrap_or(usize::MAX)
                        }),
                    fd_limit,
                    self.max_connections.is_some(),
                ),
            },
            policy: None,
            allow_origins: Vec::new(),
        })
    }
}

impl PolicyArgs {
    /// Adds the client policy to `edge`.
    pub fn apply(&self, mut edge: Edge, max_body: usize) -> anyhow::Result<Edge> {
        let per_ip = self
            .rate_per_ip
            .and_then(|rate| IpLimits::new(rate, self.burst_per_ip));
        if let Some(limits) = &per_ip {
            let every = limits.evict_every();
            let limits = Arc::downgrade(limits);
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(every);
                loop {
                    ticker.tick().await;
                    let Some(limits) = limits.upgrade() else {
                        break;
                    };
                    let (dropped, kept) = limits.evict_quiet();
                    if dropped > 0 {
                        tracing::debug!(
                            dropped,
                            kept,
                            "rate limits: quiet client addresses dropped"
                        );
                    }
                }
            });
        }
        let policy =
            Policy::new(self.keys.clone(), per_ip, max_body).context("cannot use the keys file")?;
        if let Some(keys) = &self.keys {
            tracing::info!(file = %keys.display(), "API keys required");
        }
        edge.policy = Some(Arc::new(policy));
        edge.allow_origins = self.allow_origins.clone();
        madrpc::edge::cors_layer(&edge.allow_origins)?;
        Ok(edge)
    }
}

/// Re-reads the keys file and the TLS certificate on every SIGHUP. A file
/// that fails to load is reported and the old one stays in force.
pub fn reload_on_hangup(edge: &Edge) {
    let tls = edge.tls.clone();
    let policy = edge.policy.clone();
    if tls.is_none() && !policy.as_ref().is_some_and(|p| p.requires_keys()) {
        return;
    }
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; keys and certificates will not reload");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded"),
                    Err(error) => {
                        tracing::error!(%error, "TLS certificate not reloaded; the old one stays")
                    }
                }
            }
            if let Some(policy) = &policy
                && policy.requires_keys()
            {
                match policy.reload_keys() {
                    Ok(count) => tracing::info!(keys = count, "API keys reloaded"),
                    Err(error) => {
                        tracing::error!(%error, "API keys not reloaded; the old ones stay")
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_calls_per_second() {
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("600/min"), Ok(10.0));
        assert_eq!(parse_rate("36/h"), Ok(0.01));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5/day").is_err());
    }
}
