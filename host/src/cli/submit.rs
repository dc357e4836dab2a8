//! `madrpc submit METHOD [JSON] [--wait]`: submits a durable job and
//! prints its id; with `--wait`, the result once it has finished.

use super::job::{Api, JobClientArgs};
use clap::Args;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Arguments of `madrpc submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The function to run.
    method: String,
    /// The params as JSON: an array is spread as arguments, an object is the
    /// single argument, any other value is the single positional argument.
    params: Option<String>,
    /// Wait for the job to finish and print its result (the id goes to
    /// stderr).
    #[arg(long)]
    wait: bool,
    /// Submitting again with the same key returns the same job instead of
    /// running the work twice.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    client: JobClientArgs,
}

/// Prints the job id (and with `--wait` the result, or the error with exit
/// status 1).
pub async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut body = json!({ "method": args.method });
    if let Some(text) = &args.params {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("the params are not valid JSON: {e}"))?;
        body["params"] = if value.is_array() || value.is_object() {
            value
        } else {
            Value::Array(vec![value])
        };
    }
    let api = Api::new(&args.client)?;
    let headers: Vec<(&str, String)> = args
        .idempotency_key
        .iter()
        .map(|key| ("idempotency-key", key.clone()))
        .collect();
    let (_, answer) = api
        .send(hyper::Method::POST, "", Some(body.to_string()), &headers)
        .await?;
    let id = answer["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the gateway answered without a job id: {answer}"))?
        .to_owned();
    if !args.wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("job {id}");
    let job = api.wait(&id, args.client.timeout.into()).await?;
    if job["state"] == "succeeded" {
        println!("{}", job["result"]);
        return Ok(ExitCode::SUCCESS);
    }
    let error = &job["error"];
    eprintln!(
        "job {id} {}: error {}: {}",
        job["state"].as_str().unwrap_or("failed"),
        error["code"],
        error["message"].as_str().unwrap_or("no message")
    );
    if let Some(stack) = error["data"]["stack"].as_str() {
        eprintln!("{}", stack.trim_end());
    }
    Ok(ExitCode::FAILURE)
}
