//! `madrpc serve script.js|app.wasm [--nodes N] [--listen ADDR]`: the whole
//! grid on one machine. Builds the script if needed, starts a gateway in
//! this process and N node processes that join it, restarts a node that
//! dies, and on Ctrl-C or SIGTERM drains the gateway before stopping the
//! nodes.

use super::endpoint::EndpointArgs;
use super::gateway::GatewayFlags;
use super::limits::LimitArgs;
use super::signal::shutdown_requested;
use anyhow::{Context, bail};
use clap::Args;
use madrpc::gateway::{Gateway, GatewayConfig};
use madrpc::runtime::{Runtime, RuntimeConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Arguments of `madrpc serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A `.js` script (built first) or a module built by `madrpc build`.
    module: PathBuf,
    /// How many node processes to run (default: the machine's cores).
    #[arg(long)]
    nodes: Option<usize>,
    /// Calls each node runs at once (default: cores / nodes, at least 1).
    #[arg(long)]
    workers: Option<usize>,
    /// The gateway's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    gateway: GatewayFlags,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// How long the nodes get to start and join.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node gets to finish its calls after SIGTERM.
const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the grid until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let workdir = tempfile::Builder::new().prefix("madrpc-serve").tempdir()?;
    let (module, methods) = prepare_module(&args.module, workdir.path()).await?;

    let nodes = args.nodes.unwrap_or_else(super::cores).max(1);
    let workers = args
        .workers
        .unwrap_or_else(|| (super::cores() / nodes).max(1));
    // Only the nodes this command starts may join its gateway; they get the
    // token through their environment, not their command line.
    let join_token: String = {
        use rand::RngExt;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| format!("{:x}", rng.random_range(0..16u8)))
            .collect()
    };
    let gateway = Gateway::bind(GatewayConfig {
        listen: args.listen,
        nodes: Vec::new(),
        health_interval: args.gateway.health_interval.into(),
        call_timeout: args.gateway.call_timeout.into(),
        endpoint: args.endpoint.to_limits(),
        join_token: Some(join_token.clone()),
    })
    .await?;
    let url = format!("http://{}", gateway.local_addr());
    let registry = gateway.registry();

    let (stop_gateway, gateway_stopped) = watch::channel(false);
    let gateway_task = tokio::spawn(gateway.serve(wait_true(gateway_stopped)));

    let mut node_args = vec![
        "node".to_owned(),
        "--module".to_owned(),
        module.display().to_string(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--join".to_owned(),
        url.clone(),
        "--workers".to_owned(),
        workers.to_string(),
    ];
    node_args.extend(args.limits.to_args());
    node_args.extend(args.endpoint.to_args());

    let (stop_nodes, nodes_stopping) = watch::channel(false);
    let supervisors: Vec<_> = (0..nodes)
        .map(|index| {
            tokio::spawn(supervise(
                index,
                node_args.clone(),
                join_token.clone(),
                nodes_stopping.clone(),
            ))
        })
        .collect();

    let started = tokio::select! {
        ready = tokio::time::timeout(STARTUP_TIMEOUT, registry.wait_for_available(nodes)) => ready.is_ok(),
        _ = shutdown_requested() => false,
    };
    if started {
        print_banner(&url, nodes, workers, &methods);
        shutdown_requested().await;
    } else {
        tracing::error!(nodes, "the nodes did not all start; stopping");
    }

    // Drain the gateway first (it stops accepting and finishes the calls in
    // flight, which still need their nodes), then stop the nodes.
    let _ = stop_gateway.send(true);
    gateway_task.await??;
    let _ = stop_nodes.send(true);
    for supervisor in supervisors {
        supervisor.await?;
    }
    if !started {
        bail!("the grid did not start: see the node errors above");
    }
    Ok(ExitCode::SUCCESS)
}

/// The module to serve: built into `workdir` when given a script. Loaded
/// once here so a bad module is reported before any node starts, and so
/// the nodes find it compiled in the cache.
async fn prepare_module(path: &Path, workdir: &Path) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let is_script = madrpc::build::is_script(path);
    let module = if is_script {
        let script = path.to_owned();
        let built =
            tokio::task::spawn_blocking(move || madrpc::build::build_file(&script)).await??;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "app".into());
        let output = workdir.join(format!("{stem}.wasm"));
        std::fs::write(&output, &built.wasm)
            .with_context(|| format!("cannot write {}", output.display()))?;
        tracing::info!(script = %path.display(), methods = ?built.manifest.methods, "built");
        output
    } else {
        path.to_owned()
    };
    let check = module.clone();
    let methods = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: 1,
            ..RuntimeConfig::default()
        })?;
        let loaded = runtime
            .load_file(&check)
            .with_context(|| format!("cannot load {}", check.display()))?;
        Ok(loaded.methods().to_vec())
    })
    .await??;
    Ok((module, methods))
}

/// Runs node `index`, restarting it (after a pause) whenever it exits
/// before the grid stops; on stop, sends SIGTERM and waits for it.
async fn supervise(
    index: usize,
    args: Vec<String>,
    join_token: String,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let mut child = match spawn_node(&args, &join_token) {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(node = index, %error, "cannot start a node process");
                return;
            }
        };
        let exited = tokio::select! {
            status = child.wait() => Some(status),
            _ = stopping.wait_for(|s| *s) => None,
        };
        let Some(status) = exited else {
            stop_node(index, &mut child).await;
            return;
        };
        if *stopping.borrow() {
            return;
        }
        tracing::error!(node = index, status = ?status.ok(), "node process exited; restarting it in 1 s");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

fn spawn_node(args: &[String], join_token: &str) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .env("MADRPC_JOIN_TOKEN", join_token)
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    {
        // Own process group: a terminal's Ctrl-C reaches only `serve`, which
        // drains the gateway before stopping the nodes. And if `serve` dies
        // without cleaning up, the kernel stops the nodes.
        command.process_group(0);
        // SAFETY: prctl is async-signal-safe and touches only this child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command.spawn()
}

async fn stop_node(index: usize, child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(NODE_STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(node = index, "node did not stop in time; killing it");
        let _ = child.kill().await;
    }
}

async fn wait_true(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|value| *value).await;
}

fn print_banner(url: &str, nodes: usize, workers: usize, methods: &[String]) {
    let example = methods.first().map(String::as_str).unwrap_or("method");
    println!("madrpc is serving at {url}/ ({nodes} nodes, {workers} workers each)");
    println!("methods: {}", methods.join(", "));
    println!("try:");
    println!(
        "  curl -s {url}/ -H 'Content-Type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"method\":\"{example}\",\"params\":{{}},\"id\":1}}'"
    );
    println!("  madrpc call --url {url}/ {example} '{{}}'");
    println!("Ctrl-C stops the grid after the calls in flight finish.");
}
