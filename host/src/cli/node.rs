//! `madrpc node --module app.wasm --listen ADDR [--join GATEWAY_URL]`.
//! Without `--module`, a node that joins a gateway serves the gateway's
//! deployed module, fetched with the join token.

use super::edge::{ListenerArgs, TrustArgs};
use super::endpoint::EndpointArgs;
use super::limits::{AdmissionArgs, LimitArgs};
use super::signal::shutdown_requested;
use anyhow::Context;
use clap::Args;
use madrpc::node::{Node, NodeConfig, SubcallRoute, WorkerPool};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `madrpc node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The module to serve (built by `madrpc build`); without it, the
    /// module deployed on the --join gateway.
    #[arg(long, required_unless_present = "join")]
    module: Option<PathBuf>,
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
    /// How often to heartbeat the gateway.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    heartbeat: humantime::Duration,
    /// On Ctrl-C or SIGTERM, longest to wait for the calls in flight
    /// before exiting; a second signal exits at once.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    drain_timeout: humantime::Duration,
    #[command(flatten)]
    admission: AdmissionArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    listener: ListenerArgs,
    #[command(flatten)]
    trust: TrustArgs,
}

impl NodeArgs {
    fn sizing(&self) -> madrpc::node::Sizing {
        self.admission
            .sizing(self.workers.unwrap_or_else(super::cores))
    }

    /// The blocking threads the node needs: one for every call it admits.
    pub fn blocking_threads(&self) -> usize {
        self.admission.blocking_threads(self.sizing(), 1)
    }
}

/// Serves the module until Ctrl-C or SIGTERM.
pub async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    args.trust.apply()?;
    let edge = args.listener.edge()?;
    super::edge::reload_on_hangup(&edge);
    let sizing = args.sizing();
    let slots = args.admission.instance_slots(sizing, 1);
    let limits = args.limits.to_limits();
    let runtime = super::limits::node_runtime(&limits, slots)?;
    let module = match (&args.module, &args.join) {
        (Some(path), _) => super::load_module(&runtime, path).await?,
        (None, Some(gateway)) => {
            let wasm = madrpc::node::fetch_current(
                &madrpc::http::client(),
                gateway,
                args.join_token.as_deref(),
            )
            .await?;
            let loader = runtime.clone();
            let module = tokio::task::spawn_blocking(move || loader.load(&wasm))
                .await?
                .context("cannot load the module the gateway deploys")?;
            tracing::info!(module = %module.id(), methods = ?module.methods(), "fetched the deployed module from the gateway");
            module
        }
        (None, None) => anyhow::bail!(
            "give the node a module with --module, or a gateway to fetch it from with --join"
        ),
    };
    let route = match &args.join {
        Some(gateway) => SubcallRoute::Gateway {
            url: format!("{}/", gateway.trim_end_matches('/')),
            client: madrpc::http::client(),
            token: args.join_token.clone(),
        },
        None => SubcallRoute::Local,
    };
    let instances = Arc::new(tokio::sync::Semaphore::new(slots as usize));
    let pool = Arc::new(WorkerPool::new(
        runtime, module, limits, sizing, instances, route,
    ));
    let node = Node::bind(
        NodeConfig {
            listen: args.listen,
            advertise: args.advertise,
            join: args.join,
            join_token: args.join_token,
            public_calls: args.insecure_public_calls,
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
