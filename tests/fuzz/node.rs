//! A node's call route, and a gateway in front of a node, under arbitrary
//! requests.

use crate::json::value;
use crate::parser::request_body;
use crate::support::grid::{Process, TEST_TOKEN};
use crate::{KINDS, Tape, fuzz_http, fuzz_tokio, support};
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;
use std::time::Duration;

pub const NODE_LIMITS: &[&str] = &[
    "--fuel",
    "50000000",
    "--deadline",
    "1s",
    "--max-params",
    "64KiB",
    "--max-body",
    "128KiB",
];

fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A header value from the tape: numbers in and out of range, or junk.
fn header_value(tape: &mut Tape) -> Option<String> {
    match tape.below(6) {
        0 => None,
        1 => Some(
            tape.pick(&[
                "0",
                "1",
                "8",
                "4294967295",
                "4294967296",
                "18446744073709551615",
                "99999999999999999999",
                "-1",
                " 3 ",
                "1e3",
            ])
            .to_owned(),
        ),
        2 => Some(tape.below(20_000).to_string()),
        _ => Some(
            String::from_utf8_lossy(tape.take(16))
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .collect(),
        ),
    }
}

/// Checks one reply of the node protocol: marked, a known status, and the
/// body that status promises.
pub fn check_node_reply(
    status: u16,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if headers.get("x-madrpc-node-reply").is_none_or(|v| v != "1") {
        return Err(format!("an unmarked reply: HTTP {status} {text}"));
    }
    match status {
        200 => serde_json::from_slice::<IgnoredAny>(body)
            .map(|_| ())
            .map_err(|e| format!("a result that is not JSON ({e}): {text}")),
        401 | 413 | 422 | 503 => {
            let error: Value = serde_json::from_slice(body)
                .map_err(|e| format!("HTTP {status}, not JSON ({e}): {text}"))?;
            let kind = error["data"]["kind"].as_str().unwrap_or_default();
            if error["code"].as_i64().is_none()
                || !error["message"].is_string()
                || (status != 401 && !KINDS.contains(&kind))
            {
                return Err(format!(
                    "HTTP {status} without a JSON-RPC error object: {text}"
                ));
            }
            Ok(())
        }
        other => Err(format!("HTTP {other} outside the node protocol: {text}")),
    }
}

#[test]
fn node_call_route_answers_arbitrary_requests_in_protocol() {
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(NODE_LIMITS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Process::node(&support::build_into(dir.path(), "sandbox.js"), &args);
    let url = node.url.clone();
    bolero::check!().for_each(|input: &[u8]| {
        let http = fuzz_http();
        let mut tape = Tape::new(input);
        let method: Vec<u8> = match tape.below(3) {
            0 => tape
                .pick(&[
                    "add",
                    "echo",
                    "throws",
                    "throws_string",
                    "spin_for",
                    "big_result",
                    "never_settles",
                    "returns_cycle",
                    "nope",
                    "rpc.discover",
                    "%",
                    "..",
                ])
                .as_bytes()
                .to_vec(),
            // The route needs a segment: `/v1/call/` is no call at all.
            _ => [tape.take(24), b"_"].concat(),
        };
        let body: Vec<u8> = match tape.below(3) {
            0 => tape.take(256).to_vec(),
            _ => value(&mut tape, 3).into_bytes(),
        };
        let mut request =
            hyper::Request::post(format!("{url}/v1/call/{}", percent_encode(&method)))
                .header("content-type", "application/json");
        match tape.below(6) {
            0 => {}
            1 => request = request.header("authorization", "Bearer wrong"),
            _ => request = request.header("authorization", format!("Bearer {TEST_TOKEN}")),
        }
        for name in ["x-madrpc-depth", "x-madrpc-deadline-ms"] {
            if let Some(value) = header_value(&mut tape) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("a request");
        let (status, headers, reply) = fuzz_tokio().block_on(async {
            let response = tokio::time::timeout(Duration::from_secs(10), http.request(request))
                .await
                .expect("the node answers within 10 s")
                .expect("the node is reachable");
            let (parts, body) = response.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .expect("a body")
                .to_bytes();
            (parts.status.as_u16(), parts.headers, body)
        });
        if let Err(problem) = check_node_reply(status, &headers, &reply) {
            panic!("POST /v1/call/{}: {problem}", percent_encode(&method));
        }
    });
    let health = fuzz_tokio().block_on(support::grid::get_json(
        fuzz_http(),
        &format!("{url}/health"),
    ));
    assert_eq!(health["status"], "ok", "{health}");
}

#[test]
fn client_requests_never_take_a_node_out_of_rotation() {
    let grid = fuzz_tokio().block_on(support::grid::Grid::start("sandbox.js", 1, NODE_LIMITS));
    let url = grid.url();
    let gateway = grid.gateway.url.clone();
    bolero::check!().for_each(|input: &[u8]| {
        let http = fuzz_http();
        let mut tape = Tape::new(input);
        let body = request_body(&mut tape);
        let deadline = header_value(&mut tape);
        let depth = header_value(&mut tape);
        fuzz_tokio().block_on(async {
            let mut headers = Vec::new();
            if let Some(value) = &deadline {
                headers.push(("x-madrpc-deadline-ms", value.as_str()));
            }
            if let Some(value) = &depth {
                headers.push(("x-madrpc-depth", value.as_str()));
            }
            let reply =
                support::grid::post_with(http, &url, "application/json", &headers, body.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{body}: {e}"));
            if reply.status != 204 {
                // Ids are echoed byte for byte, so read them as raw JSON.
                #[derive(serde::Deserialize)]
                struct Response<'a> {
                    #[serde(borrow)]
                    #[allow(dead_code)]
                    id: &'a RawValue,
                    error: Option<Value>,
                }
                let text = String::from_utf8_lossy(&reply.body);
                let batch = reply.body.first() == Some(&b'[');
                let replies = if batch {
                    serde_json::from_slice::<Vec<Response>>(&reply.body)
                } else {
                    serde_json::from_slice::<Response>(&reply.body).map(|one| vec![one])
                }
                .unwrap_or_else(|e| panic!("{body}: a reply that is not JSON-RPC ({e}): {text}"));
                for response in replies {
                    let kind = response.error.as_ref().map(|e| e["data"]["kind"].clone());
                    assert!(
                        !matches!(
                            kind.as_ref().and_then(Value::as_str),
                            Some("node_failed" | "no_healthy_node" | "internal")
                        ),
                        "{body} -> {text}"
                    );
                }
            }
            let available = support::grid::available_nodes(http, &gateway).await;
            assert_eq!(available, 1, "{body} took the node out of rotation");
        });
    });
}

#[test]
fn a_method_name_that_is_not_utf8_gets_a_node_protocol_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Process::node(&support::build_into(dir.path(), "sandbox.js"), NODE_LIMITS);
    let request = hyper::Request::post(format!("{}/v1/call/%FF%FE", node.url))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TEST_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"[]")))
        .expect("a request");
    let (status, headers, body) = fuzz_tokio().block_on(async {
        let response = fuzz_http()
            .request(request)
            .await
            .expect("the node answers");
        let (parts, body) = response.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .expect("a body")
            .to_bytes();
        (parts.status.as_u16(), parts.headers, body)
    });
    check_node_reply(status, &headers, &body).unwrap_or_else(|problem| panic!("{problem}"));
    let error: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        (status, &error["data"]["kind"]),
        (422, &Value::from("method_not_found"))
    );
}
