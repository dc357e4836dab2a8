//! The README's error table, row by row, through HTTP JSON-RPC: each error
//! is caused the way a user would cause it, and its code, `data.kind`, HTTP
//! status and documented `data` fields are checked.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::fake_node::{FakeNode, Reply};
use support::grid::{HttpReply, Process, client, eventually, get_json, post, rpc, spawn_rpc};
use support::logged::Logged;

const FUEL: u64 = 2_000_000_000;
const MEMORY: u64 = 64 << 20;

/// `madrpc serve tests/scripts/errors.js` with small limits, so that each
/// one is quick to reach.
fn serve(extra: &[&str]) -> Logged {
    let script = support::script("errors.js");
    let fuel = FUEL.to_string();
    let memory = MEMORY.to_string();
    let mut args = support::grid::serve_args(
        &script,
        &[
            "--nodes",
            "1",
            "--workers",
            "2",
            "--fuel",
            &fuel,
            "--memory",
            &memory,
            "--max-params",
            "1KiB",
            "--max-result",
            "1KiB",
            "--max-body",
            "4KiB",
            "--max-batch",
            "5",
            "--max-depth",
            "3",
            "--max-subcalls",
            "5",
        ],
    );
    args.extend_from_slice(extra);
    Logged::start(&args, &[], "madrpc is serving at ")
}

fn request(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 7}).to_string()
}

/// Checks the reply is the error `code`/`kind` with HTTP `status`, and
/// returns its `data`.
fn expect_error(reply: &HttpReply, status: u16, code: i64, kind: &str) -> Value {
    let value = reply.json();
    assert_eq!(reply.status, status, "{value}");
    assert_eq!(value["jsonrpc"], "2.0", "{value}");
    assert_eq!(value["error"]["code"], code, "{value}");
    assert_eq!(value["error"]["data"]["kind"], kind, "{value}");
    let message = value["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.len() > 20,
        "a message that says what to do: {value}"
    );
    value["error"]["data"].clone()
}

async fn call(url: &str, method: &str, params: Value) -> HttpReply {
    rpc(&client(), &format!("{url}/"), &request(method, params)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_and_request_rows() {
    let serve = serve(&[]);
    let http = client();
    let url = format!("{}/", serve.url);

    let reply = rpc(&http, &url, "{not json").await;
    expect_error(&reply, 400, -32700, "parse_error");
    assert_eq!(reply.json()["id"], Value::Null);

    for bad in [
        "[]",
        r#"{"method":"add","id":1}"#,
        r#"{"jsonrpc":"2.0","method":5,"id":1}"#,
        r#"{"jsonrpc":"2.0","method":"add","id":{"an":"object"}}"#,
    ] {
        let reply = rpc(&http, &url, bad).await;
        expect_error(&reply, 400, -32600, "invalid_request");
    }
    let reply = post(&http, &url, "text/plain", request("add", json!([1, 2])))
        .await
        .unwrap();
    expect_error(&reply, 415, -32600, "invalid_request");

    let data = expect_error(
        &call(&serve.url, "nope", json!([])).await,
        200,
        -32601,
        "method_not_found",
    );
    assert!(
        data["available"]
            .as_array()
            .unwrap()
            .contains(&json!("add"))
    );
    expect_error(
        &call(&serve.url, "rpc.reserved", json!([])).await,
        200,
        -32601,
        "method_not_found",
    );

    let reply = call(&serve.url, "add", json!(5)).await;
    expect_error(&reply, 200, -32602, "invalid_params");
    assert_eq!(reply.json()["id"], 7);

    let data = expect_error(
        &call(&serve.url, "echo", json!(["p".repeat(2000)])).await,
        200,
        -32007,
        "params_too_large",
    );
    assert_eq!(data["limit_bytes"], 1024);
    assert!(data["size"].as_u64().unwrap() > 2000, "{data}");

    let data = expect_error(
        &call(&serve.url, "big_result", json!([2000])).await,
        200,
        -32007,
        "result_too_large",
    );
    assert_eq!(data["limit_bytes"], 1024);
    assert_eq!(data["size"], 2002);

    let data = expect_error(
        &call(&serve.url, "echo", json!(["b".repeat(5000)])).await,
        413,
        -32007,
        "body_too_large",
    );
    assert_eq!(data["limit_bytes"], 4096);

    let batch = Value::Array(vec![
        json!({"jsonrpc":"2.0","method":"add","params":[1,2],"id":1});
        6
    ]);
    let data = expect_error(
        &rpc(&http, &url, &batch.to_string()).await,
        413,
        -32008,
        "batch_too_large",
    );
    assert_eq!(data["limit"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_and_limit_rows() {
    let serve = serve(&[]);
    let url = serve.url.as_str();

    let data = expect_error(
        &call(url, "fail", json!([])).await,
        200,
        -32000,
        "guest_threw",
    );
    assert_eq!(data["name"], "TypeError");
    assert_eq!(data["message"], "deliberate failure");
    assert!(
        data["stack"].as_str().unwrap().contains("errors.js:7:"),
        "{data}"
    );

    let data = expect_error(
        &call(url, "spin", json!([])).await,
        200,
        -32001,
        "fuel_exhausted",
    );
    assert_eq!(data["limit"], FUEL);

    let data = expect_error(
        &call(url, "bomb", json!([])).await,
        200,
        -32002,
        "memory_exceeded",
    );
    assert_eq!(data["limit_bytes"], MEMORY);

    // A client's tighter deadline, with fuel to spare.
    let http = client();
    let request = hyper::Request::post(format!("{url}/"))
        .header("content-type", "application/json")
        .header("x-madrpc-deadline-ms", "50")
        .body(http_body_util::Full::new(bytes::Bytes::from(request(
            "spin",
            json!([]),
        ))))
        .unwrap();
    let response = http.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["error"]["code"], -32003, "{value}");
    assert_eq!(
        value["error"]["data"]["kind"], "deadline_exceeded",
        "{value}"
    );
    // The deadline that applied: what was left of the client's 50 ms when
    // the call started.
    let limit_ms = value["error"]["data"]["limit_ms"].as_u64().unwrap();
    assert!((1..=50).contains(&limit_ms), "{value}");

    expect_error(
        &call(url, "deep", json!([])).await,
        200,
        -32004,
        "stack_overflow",
    );

    for method in ["returns_function", "returns_bigint"] {
        expect_error(
            &call(url, method, json!([])).await,
            200,
            -32005,
            "not_serializable",
        );
    }
    expect_error(
        &call(url, "never_settles", json!([])).await,
        200,
        -32005,
        "never_settled",
    );

    // Each breach ended only its own call.
    assert_eq!(call(url, "add", json!([2, 3])).await.json()["result"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_stops_abnormally_is_guest_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("crash.wasm");
    std::fs::write(&module, support::wasm::crashing_module()).unwrap();
    let serve = Logged::start(
        &support::grid::serve_args(&module, &["--nodes", "1"]),
        &[],
        "madrpc is serving at ",
    );
    for _ in 0..2 {
        let reply = call(&serve.url, "crash", json!([])).await;
        expect_error(&reply, 200, -32006, "guest_crashed");
        let message = reply.json()["error"]["message"].to_string();
        assert!(message.contains("unreachable"), "{message}");
    }
    // The crash ended only its own call: the node still serves.
    let nodes = get_json(&client(), &format!("{}/v1/nodes", serve.url)).await;
    assert_eq!(nodes["nodes"][0]["available"], true, "{nodes}");
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_and_sub_call_limits_reach_the_client_with_their_own_code() {
    let serve = serve(&[]);
    let url = serve.url.as_str();

    let data = expect_error(
        &call(url, "recurse_forever", json!([0])).await,
        200,
        -32020,
        "call_depth_exceeded",
    );
    assert_eq!(data["limit"], 3);
    let data = expect_error(
        &call(url, "fan_out", json!([6])).await,
        200,
        -32021,
        "too_many_subcalls",
    );
    assert_eq!(data["limit"], 5);
    // One level further up, the limit still reaches the client as itself.
    let data = expect_error(
        &call(url, "nested_fan_out", json!([6])).await,
        200,
        -32021,
        "too_many_subcalls",
    );
    assert_eq!(data["limit"], 5);
    assert_eq!(
        call(url, "fan_out", json!([5])).await.json()["result"],
        json!([1, 2, 3, 4, 5])
    );

    // Caught, the same errors are ordinary RpcErrors with their code.
    assert_eq!(
        call(url, "call_and_catch", json!(["fan_out", [6]]))
            .await
            .json()["result"],
        json!({"name": "RpcError", "code": -32021, "kind": "too_many_subcalls"})
    );
    assert_eq!(
        call(url, "call_and_catch", json!(["recurse_forever", [0]]))
            .await
            .json()["result"],
        json!({"name": "RpcError", "code": -32020, "kind": "call_depth_exceeded"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_sub_call_errors_that_escape_keep_their_cause() {
    let serve = serve(&[]);
    let url = serve.url.as_str();
    for method in ["call_and_let_escape", "call_sync_and_let_escape"] {
        let data = expect_error(
            &call(url, method, json!(["fail"])).await,
            200,
            -32000,
            "guest_threw",
        );
        assert_eq!(data["name"], "RpcError", "{data}");
        assert_eq!(data["message"], "TypeError: deliberate failure", "{data}");
        assert_eq!(data["cause"]["code"], -32000, "{data}");
        assert_eq!(data["cause"]["kind"], "guest_threw", "{data}");
        assert_eq!(data["cause"]["name"], "TypeError", "{data}");
        assert!(data["cause"].get("stack").is_none(), "{data}");

        let data = expect_error(
            &call(url, method, json!(["spin"])).await,
            200,
            -32000,
            "guest_threw",
        );
        assert_eq!(
            data["cause"],
            json!({"code": -32001, "kind": "fuel_exhausted", "limit": FUEL})
        );

        let data = expect_error(
            &call(url, method, json!(["nope"])).await,
            200,
            -32000,
            "guest_threw",
        );
        assert_eq!(data["cause"]["code"], -32601, "{data}");
        assert_eq!(data["cause"]["kind"], "method_not_found", "{data}");
    }
    // A thrown error of the function's own has no cause.
    let data = expect_error(
        &call(url, "fail", json!([])).await,
        200,
        -32000,
        "guest_threw",
    );
    assert!(data.get("cause").is_none(), "{data}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_whose_caller_went_away_is_cancelled_and_logged() {
    let serve = serve(&["--deadline", "30s"]);
    let http = client();
    // A slow call whose client disconnects while it runs.
    let pending = spawn_rpc(
        &http,
        &format!("{}/", serve.url),
        &request("busy", json!([20000])),
    );
    let running = eventually(Duration::from_secs(10), || async {
        get_json(&http, &format!("{}/v1/nodes", serve.url)).await["nodes"][0]["in_flight"] == 1
    })
    .await;
    assert!(running, "the slow call never started");
    pending.abort();
    let line = serve.wait_for(
        |l| l.contains("kind=\"cancelled\"") || l.contains("kind=cancelled"),
        Duration::from_secs(5),
    );
    let line = line.unwrap_or_else(|| panic!("no cancellation logged:\n{}", serve.output()));
    assert!(line.contains("busy"), "{line}");
    let idle = eventually(Duration::from_secs(5), || async {
        get_json(&http, &format!("{}/v1/nodes", serve.url)).await["nodes"][0]["in_flight"] == 0
    })
    .await;
    assert!(idle, "the cancelled call kept running");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_rows() {
    let http = client();

    // No node at all.
    let gateway = Process::gateway(&["--node", "http://127.0.0.1:9"]);
    let reply = call(&gateway.url, "add", json!([1, 2])).await;
    expect_error(&reply, 503, -32011, "no_healthy_node");
    assert_eq!(reply.headers["retry-after"], "1");
    drop(gateway);

    // A node that closes the connection without replying is the only one.
    let fake = FakeNode::start(&["add"], vec![], Reply::Close).await;
    let gateway = Process::gateway(&["--node", &fake.url]);
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(10))
            .await
    );
    expect_error(
        &call(&gateway.url, "add", json!([1, 2])).await,
        200,
        -32012,
        "node_failed",
    );
    assert_eq!(fake.calls(), 1);

    // A node answering something that is not madrpc's: the node failed.
    fake.plan(vec![], Reply::Http(500, "<html>oops</html>"));
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(10))
            .await
    );
    let reply = call(&gateway.url, "add", json!([1, 2])).await;
    expect_error(&reply, 200, -32012, "node_failed");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(!message.contains("oops"), "{message}");
    assert_eq!(fake.calls(), 2);

    // A node reporting a failure of its own (a worker thread that died)
    // in the node protocol: -32603 reaches the client as the node sent it.
    fake.plan(
        vec![],
        Reply::Http(
            422,
            r#"{"code":-32603,"message":"Internal error: a worker failed: the thread panicked; report it","data":{"kind":"internal"}}"#,
        ),
    );
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(40))
            .await
    );
    let reply = call(&gateway.url, "add", json!([1, 2])).await;
    expect_error(&reply, 200, -32603, "internal");
    assert_eq!(fake.calls(), 3);
    drop(gateway);

    // A full node: the gateway passes its overload on, with Retry-After.
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "errors.js");
    let gateway = Process::gateway(&[]);
    let node = Process::node(
        &module,
        &["--join", &gateway.url, "--workers", "1", "--queue", "0"],
    );
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30))
            .await
    );
    let slow = spawn_rpc(
        &http,
        &format!("{}/", gateway.url),
        &request("busy", json!([1500])),
    );
    let busy = eventually(Duration::from_secs(10), || async {
        get_json(&http, &format!("{}/health", node.url)).await["in_flight"] == 1
    })
    .await;
    assert!(busy);
    let reply = call(&gateway.url, "add", json!([1, 2])).await;
    let data = expect_error(&reply, 503, -32010, "overloaded");
    assert_eq!(data["retry_after_secs"], 1);
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(slow.await.unwrap().json()["result"], 1500);
    // It was not sent again: the node ran only the slow call.
    assert_eq!(
        get_json(&http, &format!("{}/health", node.url)).await["served"],
        1
    );
}
