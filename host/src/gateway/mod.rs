//! The gateway: JSON-RPC 2.0 for any HTTP client, balanced across nodes
//! with power-of-two-choices, health checks, passive ejection, and one
//! retry on another node when a node fails before replying. It never runs
//! guest code.

mod admin;
mod balance;
mod cache;
mod caching;
mod channel;
pub mod deploy;
pub mod discover;
mod drain;
mod forward;
mod health;
mod membership;
mod node_client;
mod node_entry;
mod observe;
mod registry;
mod retry_budget;
mod route;
mod service;

pub use admin::MAX_MODULE_BYTES;
pub use deploy::{Activated, DeployError, Deployments};
pub use membership::{NodePolicy, NodeUrlError};
pub use registry::{NodeStatus, Registry};

use crate::cluster::ClusterToken;
use crate::http;
use crate::node::{SubcallDispatch, SubcallRoute};
use crate::rpc::{self, CallBudget, CallRequest, Dispatch, EndpointLimits, RpcError};
use crate::telemetry::{self, CallLog, CallRecord, RequestId, method_label};
use bytes::Bytes;
use futures::future::BoxFuture;
use node_client::NodeClient;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::TcpListener;

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Nodes known from the start (`--node`).
    pub nodes: Vec<String>,
    /// How often nodes are health-checked; joined nodes silent for three
    /// intervals are dropped.
    pub health_interval: Duration,
    /// Longest the gateway waits for a node's answer to one call.
    pub call_timeout: Duration,
    /// Body and batch limits.
    pub endpoint: EndpointLimits,
    /// The cluster credential. When set, nodes must present it
    /// (`Authorization: Bearer`) to join or leave, and the gateway presents
    /// it on every request to a node. `None` is open membership.
    pub join_token: Option<String>,
    /// Networks nodes may be in (`--node-network`); empty allows any.
    pub node_networks: Vec<ipnet::IpNet>,
    /// The largest result a node may send back; a longer reply fails the
    /// node.
    pub max_result_bytes: usize,
    /// TLS, connection limits, API keys, rate limits and CORS.
    pub edge: crate::edge::Edge,
    /// Longest a shutdown waits for calls in flight (`--drain-timeout`).
    pub drain_timeout: Duration,
    /// Bytes the result cache may hold (`--cache-size`); 0 turns it off.
    pub cache_bytes: usize,
    /// The secret `madrpc deploy` must present; `None` turns deploys off.
    pub admin_token: Option<String>,
    /// Where deployed module versions are kept, so a restart serves the
    /// deployed one; `None` keeps them in memory (`serve`).
    pub modules_dir: Option<std::path::PathBuf>,
}

/// Why a gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("the gateway's server failed: {0}")]
    Serve(std::io::Error),
    /// An `--allow-origin` value is not an origin.
    #[error(transparent)]
    Cors(#[from] crate::edge::CorsError),
    /// A `--node` URL is not acceptable.
    #[error("cannot use --node: {0}")]
    BadNode(#[from] NodeUrlError),
    /// The module store could not be opened.
    #[error(transparent)]
    Modules(#[from] crate::modules::StoreError),
}

/// Routes calls to nodes: the [`Dispatch`] behind the gateway's endpoint.
pub struct Balancer {
    registry: Arc<Registry>,
    client: NodeClient,
    call_timeout: Duration,
    retries: retry_budget::RetryBudget,
    log: Arc<CallLog>,
    /// Results of cacheable functions; `None` with `--cache-size 0`.
    cache: Option<cache::ResultCache>,
    /// The module version calls start on.
    deployments: Arc<Deployments>,
}

impl Dispatch for Balancer {
    /// Calls of cacheable functions go through the result cache (see
    /// `caching`); the rest go straight to [`Balancer::call_nodes`].
    async fn call(&self, mut request: CallRequest) -> Result<Bytes, RpcError> {
        let started = std::time::Instant::now();
        // A client's call runs on the version current now, to the end.
        let _pin = self.deployments.pin(&mut request.budget);
        let budget = request.budget;
        let method = request.method.clone();
        let mut node = None;
        let outcome = self.call_through_cache(request, &mut node).await;
        let error = outcome.as_ref().err();
        self.log.finish(&CallRecord {
            method: method_label(&method, &self.registry.methods()),
            kind: error.map_or("ok", |e| e.kind().unwrap_or("error")),
            message: error.map(|e| e.message.as_str()),
            node: node.as_deref(),
            key: budget.key.map(crate::rpc::KeyName::as_str),
            request_id: budget.request_id.as_ref().map(RequestId::as_str),
            elapsed: started.elapsed(),
        });
        outcome
    }

    fn methods(&self) -> Vec<String> {
        match self.deployments.current() {
            Some(version) => version.manifest.methods.clone(),
            None => self.registry.methods().to_vec(),
        }
    }

    fn builtin(&self, name: &str) -> Option<serde_json::Value> {
        observe::builtin(name, &self.registry, &self.log)
    }

    fn cached_methods(&self) -> std::collections::BTreeMap<String, u64> {
        self.cacheable_methods()
    }

    fn module_version(&self) -> Option<String> {
        self.deployments.current().map(|v| v.id.to_string())
    }
}

/// Sub-calls of the worker pools in the gateway's own process: straight
/// into the balancer, as a client call would go after the endpoint. It
/// holds the balancer weakly, since the balancer holds the pools.
struct InProcess(Weak<Balancer>);

impl SubcallDispatch for InProcess {
    fn call(
        &self,
        method: String,
        params: Bytes,
        budget: CallBudget,
    ) -> BoxFuture<'static, Result<Bytes, RpcError>> {
        let balancer = self.0.upgrade();
        Box::pin(async move {
            match balancer {
                Some(balancer) => {
                    balancer
                        .call(CallRequest {
                            method,
                            params,
                            budget,
                        })
                        .await
                }
                None => Err(RpcError::internal("the grid is shutting down")),
            }
        })
    }
}

/// A bound gateway, ready to serve.
pub struct Gateway {
    listener: TcpListener,
    registry: Arc<Registry>,
    token: Arc<ClusterToken>,
    admin: Arc<ClusterToken>,
    balancer: Arc<Balancer>,
    client: NodeClient,
    config: GatewayConfig,
    /// More client routes (the job API), behind the same edge layer as calls.
    extra: Option<axum::Router>,
    /// More work a drain waits for (the job workers), given the drain
    /// timeout.
    also_drain: Option<DrainHook>,
}

/// Work a drain waits for besides the calls in flight.
type DrainHook = Box<dyn FnOnce(Duration) -> BoxFuture<'static, ()> + Send>;

impl Gateway {
    /// Checks the static nodes and binds the listen address.
    pub async fn bind(config: GatewayConfig) -> Result<Self, GatewayError> {
        let policy = NodePolicy {
            networks: config.node_networks.clone(),
        };
        let nodes = config
            .nodes
            .iter()
            .map(|url| policy.check(url))
            .collect::<Result<Vec<_>, _>>()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let registry =
            Arc::new(Registry::new(&nodes).with_heartbeat_expiry(config.health_interval * 3));
        let token = Arc::new(ClusterToken::new(config.join_token.clone()));
        let admin = Arc::new(ClusterToken::new(config.admin_token.clone()));
        let store = crate::modules::Store::open(config.modules_dir.as_deref())?;
        if let Some(current) = store.current() {
            tracing::info!(module = %current.id, methods = ?current.manifest.methods, "serving the deployed module version");
        }
        let deployments = Arc::new(Deployments::new(store));
        let client = NodeClient::new(http::client(), token.clone(), config.max_result_bytes);
        let balancer = Arc::new(Balancer {
            registry: registry.clone(),
            client: client.clone(),
            call_timeout: config.call_timeout,
            retries: retry_budget::RetryBudget::default(),
            log: Arc::new(CallLog::new(telemetry::metrics::Surface::Gateway)),
            cache: (config.cache_bytes > 0).then(|| cache::ResultCache::new(config.cache_bytes)),
            deployments,
        });
        Ok(Self {
            listener,
            registry,
            token,
            admin,
            balancer,
            client,
            config,
            extra: None,
            also_drain: None,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The node registry (to wait for nodes, or to inspect them).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Where the worker pools of this process send their sub-calls: into
    /// this gateway's balancer, without a socket.
    pub fn subcall_route(&self) -> SubcallRoute {
        SubcallRoute::InProcess(Arc::new(InProcess(Arc::downgrade(&self.balancer))))
    }

    /// The module versions: what calls start on, deploys and rollbacks.
    pub fn deployments(&self) -> Arc<Deployments> {
        self.balancer.deployments.clone()
    }

    /// The balancer, for callers in this process that run calls as a
    /// client's would run (the job worker).
    pub fn balancer(&self) -> Arc<Balancer> {
        self.balancer.clone()
    }

    /// Serves `routes` as well, behind the same keys and rate limits as
    /// calls.
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.extra = Some(match self.extra.take() {
            Some(extra) => extra.merge(routes),
            None => routes,
        });
        self
    }

    /// Makes a drain wait for `drain` too, given the drain timeout: the
    /// listener stays open until it completes, since the job workers'
    /// calls send their sub-calls through it.
    pub fn drain_also(
        mut self,
        drain: impl FnOnce(Duration) -> BoxFuture<'static, ()> + Send + 'static,
    ) -> Self {
        self.also_drain = Some(Box::new(drain));
        self
    }

    /// The cluster credential, shared with the routes that check it; set a
    /// new token on it to revoke the old one.
    pub fn cluster_token(&self) -> Arc<ClusterToken> {
        self.token.clone()
    }

    /// Serves until `shutdown` completes, then drains: new client calls
    /// are refused, while the calls in flight finish with every round of
    /// their sub-calls (within the drain timeout); then it stops.
    pub async fn serve(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let health = tokio::spawn(health::run(
            self.registry.clone(),
            self.client.clone(),
            self.config.health_interval,
        ));
        let edge = &self.config.edge;
        let drain = Arc::new(drain::Drain::default());
        let calls = drain::layer(
            edge.guard(
                rpc::router(self.balancer.clone(), self.config.endpoint.clone()),
                self.token.clone(),
            ),
            drain.clone(),
            self.token.clone(),
        );
        let calls = match self.extra.clone() {
            Some(extra) => calls.merge(edge.guard(extra, self.token.clone())),
            None => calls,
        };
        let modules = admin::routes(
            self.balancer.deployments.clone(),
            self.registry.clone(),
            self.admin.clone(),
            self.token.clone(),
        );
        let router = edge.wrap(calls.merge(modules).merge(service::router(
            self.registry.clone(),
            self.token.clone(),
            NodePolicy {
                networks: self.config.node_networks.clone(),
            },
            observe::Observed {
                log: self.balancer.log.clone(),
                drain: drain.clone(),
                deployments: self.balancer.deployments.clone(),
            },
        )))?;
        tracing::info!(addr = %self.local_addr(), scheme = edge.scheme(), "gateway serving");
        let also_drain = self.also_drain.take();
        let drain_timeout = self.config.drain_timeout;
        let result = crate::edge::serve_draining(
            self.listener,
            router,
            edge.tls.clone(),
            edge.connections.clone(),
            shutdown,
            move || async move {
                drain.start();
                tracing::info!("draining: refusing new calls; waiting for the calls in flight");
                let also = async move {
                    if let Some(also) = also_drain {
                        also(drain_timeout).await;
                    }
                };
                tokio::join!(drain.idle(), also);
            },
            self.config.drain_timeout,
        )
        .await
        .map_err(GatewayError::Serve);
        health.abort();
        tracing::info!("gateway stopped");
        result
    }
}
