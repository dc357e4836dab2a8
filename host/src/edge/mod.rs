//! What every listener does before JSON-RPC: TLS, connection caps and
//! timeouts (one accept loop for all listeners), API keys, rate and
//! concurrency limits, CORS for browsers, and request ids. Each concern is one file;
//! the gateway and the node only hand their routers to [`serve`].

mod admit;
mod conn;
mod cors;
pub mod keys;
mod limit;
mod listener;
mod request_id;
mod tls;

pub use admit::{API_KEY_HEADER, Guard, Policy, Principal, admit};
pub use cors::{CorsError, cors_layer};
pub use limit::{EVICT_EVERY, IpLimits};
pub use listener::{
    ConnectionLimits, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, Takeover, serve, serve_draining,
};
pub use request_id::hop;
pub use tls::TlsServer;

use axum::Router;
use std::sync::Arc;

/// How a listener faces its clients.
#[derive(Clone, Default)]
pub struct Edge {
    /// TLS, when the listener serves `https://`.
    pub tls: Option<Arc<TlsServer>>,
    /// Connection cap and timeouts.
    pub connections: ConnectionLimits,
    /// Who may call the JSON-RPC route, and how often (`serve` and
    /// gateway only; a node checks the cluster token itself).
    pub policy: Option<Arc<Policy>>,
    /// Origins browsers may call from (`--allow-origin`); empty: none.
    pub allow_origins: Vec<String>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("tls", &self.tls.is_some())
            .field("connections", &self.connections)
            .field(
                "keys",
                &self.policy.as_ref().is_some_and(|p| p.requires_keys()),
            )
            .field("allow_origins", &self.allow_origins)
            .finish()
    }
}

impl Edge {
    /// Puts the admission policy in front of a JSON-RPC router; member
    /// nodes presenting `cluster` pass without a key or a rate limit.
    pub fn guard(&self, router: Router, cluster: Arc<crate::cluster::ClusterToken>) -> Router {
        match &self.policy {
            Some(policy) => router.layer(axum::middleware::from_fn_with_state(
                Arc::new(Guard {
                    policy: policy.clone(),
                    cluster,
                }),
                admit,
            )),
            None => router,
        }
    }

    /// Adds the layers that wrap every route of the listener (CORS answers
    /// preflights before any credential is asked for).
    pub fn wrap(&self, router: Router) -> Result<Router, CorsError> {
        Ok(match cors_layer(&self.allow_origins)? {
            Some(cors) => router.layer(cors),
            None => router,
        })
    }

    /// The scheme clients use for this listener.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Raises this process's open-file limit to its hard limit, so connection
/// caps, not the default soft limit of 1,024, bound how many clients are
/// served; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    }
}

/// Descriptors kept free of client connections: node connections, module
/// files, logs.
const RESERVED_FDS: u64 = 512;

/// `wanted` connections, lowered to what `fd_limit` descriptors allow;
/// lowering a value the user chose (`explicit`) is worth a warning.
pub fn fit_connections(wanted: usize, fd_limit: u64, explicit: bool) -> usize {
    let room = usize::try_from(fd_limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    let fitted = wanted.min(room.max(64));
    if fitted < wanted && explicit {
        tracing::warn!(
            wanted,
            allowed = fitted,
            fd_limit,
            "the open-file limit allows fewer connections than --max-connections"
        );
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        assert_eq!(fit_connections(20_000, 1_048_576, true), 20_000);
        assert_eq!(
            fit_connections(20_000, 4096, false),
            4096 - RESERVED_FDS as usize
        );
        assert_eq!(fit_connections(20_000, 100, true), 64);
        assert!(raise_fd_limit() >= 1024);
    }
}
