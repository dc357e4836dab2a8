//! `madrpc deploy app.js|app.wasm --url GATEWAY [--admin-token T]` and
//! `madrpc deploy --rollback --url GATEWAY`: ships a module version to a
//! running grid (a script is built first), waits until the grid has
//! switched to it, and prints its id. `--history` lists the versions the
//! grid keeps.

use super::edge::TrustArgs;
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use madrpc::progress::Progress;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `madrpc deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// A `.js` script (built first) or a module built by `madrpc build`.
    #[arg(
        required_unless_present_any = ["rollback", "history"],
        conflicts_with_all = ["rollback", "history"]
    )]
    module: Option<PathBuf>,
    /// Switch back to the version before the current one.
    #[arg(long, conflicts_with = "history")]
    rollback: bool,
    /// List the versions the grid keeps, the current one marked `*`.
    #[arg(long)]
    history: bool,
    /// The gateway (or `serve`) to deploy to.
    #[arg(
        long,
        env = "MADRPC_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    url: String,
    /// The grid's admin token, as its gateway was given it.
    #[arg(long, env = "MADRPC_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[command(flatten)]
    trust: TrustArgs,
}

/// The deploy's answer, as the gateway sends it.
#[derive(Debug, serde::Deserialize)]
struct Activated {
    id: String,
    script: String,
    methods: Vec<String>,
    previous: Option<String>,
    nodes: usize,
}

/// Deploys or rolls back, and prints what serves now.
pub async fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    args.trust.apply()?;
    // A comma-separated MADRPC_URL (see `madrpc call`) names one grid.
    let base = args
        .url
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .trim_end_matches('/')
        .to_owned();
    anyhow::ensure!(
        base.starts_with("http://") || base.starts_with("https://"),
        "--url must be an http:// or https:// URL, for example http://127.0.0.1:8080 (got '{base}')"
    );
    if args.history {
        return history(&base).await;
    }
    let (url, body, what) = match &args.module {
        Some(path) => {
            let wasm = module_bytes(path).await?;
            let what = format!("deploying {} to {base}", path.display());
            (format!("{base}/v1/modules"), wasm, what)
        }
        None => (
            format!("{base}/v1/modules/rollback"),
            Bytes::new(),
            format!("rolling {base} back"),
        ),
    };
    let mut headers = Vec::new();
    if let Some(token) = &args.admin_token {
        headers.push(("authorization", format!("Bearer {token}")));
    }
    // The gateway answers once every node holds the version.
    let timeout = madrpc::gateway::deploy::DEPLOY_TIMEOUT + Duration::from_secs(30);
    let reply = {
        let _progress = Progress::start(format!("{what}: waiting for every node to load it"));
        madrpc::http::post_with(
            &madrpc::http::client(),
            &url,
            "application/wasm",
            body,
            timeout,
            &headers,
        )
        .await
    };
    let (status, _, body) = reply.map_err(|error| {
        anyhow::anyhow!("cannot reach the grid at {base} ({error}); is it running? Check --url")
    })?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|error| error["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                format!(
                    "HTTP {status}: {}; is {base} a madrpc gateway?",
                    String::from_utf8_lossy(&body)
                )
            });
        anyhow::bail!("{message}");
    }
    let done: Activated = serde_json::from_slice(&body)
        .with_context(|| format!("the grid at {base} answered something other than a deploy"))?;
    println!("{}", done.id);
    eprintln!(
        "{} {} ({}) on {} node{}: {}{}",
        if args.rollback {
            "rolled back to"
        } else {
            "deployed"
        },
        &done.id[..12.min(done.id.len())],
        done.script,
        done.nodes,
        if done.nodes == 1 { "" } else { "s" },
        done.methods.join(", "),
        done.previous
            .map(|p| format!("; previous {}", &p[..12.min(p.len())]))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the versions the grid keeps, newest first.
async fn history(base: &str) -> anyhow::Result<ExitCode> {
    let url = format!("{base}/v1/modules");
    let (status, _, body) =
        madrpc::http::get(&madrpc::http::client(), &url, Duration::from_secs(30))
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot reach the grid at {base} ({error}); is it running? Check --url"
                )
            })?;
    anyhow::ensure!(
        status.is_success(),
        "the grid at {base} answered {status} to GET /v1/modules; is it a madrpc gateway of this version?"
    );
    let listed: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("the grid at {base} answered something other than a list"))?;
    let versions = listed["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        eprintln!("no version deployed on {base} yet");
    }
    for version in versions {
        let id = version["id"].as_str().unwrap_or("");
        let deployed = version["deployed_at"]
            .as_u64()
            .map(|secs| {
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs))
                    .to_string()
            })
            .unwrap_or_else(|| "-".into());
        let methods: Vec<&str> = version["methods"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m.as_str()).collect())
            .unwrap_or_default();
        println!(
            "{} {}  {}  {}  {}",
            if version["current"] == true { "*" } else { " " },
            &id[..12.min(id.len())],
            deployed,
            version["script"].as_str().unwrap_or(""),
            methods.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The module to ship: built when given a script (its errors say
/// `file:line:column`).
async fn module_bytes(path: &std::path::Path) -> anyhow::Result<Bytes> {
    if !madrpc::build::is_script(path) {
        let wasm =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(Bytes::from(wasm));
    }
    let script = path.to_owned();
    let _progress = Progress::start(format!("building {}", path.display()));
    let built = tokio::task::spawn_blocking(move || madrpc::build::build_file(&script)).await??;
    Ok(Bytes::from(built.wasm))
}
