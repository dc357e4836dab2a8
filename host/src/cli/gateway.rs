//! `madrpc gateway --listen ADDR [--node URL]...`.

use super::edge::{ListenerArgs, PolicyArgs, TrustArgs};
use super::endpoint::EndpointArgs;
use super::signal::shutdown_requested;
use clap::Args;
use madrpc::gateway::{Gateway, GatewayConfig};
use std::net::SocketAddr;
use std::process::ExitCode;

/// Arguments of `madrpc gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A node to send calls to, e.g. http://10.0.0.5:9000 (repeatable).
    /// Nodes can also join at runtime with `madrpc node --join`.
    #[arg(long = "node", value_name = "URL")]
    nodes: Vec<String>,
    /// A secret nodes must present to join (default: none, any node that
    /// can reach the gateway may join).
    #[arg(long, env = "MADRPC_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    #[command(flatten)]
    gateway: GatewayFlags,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    listener: ListenerArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    trust: TrustArgs,
}

/// Gateway tuning flags shared with `serve`.
#[derive(Debug, Clone, Args)]
pub struct GatewayFlags {
    /// How often nodes are health-checked.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub health_interval: humantime::Duration,
    /// Longest the gateway waits for a node to answer one call.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub call_timeout: humantime::Duration,
}

impl GatewayArgs {
    fn config(&self) -> anyhow::Result<GatewayConfig> {
        let endpoint = self.endpoint.to_limits();
        let edge = self.policy.apply(
            self.listener.edge()?,
            self.join_token.clone(),
            endpoint.max_body_bytes,
        )?;
        Ok(GatewayConfig {
            listen: self.listen,
            nodes: self.nodes.clone(),
            health_interval: self.gateway.health_interval.into(),
            call_timeout: self.gateway.call_timeout.into(),
            endpoint,
            join_token: self.join_token.clone(),
            edge,
        })
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    args.trust.apply()?;
    let config = args.config()?;
    super::edge::reload_on_hangup(&config.edge);
    let scheme = config.edge.scheme();
    let gateway = Gateway::bind(config).await?;
    println!(
        "madrpc gateway listening on {scheme}://{}",
        gateway.local_addr()
    );
    gateway.serve(shutdown_requested()).await?;
    Ok(ExitCode::SUCCESS)
}
