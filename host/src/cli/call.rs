//! `madrpc call [--url URL]... METHOD [JSON]`.

use super::edge::TrustArgs;
use clap::Args;
use madrpc::client::{ClientError, RpcClient};
use std::process::ExitCode;

/// Arguments of `madrpc call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The gateway (or node) to call. Repeat it (or give a comma-separated
    /// list) for several gateways of one grid: a call goes to the first
    /// that can take it.
    #[arg(
        long = "url",
        env = "MADRPC_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080/",
        value_name = "URL"
    )]
    urls: Vec<String>,
    /// The function to call.
    method: String,
    /// The params as JSON: an array is spread as arguments, an object is the
    /// single argument, any other value is the single positional argument.
    params: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    timeout: humantime::Duration,
    /// The API key, when the grid requires one.
    #[arg(long, env = "MADRPC_KEY", hide_env_values = true)]
    key: Option<String>,
    #[command(flatten)]
    trust: TrustArgs,
}

/// Prints the result, or the error (exit status 1).
pub async fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = args
        .urls
        .iter()
        .find(|url| !(url.starts_with("http://") || url.starts_with("https://")))
    {
        anyhow::bail!(
            "--url must be an http:// or https:// URL, for example http://127.0.0.1:8080/ (got '{url}')"
        );
    }
    args.trust.apply()?;
    let mut client = RpcClient::with_failover(args.urls, args.timeout.into());
    if let Some(key) = args.key {
        client = client.with_key(key);
    }
    match client.call(&args.method, args.params.as_deref()).await {
        Ok(result) => {
            println!("{result}");
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Rpc(error)) => {
            eprintln!("error {}: {}", error.code, error.message);
            if error.code == madrpc::rpc::codes::UNAUTHORIZED {
                eprintln!("hint: pass the key with --key or MADRPC_KEY");
            }
            if let Some(stack) = error
                .data
                .as_ref()
                .and_then(|d| d.get("stack"))
                .and_then(|s| s.as_str())
            {
                eprintln!("{}", stack.trim_end());
            }
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
