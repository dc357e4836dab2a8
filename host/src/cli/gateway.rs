//! `madrpc gateway --listen ADDR [--node URL]... [--join-token SECRET]`.
//! Membership is closed unless `--insecure-open-join` says otherwise:
//! without a token the gateway makes one and prints it once.

use super::edge::{ListenerArgs, PolicyArgs, TrustArgs};
use super::endpoint::EndpointArgs;
use super::signal::shutdown_requested;
use anyhow::Context;
use clap::Args;
use madrpc::cluster::ClusterToken;
use madrpc::gateway::discover::{self, DnsTarget};
use madrpc::gateway::{Gateway, GatewayConfig, NodePolicy};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Find nodes by DNS: resolve NAME every --discover-interval and send
    /// calls to the addresses it returns, on PORT (repeatable). A
    /// Kubernetes headless Service lists its ready pods this way.
    #[arg(long = "discover", value_name = "dns:NAME:PORT")]
    discover: Vec<DnsTarget>,
    /// How often the --discover names are resolved again.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    discover_interval: humantime::Duration,
    /// The cluster token: nodes present it to join, and the gateway
    /// presents it on every call it sends a node (default: a random token,
    /// printed once at start).
    #[arg(long, env = "MADRPC_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Read the cluster token from FILE, and again on SIGHUP: writing a new
    /// token and sending SIGHUP revokes the old one.
    #[arg(long, value_name = "FILE")]
    join_token_file: Option<PathBuf>,
    /// Let any node that reaches the gateway join, with no token (and
    /// present none to nodes). Only for a network you fully trust.
    #[arg(long, conflicts_with = "join_token_file")]
    insecure_open_join: bool,
    /// Networks nodes may be in, e.g. 10.0.0.0/8 (repeatable; default:
    /// anywhere). Nodes must then be given by IP address.
    #[arg(long = "node-network", value_name = "CIDR")]
    node_networks: Vec<ipnet::IpNet>,
    /// The largest result a node may send back, e.g. 4MiB; a longer reply
    /// fails the node.
    #[arg(long, value_name = "SIZE", default_value = "4MiB")]
    max_result: bytesize::ByteSize,
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
    #[command(flatten)]
    jobs: super::job_flags::JobFlags,
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
    /// On Ctrl-C or SIGTERM, longest to wait for the calls in flight (and
    /// their sub-calls) before exiting; a second signal exits at once.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub drain_timeout: humantime::Duration,
    /// Most bytes the result cache of functions registered with
    /// `{ cache: '60s' }` may hold, least recently used out first; 0 turns
    /// the cache off.
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    pub cache_size: bytesize::ByteSize,
    /// The secret `madrpc deploy` must present to ship a new module
    /// version or roll back (default: none, and deploys are refused).
    #[arg(long, env = "MADRPC_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl GatewayFlags {
    /// The admin token, refused when empty (an empty secret would match an
    /// empty credential).
    pub fn admin_token(&self) -> anyhow::Result<Option<String>> {
        match &self.admin_token {
            Some(token) if token.trim().is_empty() => anyhow::bail!(
                "the admin token is empty; give a secret (openssl rand -hex 32), or leave --admin-token out to keep deploys off"
            ),
            token => Ok(token.clone()),
        }
    }

    /// `--cache-size` in bytes.
    pub fn cache_bytes(&self) -> usize {
        usize::try_from(self.cache_size.as_u64()).unwrap_or(usize::MAX)
    }
}

impl GatewayArgs {
    fn config(&self, join_token: Option<String>) -> anyhow::Result<GatewayConfig> {
        let endpoint = self.endpoint.to_limits();
        let edge = self
            .policy
            .apply(self.listener.edge()?, endpoint.max_body_bytes)?;
        Ok(GatewayConfig {
            listen: self.listen,
            nodes: self.nodes.clone(),
            health_interval: self.gateway.health_interval.into(),
            call_timeout: self.gateway.call_timeout.into(),
            endpoint,
            join_token,
            node_networks: self.node_networks.clone(),
            max_result_bytes: usize::try_from(self.max_result.as_u64()).unwrap_or(usize::MAX),
            edge,
            drain_timeout: self.gateway.drain_timeout.into(),
            cache_bytes: self.gateway.cache_bytes(),
            admin_token: self.gateway.admin_token()?,
            modules_dir: self.modules_dir(),
        })
    }
}

impl GatewayArgs {
    /// Where deployed versions are kept: `modules/` under the data
    /// directory, once deploys are on. A default directory that cannot be
    /// created keeps them in memory (with a warning); a restart then
    /// serves no deployed version until the next deploy.
    fn modules_dir(&self) -> Option<PathBuf> {
        self.gateway.admin_token.as_ref()?;
        let dir = self
            .jobs
            .data_dir
            .clone()
            .unwrap_or_else(super::job_flags::default_data_dir)
            .join("modules");
        if self.jobs.data_dir.is_none()
            && let Err(error) = std::fs::create_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), %error, "cannot keep deployed modules on disk; a restart will serve none until the next deploy");
            return None;
        }
        Some(dir)
    }
}

/// Where the cluster token comes from.
enum TokenSource {
    Given,
    File(PathBuf),
    Generated,
    Open,
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    args.trust.apply()?;
    // Checked here rather than by clap, whose message would name
    // --join-token when only MADRPC_JOIN_TOKEN is set.
    if args.join_token.is_some() && (args.insecure_open_join || args.join_token_file.is_some()) {
        anyhow::bail!(
            "a join token is given (--join-token or MADRPC_JOIN_TOKEN) along with {}; use one source of the token",
            if args.insecure_open_join {
                "--insecure-open-join"
            } else {
                "--join-token-file"
            }
        );
    }
    let (token, source) = if args.insecure_open_join {
        (None, TokenSource::Open)
    } else if let Some(file) = &args.join_token_file {
        (Some(read_token(file)?), TokenSource::File(file.clone()))
    } else if let Some(token) = &args.join_token {
        anyhow::ensure!(
            !token.is_empty(),
            "the join token is empty; give a secret, or leave --join-token out to get a random one"
        );
        (Some(token.clone()), TokenSource::Given)
    } else {
        (
            Some(madrpc::cluster::random_token()),
            TokenSource::Generated,
        )
    };
    let config = args.config(token.clone())?;
    super::edge::reload_on_hangup(&config.edge);
    let scheme = config.edge.scheme();
    let max_body_bytes = config.endpoint.max_body_bytes;
    let gateway = Gateway::bind(config).await?;
    let gateway = args.jobs.start(gateway, max_body_bytes).await?;
    if !args.discover.is_empty() {
        tokio::spawn(discover::run(
            gateway.registry(),
            args.discover.clone(),
            args.discover_interval.into(),
            NodePolicy {
                networks: args.node_networks.clone(),
            },
        ));
    }
    let addr = gateway.local_addr();
    println!("madrpc gateway listening on {scheme}://{addr}");
    match source {
        TokenSource::Generated => {
            let token = token.unwrap_or_default();
            println!("join token: {token}");
            println!(
                "start a node with: MADRPC_JOIN_TOKEN={token} madrpc node --module app.wasm --join {scheme}://{addr}"
            );
        }
        TokenSource::Open => tracing::warn!(
            "--insecure-open-join: any node that can reach this gateway may join and receive calls"
        ),
        TokenSource::File(file) => {
            tokio::spawn(reload_on_hangup(file, gateway.cluster_token()));
        }
        TokenSource::Given => {}
    }
    gateway.serve(shutdown_requested()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The token in `file`: its content without surrounding whitespace.
fn read_token(file: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the join token file {}", file.display()))?;
    let token = token.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "the join token file {} is empty; write the token into it",
        file.display()
    );
    Ok(token.to_owned())
}

/// Re-reads the token file on every SIGHUP. A file that cannot be read
/// keeps the current token.
async fn reload_on_hangup(file: PathBuf, token: Arc<ClusterToken>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; the join token file will not be re-read");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            match read_token(&file) {
                Ok(new) => {
                    token.set(Some(new));
                    tracing::info!(file = %file.display(), "join token reloaded; nodes with the old token drop out");
                }
                Err(error) => tracing::error!("{error:#}; keeping the current join token"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, token);
}
