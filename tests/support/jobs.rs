//! Talking to the job API of a real process: submitting, reading and
//! awaiting jobs over HTTP, and the module the job tests run.

use super::grid::{HttpReply, client};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::time::Duration;

/// `tests/scripts/jobs.js`, built once for every test of this binary.
pub fn module() -> &'static std::path::Path {
    static MODULE: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    let (_, path) = MODULE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = super::build_into(dir.path(), "jobs.js");
        (dir, path)
    });
    path
}

/// One request to the job API; panics when it gets no answer within 60 s.
pub async fn request(
    method: hyper::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> HttpReply {
    let mut builder = hyper::Request::builder().method(method).uri(url);
    if body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        client().request(builder.body(Full::new(Bytes::from(body))).unwrap()),
    )
    .await
    .unwrap_or_else(|_| panic!("{url} did not answer within 60 s"))
    .unwrap_or_else(|e| panic!("{url}: {e:?}"));
    let (parts, body) = response.into_parts();
    HttpReply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.expect("a body").to_bytes(),
    }
}

pub async fn submit(base: &str, body: Value) -> String {
    let reply = request(
        hyper::Method::POST,
        &format!("{base}/v1/jobs"),
        &[],
        Some(body),
    )
    .await;
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let answer = reply.json();
    assert_eq!(answer["state"], "queued");
    answer["id"].as_str().expect("an id").to_owned()
}

pub async fn get_job(base: &str, id: &str, wait: &str) -> HttpReply {
    request(
        hyper::Method::GET,
        &format!("{base}/v1/jobs/{id}?wait={wait}"),
        &[],
        None,
    )
    .await
}

/// The job once finished (waiting up to 30 s).
pub async fn finished(base: &str, id: &str) -> Value {
    let job = get_job(base, id, "30s").await.json();
    assert!(
        ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")),
        "the job did not finish: {job}"
    );
    job
}
