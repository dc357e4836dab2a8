//! The gateway's reading of node replies: a stand-in node answers with
//! arbitrary status, headers and body.

use crate::json::{string, value};
use crate::support::grid::Process;
use crate::{Tape, fuzz_http, fuzz_tokio, support};
use serde_json::Value;
use serde_json::value::RawValue;
use std::time::Duration;

/// `Some` for a member that is present, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// What the stand-in node answers on its call route.
#[derive(Debug, Clone, Default)]
struct NodeReply {
    status: u16,
    mark: Option<&'static str>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

impl NodeReply {
    fn from_tape(tape: &mut Tape) -> Self {
        if tape.below(3) == 0 {
            return Self::arbitrary(tape);
        }
        // Mostly replies of the protocol, which leave the node in rotation.
        let status = tape.pick(&[200, 200, 422, 413]);
        let body = match status {
            200 => value(tape, 4),
            _ => format!(
                r#"{{"code":{},"message":{},"data":{{"kind":"guest_threw","extra":{}}}}}"#,
                tape.pick(&["-32000", "-32001", "-32007", "-1"]),
                string(tape),
                value(tape, 2),
            ),
        };
        Self {
            status,
            mark: Some("1"),
            content_type: Some("application/json"),
            body: body.into_bytes(),
        }
    }

    fn arbitrary(tape: &mut Tape) -> Self {
        let status = tape.pick(&[
            200, 200, 200, 422, 422, 413, 503, 401, 400, 404, 500, 204, 302,
        ]);
        let body = match tape.below(5) {
            0 => tape.take(64).to_vec(),
            1 | 2 => format!(
                r#"{{"code":{},"message":{},"data":{{"kind":{}}}}}"#,
                tape.pick(&[
                    "-32000", "-32001", "-32010", "-32603", "1", "\"x\"", "1e400"
                ]),
                string(tape),
                tape.pick(&[
                    r#""guest_threw""#,
                    r#""fuel_exhausted""#,
                    r#""overloaded""#,
                    "null"
                ]),
            )
            .into_bytes(),
            _ => value(tape, 4).into_bytes(),
        };
        Self {
            status,
            mark: tape.pick(&[Some("1"), Some("1"), Some("1"), Some("0"), None]),
            content_type: tape.pick(&[
                Some("application/json"),
                Some("application/json"),
                Some("Application/JSON; charset=utf-8"),
                Some("text/plain"),
                None,
            ]),
            body,
        }
    }

    /// Whether this is a reply of the node protocol that carries a result.
    fn is_result(&self) -> bool {
        self.status == 200
            && self.mark == Some("1")
            && self
                .content_type
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"))
            && std::str::from_utf8(&self.body)
                .is_ok_and(|t| serde_json::from_str::<&RawValue>(t).is_ok())
    }
}

/// A stand-in for a node: healthy on `/health`, and on its call route
/// whatever the current [`NodeReply`] says.
async fn stand_in_node(reply: std::sync::Arc<std::sync::Mutex<NodeReply>>) -> String {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    let call = move || {
        let reply = reply.lock().unwrap_or_else(|p| p.into_inner()).clone();
        async move {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            let mut response = (status, reply.body).into_response();
            let headers = response.headers_mut();
            headers.remove(header::CONTENT_TYPE);
            if let Some(mark) = reply.mark {
                headers.insert("x-madrpc-node-reply", HeaderValue::from_static(mark));
            }
            if let Some(content_type) = reply.content_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            response
        }
    };
    let health = || async {
        let mut response =
            axum::Json(serde_json::json!({"status": "ok", "methods": ["echo"]})).into_response();
        response
            .headers_mut()
            .insert("x-madrpc-node-reply", HeaderValue::from_static("1"));
        response
    };
    let app = axum::Router::new()
        .route("/health", axum::routing::get(health))
        .route("/v1/call/{method}", axum::routing::post(call));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[test]
fn gateway_passes_on_only_node_protocol_replies() {
    let reply = std::sync::Arc::new(std::sync::Mutex::new(NodeReply {
        status: 200,
        mark: Some("1"),
        content_type: Some("application/json"),
        body: b"1".to_vec(),
    }));
    let node = fuzz_tokio().block_on(stand_in_node(reply.clone()));
    // A gateway that takes the stand-in as its node; a fresh one replaces
    // it once it ejected the node, so the fuzzer does not wait out backoffs.
    let start = || {
        let gateway = Process::gateway(&["--node", &node]);
        let ready = fuzz_tokio().block_on(support::grid::nodes_become_available(
            fuzz_http(),
            &gateway.url,
            1,
            Duration::from_secs(30),
        ));
        assert!(ready, "the stand-in node never became available");
        gateway
    };
    let gateway = std::panic::AssertUnwindSafe(std::sync::Mutex::new(start()));
    let shared = std::panic::AssertUnwindSafe(reply);
    static OUTCOMES: [std::sync::atomic::AtomicUsize; 3] =
        [const { std::sync::atomic::AtomicUsize::new(0) }; 3];
    let count = |i: usize| OUTCOMES[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    bolero::check!().for_each(|input: &[u8]| {
        let next = NodeReply::from_tape(&mut Tape::new(input));
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = next.clone();
        let body = r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":"q"}"#;
        let mut gateway = gateway.lock().unwrap_or_else(|p| p.into_inner());
        let url = format!("{}/", gateway.url);
        let answer = fuzz_tokio().block_on(support::grid::rpc(fuzz_http(), &url, body));
        #[derive(serde::Deserialize)]
        struct Response<'a> {
            #[serde(borrow, default, deserialize_with = "present")]
            result: Option<&'a RawValue>,
            error: Option<Value>,
        }
        let text = String::from_utf8_lossy(&answer.body);
        let response: Response = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{next:?}: a reply that is not JSON-RPC ({e}): {text}"));
        if let Some(result) = response.result {
            assert!(
                next.is_result(),
                "{next:?} reached the client as a result: {text}"
            );
            assert_eq!(
                result.get().as_bytes(),
                String::from_utf8_lossy(&next.body).trim().as_bytes(),
                "{next:?}"
            );
            count(0);
            return;
        }
        let error = response
            .error
            .unwrap_or_else(|| panic!("{next:?}: neither result nor error: {text}"));
        assert!(
            error["code"].is_i64() && error["message"].is_string(),
            "{next:?}: {text}"
        );
        let kind = error["data"]["kind"].as_str().unwrap_or_default();
        if matches!(kind, "node_failed" | "no_healthy_node" | "overloaded") {
            count(2);
            *gateway = start();
        } else {
            count(1);
            // Any other error is the node's own error object, passed on
            // only from an error reply of the protocol.
            assert!(
                matches!(next.status, 413 | 422 | 503) && next.mark == Some("1"),
                "{next:?} -> {text}"
            );
            let sent: Value = serde_json::from_slice(&next.body).expect("the error sent was JSON");
            assert_eq!(error["code"], sent["code"], "{next:?} -> {text}");
        }
    });
    let [results, errors, refusals] = OUTCOMES
        .each_ref()
        .map(|n| n.load(std::sync::atomic::Ordering::Relaxed));
    eprintln!(
        "results passed on: {results}, call errors: {errors}, the gateway's own errors: {refusals}"
    );
}
