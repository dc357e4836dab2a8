//! `madrpc node --module app.wasm --listen ADDR [--join GATEWAY_URL]`.

use super::edge::{ListenerArgs, TrustArgs};
use super::endpoint::EndpointArgs;
use super::limits::LimitArgs;
use super::signal::shutdown_requested;
use clap::Args;
use madrpc::node::{Node, NodeConfig, SubcallRoute, WorkerPool};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `madrpc node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The module to serve (built by `madrpc build`).
    #[arg(long)]
    module: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// A gateway to register with and heartbeat, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "GATEWAY_URL")]
    join: Option<String>,
    /// The cluster token: presented to the gateway to join, and required
    /// of every call this node takes. The gateway prints it at start.
    #[arg(long, env = "MADRPC_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Take calls without the cluster token: anyone who reaches this
    /// node's port may call it. Required to start without a token.
    #[arg(long)]
    insecure_public_calls: bool,
    /// The URL the gateway should use for this node (default: from the
    /// bound address).
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// Calls run at once (default: the machine's cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Calls that may wait for a worker before the node answers
    /// "overloaded" (default: 256 per worker). Waiting calls cost only their
    /// params; the bound keeps a flood from growing memory and latency
    /// without limit.
    #[arg(long)]
    queue: Option<usize>,
    /// How often to heartbeat the gateway.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    heartbeat: humantime::Duration,
    /// On Ctrl-C or SIGTERM, longest to wait for the calls in flight
    /// before exiting; a second signal exits at once.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    drain_timeout: humantime::Duration,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    listener: ListenerArgs,
    #[command(flatten)]
    trust: TrustArgs,
}

/// Serves the module until Ctrl-C or SIGTERM.
pub async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    args.trust.apply()?;
    let edge = args.listener.edge()?;
    super::edge::reload_on_hangup(&edge);
    let workers = args.workers.unwrap_or_else(super::cores).max(1);
    let queue = args.queue.unwrap_or(workers * 256);
    let limits = args.limits.to_limits();
    let runtime = super::call_runtime(&limits)?;
    let module = super::load_module(&runtime, &args.module).await?;
    let route = match &args.join {
        Some(gateway) => SubcallRoute::Gateway {
            url: format!("{}/", gateway.trim_end_matches('/')),
            client: madrpc::http::client(),
            token: args.join_token.clone(),
        },
        None => SubcallRoute::Local,
    };
    let pool = Arc::new(WorkerPool::new(
        runtime, module, limits, workers, queue, route,
    ));
    let node = Node::bind(
        NodeConfig {
            listen: args.listen,
            advertise: args.advertise,
            join: args.join,
            join_token: args.join_token,
            public_calls: args.insecure_public_calls,
            workers,
            queue,
            heartbeat: args.heartbeat.into(),
            endpoint: args.endpoint.to_limits(),
            edge,
            drain_timeout: args.drain_timeout.into(),
        },
        pool,
    )
    .await?;
    println!("madrpc node listening on {}", node.url());
    node.serve(shutdown_requested()).await?;
    Ok(ExitCode::SUCCESS)
}
