//! `madrpc.call` across a real grid: concurrency, nesting, errors and the
//! budgets every sub-call inherits.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::grid::{Grid, Process, client, eventually, get_json, rpc};

async fn call(grid: &Grid, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    rpc(&client(), &format!("{}/", grid.gateway.url), &body)
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_calls_run_concurrently_across_nodes() {
    let grid = Grid::start("fanout.js", 2, &["--workers", "1"]).await;
    let reply = call(&grid, "parallel_windows", json!([4, 400])).await;
    let windows = reply["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(windows.len(), 4);
    let spans: Vec<(i64, i64)> = windows
        .iter()
        .map(|w| (w["start"].as_i64().unwrap(), w["end"].as_i64().unwrap()))
        .collect();
    let overlapping = spans
        .iter()
        .enumerate()
        .flat_map(|(i, a)| spans[i + 1..].iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.0 < b.1 && b.0 < a.1)
        .count();
    assert!(
        overlapping >= 1,
        "sub-calls ran one after another: {spans:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_fan_out_completes_on_a_two_slot_node() {
    let grid = Grid::start("fanout.js", 1, &["--workers", "2"]).await;
    let started = Instant::now();
    let reply = call(&grid, "tree", json!([3, 10])).await;
    assert_eq!(reply["result"], 1000, "{reply}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        call(&grid, "sync_double_plus_one", json!([20])).await["result"],
        41
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_sub_call_rejects_with_code_and_message() {
    let grid = Grid::start("fanout.js", 1, &[]).await;
    assert_eq!(
        call(&grid, "catch_failure", json!([])).await["result"],
        json!({"caught": true, "name": "RpcError", "code": -32000, "message": "Error: leaf failed"})
    );
    assert_eq!(
        call(&grid, "catch_sync_failure", json!([])).await["result"],
        json!({"code": -32000, "message": "Error: leaf failed"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_and_count_limits_stop_runaway_calls() {
    let grid = Grid::start("fanout.js", 1, &[]).await;
    let reply = call(&grid, "deepest", json!([0])).await;
    assert_eq!(
        reply["result"],
        json!({"depth": 8, "code": -32020}),
        "{reply}"
    );
    let reply = call(&grid, "recurse_forever", json!([0])).await;
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("call depth limit of 8"), "{message}");
    assert!(!message.contains("RpcError: RpcError"), "{message}");

    let reply = call(&grid, "too_many", json!([1100])).await;
    assert_eq!(
        reply["result"],
        json!({"fulfilled": 1000, "rejected": 100, "code": -32021}),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_deadline_stops_its_looping_sub_call() {
    let grid = Grid::start("fanout.js", 2, &[]).await;
    let http = client();
    let body = r#"{"jsonrpc":"2.0","method":"wait_on_spin","id":1}"#;
    let request = hyper::Request::post(format!("{}/", grid.gateway.url))
        .header("content-type", "application/json")
        .header("x-madrpc-deadline-ms", "200")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let started = Instant::now();
    let response = http.request(request).await.unwrap();
    let elapsed = started.elapsed();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["error"]["code"], -32003, "{reply}");
    assert!(
        elapsed >= Duration::from_millis(195),
        "answered early: {elapsed:?}"
    );
    // Far from the sub-call's own 10 s deadline; the margin absorbs a busy
    // machine.
    assert!(
        elapsed < Duration::from_millis(200 + 800),
        "answered late: {elapsed:?}"
    );

    // The looping sub-call is gone: nothing in flight on any node, and the
    // nodes' CPU time stops growing.
    let idle = eventually(Duration::from_secs(2), || async {
        let mut in_flight = 0;
        for node in &grid.nodes {
            in_flight += get_json(&http, &format!("{}/health", node.url)).await["in_flight"]
                .as_u64()
                .unwrap();
        }
        in_flight == 0
    })
    .await;
    assert!(
        idle,
        "a sub-call is still running after its parent's deadline"
    );
    let before: Vec<u64> = grid.nodes.iter().map(cpu_ticks).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<u64> = grid.nodes.iter().map(cpu_ticks).collect();
    for (b, a) in before.iter().zip(&after) {
        // 500 ms of a spinning core would be ~50 ticks; idle heartbeats are a few.
        assert!(a - b < 15, "a node kept burning CPU: {b} -> {a} ticks");
    }
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(process: &Process) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.child.id())).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_matches_the_batches_called_one_by_one() {
    let grid = Grid::start_example("monte_carlo.js", 2, &[]).await;
    let http = client();
    let url = grid.url();
    let samples = 2000;
    let aggregate = rpc(&http, &url, &json!({"jsonrpc": "2.0", "method": "aggregate", "params": {"batches": 50, "samples": samples}, "id": 1}).to_string()).await.json();
    let (mut inside, mut total) = (0, 0);
    for seed in 0..50 {
        let part = rpc(&http, &url, &json!({"jsonrpc": "2.0", "method": "monte_carlo_sample", "params": {"seed": seed, "samples": samples}, "id": seed}).to_string()).await.json();
        inside += part["result"]["inside"].as_i64().unwrap();
        total += part["result"]["total"].as_i64().unwrap();
    }
    assert_eq!(aggregate["result"]["inside"], inside, "{aggregate}");
    assert_eq!(aggregate["result"]["total"], total);
    assert_eq!(total, 50 * samples);
}

#[tokio::test(flavor = "multi_thread")]
async fn word_count_fans_out_and_merges() {
    let grid = Grid::start_example("word_count.js", 1, &[]).await;
    let http = client();
    let text = "the cat and the hat and the bat ".repeat(10);
    let reply = rpc(&http, &grid.url(), &json!({"jsonrpc": "2.0", "method": "count_words", "params": {"text": text, "chunks": 4, "top": 2}, "id": 1}).to_string()).await.json();
    assert_eq!(
        reply["result"],
        json!({"words": 80, "unique": 5, "chunks": 4, "top": {"the": 30, "and": 20}}),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_fans_out_over_its_local_nodes() {
    let script = support::script("fanout.js");
    let serve = Process::start(
        &support::grid::serve_args(&script, &["--nodes", "2", "--workers", "1"]),
        "madrpc is serving at ",
    );
    let url = format!("{}/", serve.url);
    let body = json!({"jsonrpc": "2.0", "method": "tree", "params": [3, 10], "id": 1}).to_string();
    let reply = rpc(&client(), &url, &body).await.json();
    assert_eq!(reply["result"], 1000, "{reply}");
    let body = json!({"jsonrpc": "2.0", "method": "catch_failure", "id": 2}).to_string();
    let reply = rpc(&client(), &url, &body).await.json();
    assert_eq!(reply["result"]["caught"], true, "{reply}");
    assert_eq!(reply["result"]["name"], "RpcError", "{reply}");
}

#[test]
fn run_fans_out_locally_too() {
    let dir = tempfile::tempdir().unwrap();
    let script = support::script("fanout.js");
    let output = support::run_cli(
        dir.path(),
        &["run", script.to_str().unwrap(), "tree", "[2, 10]"],
    );
    let (stdout, stderr) = support::texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "100");
}

#[tokio::test(flavor = "multi_thread")]
async fn fuel_and_memory_limits_apply_to_every_sub_call() {
    let grid = Grid::start(
        "fanout.js",
        1,
        &["--fuel", "3000000000", "--memory", "32MiB"],
    )
    .await;
    assert_eq!(
        call(&grid, "code_of", json!(["spin"])).await["result"],
        -32001
    );
    assert_eq!(
        call(&grid, "code_of", json!(["bomb"])).await["result"],
        -32002
    );
    assert_eq!(
        call(&grid, "code_of", json!(["double"])).await["result"],
        Value::Null
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_call_batch_the_gateway_refuses_whole_gets_the_gateways_error() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "fanout.js");
    let gateway = Process::gateway(&["--max-body", "4KiB"]);
    let _node = Process::node(&module, &["--join", &gateway.url]);
    let http = client();
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30))
            .await
    );
    let url = format!("{}/", gateway.url);
    let padded = |size: u64| {
        let url = url.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "method": "call_padded", "params": ["length", size], "id": 1});
            rpc(&client(), &url, &body.to_string()).await.json()
        }
    };
    // The node's sub-call batch is larger than the gateway takes: every
    // entry gets the gateway's own error, not an overload.
    let reply = padded(8000).await;
    assert_eq!(reply["result"]["code"], -32007, "{reply}");
    assert_eq!(reply["result"]["kind"], "body_too_large", "{reply}");
    // Within the limit, the same call goes through.
    assert_eq!(padded(100).await["result"]["result"], 100);
}
