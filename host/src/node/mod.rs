//! A node: the HTTP service around the runtime. It serves JSON-RPC to any
//! client at `POST /`, the gateway's internal call route, and its health;
//! with `--join` it registers with a gateway and keeps heartbeating.

mod join;
mod pool;
mod service;
mod subcalls;

pub use join::Announcement;
pub use pool::WorkerPool;
pub use subcalls::SubcallRoute;

use crate::http;
use crate::rpc::EndpointLimits;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
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
    /// The gateway's join token, if it requires one.
    pub join_token: Option<String>,
    /// Calls run at once (default: the machine's cores).
    pub workers: usize,
    /// Calls that may wait for a worker before the node reports overload.
    pub queue: usize,
    /// How often to heartbeat the gateway.
    pub heartbeat: Duration,
    /// Body and batch limits of the JSON-RPC endpoint.
    pub endpoint: EndpointLimits,
    /// TLS and connection limits of the listener.
    pub edge: crate::edge::Edge,
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

    /// Serves until `shutdown` completes, then stops taking calls, lets
    /// the ones in flight finish and leaves the gateway.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let router = service::router(self.pool.clone(), self.config.endpoint.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let heartbeat = self.config.join.clone().map(|gateway| {
            let announcement = Announcement {
                url: self.url.clone(),
                methods: self.pool.methods().to_vec(),
            };
            tokio::spawn(join::heartbeat(
                http::client(),
                gateway,
                announcement,
                self.config.join_token.clone(),
                self.config.heartbeat,
                stop_rx,
            ))
        });
        tracing::info!(url = %self.url, workers = self.pool.workers(), methods = ?self.pool.methods(), "node serving");
        let edge = &self.config.edge;
        let result = crate::edge::serve(
            self.listener,
            router,
            edge.tls.clone(),
            edge.connections.clone(),
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            },
        )
        .await
        .map_err(NodeError::Serve);
        if let Some(heartbeat) = heartbeat {
            let _ = heartbeat.await;
        }
        tracing::info!(url = %self.url, "node stopped");
        result
    }
}
