//! `madrpc serve script.js|app.wasm [--nodes N] [--listen ADDR]`: the whole
//! grid on one machine. Builds the script if needed and runs a gateway with
//! N local nodes: worker pools in this process, which the gateway balances
//! over exactly as it does remote nodes but without a network hop. Every
//! call still runs in its own sandbox; a separate process per node would
//! only add an HTTP exchange per call on the same cores. Sub-calls go from
//! a local node straight into the balancer, without a socket. On Ctrl-C or
//! SIGTERM the gateway stops taking calls and finishes those in flight,
//! with all their sub-calls. With `--watch` it rebuilds the script when
//! it changes and deploys the new version to its local nodes (see
//! `watch`).

use super::edge::{ListenerArgs, PolicyArgs};
use super::endpoint::EndpointArgs;
use super::gateway::GatewayFlags;
use super::limits::{AdmissionArgs, LimitArgs};
use super::signal::shutdown_requested;
use anyhow::Context;
use clap::Args;
use madrpc::gateway::{Gateway, GatewayConfig};
use madrpc::node::WorkerPool;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `madrpc serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A `.js` script (built first) or a module built by `madrpc build`.
    module: PathBuf,
    /// How many local nodes to run (default: the machine's cores).
    #[arg(long)]
    nodes: Option<usize>,
    /// Calls each node runs at once (default: cores / nodes, at least 1).
    #[arg(long)]
    workers: Option<usize>,
    /// The gateway's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Rebuild the script when it changes and switch the grid to the new
    /// version without a failed call; a build error keeps the old version
    /// serving.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    gateway: GatewayFlags,
    #[command(flatten)]
    admission: AdmissionArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    listener: ListenerArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    jobs: super::job_flags::JobFlags,
}

impl ServeArgs {
    fn nodes(&self) -> usize {
        self.nodes.unwrap_or_else(super::cores).max(1)
    }

    fn sizing(&self) -> madrpc::node::Sizing {
        let workers = self
            .workers
            .unwrap_or_else(|| (super::cores() / self.nodes()).max(1));
        self.admission.sizing(workers)
    }

    /// The blocking threads the grid needs: one for every call its local
    /// nodes admit.
    pub fn blocking_threads(&self) -> usize {
        self.admission.blocking_threads(self.sizing(), self.nodes())
    }
}

/// Runs the grid until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.watch || madrpc::build::is_script(&args.module),
        "--watch rebuilds a script: give serve the .js file, not a built module"
    );
    let workdir = tempfile::Builder::new().prefix("madrpc-serve").tempdir()?;
    let module = prepare_module(&args.module, workdir.path()).await?;
    let wasm =
        std::fs::read(&module).with_context(|| format!("cannot read {}", module.display()))?;

    let nodes = args.nodes();
    let sizing = args.sizing();
    let workers = sizing.workers;
    let limits = args.limits.to_limits();
    // All local nodes share one runtime, and so its instance slots.
    let slots = args.admission.instance_slots(sizing, nodes);
    let runtime = super::limits::node_runtime(&limits, slots)?;
    let instances = Arc::new(tokio::sync::Semaphore::new(slots as usize));
    let loaded = super::load_module(&runtime, &module).await?;
    let methods = loaded.methods().to_vec();

    // The local nodes run in this process, so no other node needs to join:
    // a random token nobody knows keeps the join route closed.
    let join_token = madrpc::cluster::random_token();
    let endpoint = args.endpoint.to_limits();
    let max_body_bytes = endpoint.max_body_bytes;
    let edge = args
        .policy
        .apply(args.listener.edge()?, endpoint.max_body_bytes)?;
    super::edge::reload_on_hangup(&edge);
    let scheme = edge.scheme();
    let gateway = Gateway::bind(GatewayConfig {
        listen: args.listen,
        nodes: Vec::new(),
        health_interval: args.gateway.health_interval.into(),
        call_timeout: args.gateway.call_timeout.into(),
        endpoint,
        join_token: Some(join_token),
        node_networks: Vec::new(),
        max_result_bytes: limits.max_result_bytes,
        edge,
        drain_timeout: args.gateway.drain_timeout.into(),
        cache_bytes: args.gateway.cache_bytes(),
        admin_token: args.gateway.admin_token()?,
        // What serve starts with is the script it is given: deploys to it
        // last as long as the process.
        modules_dir: None,
    })
    .await?;
    let url = format!("{scheme}://{}", gateway.local_addr());
    let registry = gateway.registry();
    for _ in 0..nodes {
        // Sub-calls go straight into the gateway's balancer, which spreads
        // them over all the local nodes without a socket.
        let route = gateway.subcall_route();
        registry.add_local(Arc::new(WorkerPool::new(
            runtime.clone(),
            loaded.clone(),
            limits.clone(),
            sizing,
            instances.clone(),
            route,
        )));
    }

    let deployments = gateway.deployments();
    let version = madrpc::modules::Version::check(wasm.into())?;
    deployments.start_with(Arc::new(version))?;
    let watcher = args.watch.then(|| {
        tokio::spawn(super::watch::run(
            args.module.clone(),
            deployments,
            registry,
        ))
    });

    let gateway = args.jobs.start(gateway, max_body_bytes).await?;

    print_banner(&url, nodes, workers, &methods);
    if args.watch {
        println!("watching {} for changes", args.module.display());
    }
    // Ctrl-C or SIGTERM: stop accepting, finish the calls in flight, exit.
    gateway.serve(shutdown_requested()).await?;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    Ok(ExitCode::SUCCESS)
}

/// The module to serve: built into `workdir` when given a script.
async fn prepare_module(path: &Path, workdir: &Path) -> anyhow::Result<PathBuf> {
    if !madrpc::build::is_script(path) {
        return Ok(path.to_owned());
    }
    let script = path.to_owned();
    let built = tokio::task::spawn_blocking(move || madrpc::build::build_file(&script)).await??;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into());
    let output = workdir.join(format!("{stem}.wasm"));
    std::fs::write(&output, &built.wasm)
        .with_context(|| format!("cannot write {}", output.display()))?;
    tracing::info!(script = %path.display(), methods = ?built.manifest.methods, "built");
    Ok(output)
}

fn print_banner(url: &str, nodes: usize, workers: usize, methods: &[String]) {
    let example = methods.first().map(String::as_str).unwrap_or("method");
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    println!(
        "madrpc is serving at {url}/ ({}, {} each)",
        plural(nodes, "local node"),
        plural(workers, "worker")
    );
    println!("methods: {}", methods.join(", "));
    println!("try:");
    println!(
        "  curl -s {url}/ -H 'Content-Type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"method\":\"{example}\",\"params\":{{}},\"id\":1}}'"
    );
    println!("  madrpc call --url {url}/ {example} '{{}}'");
    println!("Ctrl-C stops the grid after the calls in flight finish.");
}
