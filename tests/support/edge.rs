//! What the security tests share: `madrpc serve` of the grid test script,
//! JSON-RPC posts with extra headers, new API keys made with the CLI, and
//! checks of a reply's result or error.

use super::grid::{HttpReply, Process};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::Path;

pub const ADD: &str = r#"{"jsonrpc":"2.0","method":"add","params":[40,2],"id":7}"#;

/// `madrpc serve` of the grid test script with extra flags.
pub fn serve(dir: &Path, extra: &[&str]) -> Process {
    let module = super::build_into(dir, "grid.js");
    let module = module.to_str().expect("UTF-8 path").to_owned();
    let mut args = vec![
        "serve",
        module.as_str(),
        "--nodes",
        "1",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Process::start(&args, "madrpc is serving at ")
}

/// POSTs a JSON-RPC body with extra headers.
pub async fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> HttpReply {
    try_post(url, body, headers)
        .await
        .unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
}

/// [`post`] that reports a failed exchange instead of panicking.
pub async fn try_post(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Result<HttpReply, String> {
    let mut request = hyper::Request::post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a request");
    let response = super::grid::client()
        .request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    Ok(HttpReply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.map_err(|e| e.to_string())?.to_bytes(),
    })
}

/// `madrpc keys new NAME --file FILE ...`, returning the secret.
pub fn new_key(file: &Path, name: &str, extra: &[&str]) -> String {
    let file = file.to_str().expect("UTF-8 path");
    let mut args = vec!["keys", "new", name, "--file", file];
    args.extend_from_slice(extra);
    let output = super::run_cli(Path::new("."), &args);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout holds the secret alone: {stdout:?}");
    lines[0].to_owned()
}

/// The result of a reply that must be HTTP 200.
pub fn result_of(reply: &HttpReply) -> serde_json::Value {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["result"].clone()
}

pub fn assert_error(reply: &HttpReply, status: u16, code: i64, kind: &str) {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let json = reply.json();
    assert_eq!(json["error"]["code"], code, "{json}");
    assert_eq!(json["error"]["data"]["kind"], kind, "{json}");
}
