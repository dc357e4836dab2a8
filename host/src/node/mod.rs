//! A node: the HTTP service around the runtime. It serves JSON-RPC at
//! `POST /`, the gateway's internal call route, and its health; with
//! `--join` it registers with a gateway and keeps heartbeating. Calls need
//! the cluster token unless the node was made public explicitly.

mod admission;
mod channel;
mod follow;
mod gate;
mod inline;
mod join;
mod observed;
mod pool;
mod service;
mod sizing;
mod subcalls;
mod versions;

pub use follow::Versions;
pub use follow::{FetchError, fetch_current};
pub use join::Announcement;
pub use pool::WorkerPool;
pub use sizing::{
    DEFAULT_CLIENT_CALLS_PER_WORKER, DEFAULT_QUEUE_PER_WORKER, DEFAULT_SUBCALLS_PER_WORKER,
    SPARE_BLOCKING_THREADS, Sizing, blocking_threads, instance_slots,
};
pub use subcalls::{SubcallDispatch, SubcallRoute};

use crate::cluster::ClusterToken;
use crate::http;
use crate::rpc::EndpointLimits;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The URL the gateway should use to reach this node (default: derived
    /// from the bound address).
    pub advertise: Option<String>,
    /// A gateway to register with, e.g. `http://127.0.0.1:8080`.
    pub join: Option<String>,
    /// The cluster token: presented to the gateway to join, and required
    /// of every call (`Authorization: Bearer`).
    pub join_token: Option<String>,
    /// Take calls without the cluster token too (`--insecure-public-calls`):
    /// anyone who reaches the port may call.
    pub public_calls: bool,
    /// How often to heartbeat the gateway.
    pub heartbeat: Duration,
    /// Body and batch limits of the JSON-RPC endpoint.
    pub endpoint: EndpointLimits,
    /// TLS and connection limits of the listener.
    pub edge: crate::edge::Edge,
    /// Longest a shutdown waits for calls in flight (`--drain-timeout`).
    pub drain_timeout: Duration,
}

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("the node's server failed: {0}")]
    Serve(std::io::Error),
    /// No token, and not made public: the node would take calls from
    /// anyone, so it does not start.
    #[error(
        "a node takes calls only from its cluster: give it the gateway's join token with --join-token or MADRPC_JOIN_TOKEN, or start it with --insecure-public-calls to let anyone who reaches its port call it"
    )]
    NoCredential,
    /// An empty token would match an empty credential.
    #[error("the join token is empty; give the token the gateway printed or was started with")]
    EmptyToken,
}

/// A bound node, ready to serve.
pub struct Node {
    listener: TcpListener,
    pool: Arc<WorkerPool>,
    config: NodeConfig,
    url: String,
}

impl Node {
    /// Binds the listen address.
    pub async fn bind(config: NodeConfig, pool: Arc<WorkerPool>) -> Result<Self, NodeError> {
        match &config.join_token {
            Some(token) if token.is_empty() => return Err(NodeError::EmptyToken),
            None if !config.public_calls => return Err(NodeError::NoCredential),
            _ => {}
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(NodeError::Serve)?;
        let url = config
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{}://{addr}", config.edge.scheme()));
        Ok(Self {
            listener,
            pool,
            config,
            url,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The URL this node announces.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until `shutdown` completes, then drains: it tells the
    /// gateway it is leaving (and answers health checks with `draining`),
    /// so no new calls are routed to it, lets the calls in flight finish
    /// within the drain timeout, and stops.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let token = Arc::new(ClusterToken::new(self.config.join_token.clone()));
        if self.config.public_calls {
            tracing::warn!(
                "--insecure-public-calls: anyone who can reach this node's port may call its functions"
            );
        }
        let draining = Arc::new(AtomicBool::new(false));
        let router = service::router(
            self.pool.clone(),
            self.config.endpoint.clone(),
            token,
            self.config.public_calls,
            observed::Observed {
                url: self.url.clone(),
                log: Arc::new(crate::telemetry::CallLog::new(
                    crate::telemetry::metrics::Surface::Node,
                )),
                draining: draining.clone(),
            },
        )
        .layer(axum::middleware::from_fn_with_state(
            draining.clone(),
            health_while_draining,
        ));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let heartbeat = self.config.join.clone().map(|gateway| {
            tokio::spawn(join::heartbeat(
                http::client(),
                gateway,
                self.url.clone(),
                self.pool.clone(),
                self.config.join_token.clone(),
                self.config.heartbeat,
                stop_rx,
            ))
        });
        tracing::info!(url = %self.url, workers = self.pool.workers(), methods = ?self.pool.versions().methods(), "node serving");
        let edge = &self.config.edge;
        let pool = self.pool.clone();
        let url = self.url.clone();
        let result = crate::edge::serve_draining(
            self.listener,
            router,
            edge.tls.clone(),
            edge.connections.clone(),
            shutdown,
            move || async move {
                draining.store(true, Ordering::Release);
                // Leave first: the gateway stops routing here while the
                // listener still takes the calls already on their way.
                let _ = stop_tx.send(true);
                if let Some(heartbeat) = heartbeat {
                    let _ = heartbeat.await;
                }
                tracing::info!(url = %url, in_flight = pool.in_flight(), "draining: waiting for the calls in flight");
                while pool.in_flight() > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            self.config.drain_timeout,
        )
        .await
        .map_err(NodeError::Serve);
        tracing::info!(url = %self.url, "node stopped");
        result
    }
}

/// While the node drains, `/health` answers 503 `draining`, so a gateway
/// that lists the node with `--node` takes it out of rotation.
async fn health_while_draining(
    axum::extract::State(draining): axum::extract::State<Arc<AtomicBool>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if draining.load(Ordering::Acquire) && request.uri().path() == "/health" {
        // Marked as a node's, so that a gateway tells it from a failure.
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(crate::cluster::NODE_REPLY_HEADER, "1")],
            axum::Json(serde_json::json!({"status": "draining"})),
        )
            .into_response();
    }
    next.run(request).await
}
