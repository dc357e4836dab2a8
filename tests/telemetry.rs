//! Operating a grid: `/metrics` in the Prometheus text format counts the
//! calls made; request ids and W3C trace context reach every log line a
//! call causes, on the gateway, on the node and in its sub-calls;
//! `--log-format json` writes one JSON object per line; `--quiet` drops
//! the access log; `/ready` answers 503 while draining, with no healthy
//! node, or with no free capacity; `_metrics` and `_info` answer as the
//! original MaDRPC did.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::grid::{Process, TEST_TOKEN, client, eventually, post_with, rpc, spawn_rpc};
use support::logged::Logged;

fn body(method: &str, params: Value, id: u64) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id}).to_string()
}

/// A call of a built-in, which takes no params.
fn builtin(method: &str, id: u64) -> String {
    json!({"jsonrpc": "2.0", "method": method, "id": id}).to_string()
}

fn serve(extra: &[&str]) -> Logged {
    let script = support::script("telemetry.js");
    let mut args = vec![
        "serve",
        script.to_str().unwrap(),
        "--nodes",
        "2",
        "--workers",
        "1",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Logged::start(&args, &[], "madrpc is serving at ")
}

async fn get(url: &str) -> (u16, String) {
    let http = client();
    let (status, _, body) = madrpc::http::get(&http, url, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

/// The value of the series `name` whose labels include every one of
/// `labels` (`key="value"`), or `None` when there is none.
fn series(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let Some(rest) = line.strip_prefix(name) else {
                return false;
            };
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|label| {
                    rest.split('}')
                        .next()
                        .is_some_and(|set| set.contains(label))
                })
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_the_calls_made_and_label_no_request_id() {
    let grid = serve(&[]);
    let url = format!("{}/", grid.url);
    let http = client();
    for i in 0..5 {
        let reply = post_with(
            &http,
            &url,
            "application/json",
            &[("x-request-id", "secret-request-7")],
            body("add", json!([i, 1000]), i),
        )
        .await
        .unwrap();
        assert_eq!(reply.json()["result"], i + 1000);
    }
    for i in 0..3 {
        let reply = rpc(&http, &url, &body("fail", json!({"token": "params-9"}), i)).await;
        assert_eq!(reply.json()["error"]["data"]["kind"], "guest_threw");
    }
    let (status, text) = get(&format!("{}/metrics", grid.url)).await;
    assert_eq!(status, 200);
    let count = |name, labels: &[&str]| series(&text, name, labels).unwrap_or(-1.0);
    assert_eq!(
        count(
            "madrpc_gateway_calls_total",
            &["method=\"add\"", "kind=\"ok\""]
        ),
        5.0,
        "{text}"
    );
    assert_eq!(
        count(
            "madrpc_gateway_calls_total",
            &["method=\"fail\"", "kind=\"guest_threw\""]
        ),
        3.0
    );
    assert_eq!(
        count(
            "madrpc_gateway_call_duration_seconds_count",
            &["method=\"add\""]
        ),
        5.0
    );
    assert_eq!(
        count(
            "madrpc_gateway_call_duration_seconds_bucket",
            &["method=\"add\"", "le=\"+Inf\""]
        ),
        5.0
    );
    for histogram in [
        "madrpc_runtime_call_fuel_consumed_count",
        "madrpc_runtime_call_peak_memory_bytes_count",
        "madrpc_runtime_instantiation_duration_seconds_count",
    ] {
        assert_eq!(count(histogram, &["method=\"add\""]), 5.0, "{histogram}");
    }
    assert!(
        count(
            "madrpc_runtime_call_peak_memory_bytes_sum",
            &["method=\"add\""]
        ) > 5.0 * 65536.0
    );
    assert_eq!(count("madrpc_gateway_nodes", &["state=\"available\""]), 2.0);
    assert_eq!(count("madrpc_node_workers", &["node=\"local:0\""]), 1.0);
    assert_eq!(count("madrpc_node_queue_depth", &["node=\"local:1\""]), 0.0);
    assert!(text.contains("# TYPE madrpc_gateway_call_duration_seconds histogram"));
    assert!(
        !text.contains("secret-request-7"),
        "a request id in a label"
    );
    assert!(!text.contains("params-9"), "params in a label");

    // The original MaDRPC's built-ins answer on the JSON-RPC endpoint.
    let metrics = rpc(&http, &url, &builtin("_metrics", 1)).await.json();
    let metrics = &metrics["result"];
    assert_eq!(metrics["total_requests"], 8);
    assert_eq!(metrics["failed_requests"], 3);
    assert_eq!(metrics["methods"]["add"]["call_count"], 5);
    assert_eq!(metrics["methods"]["fail"]["failure_count"], 3);
    assert!(
        metrics["methods"]["add"]["p99_latency_us"]
            .as_u64()
            .unwrap()
            > 0
    );
    let info = rpc(&http, &url, &builtin("_info", 2)).await.json();
    assert_eq!(info["result"]["server_type"], "orchestrator");
    assert_eq!(info["result"]["total_nodes"], 2);
    assert_eq!(info["result"]["nodes"][0]["addr"], "local:0");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_and_traces_reach_gateway_node_and_sub_call_lines() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "telemetry.js");
    let token = [("MADRPC_JOIN_TOKEN", TEST_TOKEN)];
    let gateway = Logged::start(
        &support::grid::gateway_args(&[]),
        &token,
        "madrpc gateway listening on ",
    );
    let node = Logged::start(
        &[
            "--log-format",
            "json",
            "node",
            "--module",
            module.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--heartbeat",
            "200ms",
            "--join",
            &gateway.url,
        ],
        &token,
        "madrpc node listening on ",
    );
    let http = client();
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30))
            .await
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = post_with(
        &http,
        &format!("{}/", gateway.url),
        "application/json",
        &[
            ("x-request-id", "req-telemetry-42"),
            ("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01")),
        ],
        body("parent", json!([21]), 1),
    )
    .await
    .unwrap();
    assert_eq!(reply.json()["result"], 42);
    assert_eq!(reply.headers["x-request-id"], "req-telemetry-42");

    // The gateway logs both calls, the client's and the sub-call the node
    // sent back through it, with the id and the trace.
    let wait = Duration::from_secs(10);
    for method in ["parent", "child"] {
        let line = gateway
            .wait_for(
                |l| l.contains(": call ") && l.contains(&format!("method=\"{method}\"")),
                wait,
            )
            .unwrap_or_else(|| panic!("no access line for {method}:\n{}", gateway.output()));
        assert!(line.contains("request_id=req-telemetry-42"), "{line}");
        assert!(line.contains(trace_id), "{line}");
        assert!(line.contains("outcome=\"ok\""), "{line}");
    }

    // On the node, in JSON: the sub-call's console line carries them too.
    let console = node
        .wait_for(|l| l.contains("in child 21"), wait)
        .unwrap_or_else(|| panic!("no console line:\n{}", node.output()));
    let console: Value = serde_json::from_str(&console).expect("a JSON log line");
    assert_eq!(console["span"]["request_id"], "req-telemetry-42");
    assert_eq!(console["span"]["trace_id"], trace_id);
    assert_eq!(console["fields"]["message"], "in child 21");
    let access = node
        .wait_for(
            |l| l.contains("\"method\":\"parent\"") && l.contains("\"outcome\":\"ok\""),
            wait,
        )
        .unwrap_or_else(|| panic!("no node access line:\n{}", node.output()));
    let access: Value = serde_json::from_str(&access).unwrap();
    assert_eq!(access["span"]["request_id"], "req-telemetry-42");
    assert_eq!(access["fields"]["node"], node.url.as_str());
    // Every log line is one JSON object (the banner on stdout is not a log line).
    for line in node.matching(|l| !l.starts_with("madrpc node listening on")) {
        serde_json::from_str::<Value>(&line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
    }

    // A call without an id gets one, and the reply names it.
    let reply = rpc(
        &http,
        &format!("{}/", gateway.url),
        &body("add", json!([1, 2]), 2),
    )
    .await;
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        gateway
            .wait_for(|l| l.contains(&format!("request_id={id}")), wait)
            .is_some()
    );

    // The node's own /metrics counts what it ran.
    let (_, text) = get(&format!("{}/metrics", node.url)).await;
    assert_eq!(
        series(
            &text,
            "madrpc_node_calls_total",
            &["method=\"parent\"", "kind=\"ok\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "madrpc_node_calls_total",
            &["method=\"child\"", "kind=\"ok\""]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_tried_inline_and_run_again_on_a_worker_logs_its_console_once() {
    // Client calls are first tried on the receiving thread; one that makes
    // a sub-call or runs long starts over on a worker. What it printed
    // before must not show twice, nor its sub-calls run twice.
    let grid = serve(&[]);
    let http = client();
    let url = format!("{}/", grid.url);
    for round in 0..3 {
        let parent = rpc(&http, &url, &body("parent", json!([round]), 1)).await;
        assert_eq!(parent.json()["result"], round * 2, "{}", parent.json());
        let busy = rpc(&http, &url, &body("log_then_busy", json!([20 + round]), 2)).await;
        assert_eq!(busy.json()["result"], 20 + round, "{}", busy.json());
    }
    // Lines are written in order: once a later call's access line is
    // there, every console line of the calls before it is too.
    let add = rpc(&http, &url, &body("add", json!([1, 2]), 3)).await;
    assert_eq!(add.json()["result"], 3);
    let last = grid.wait_for(
        |l| l.contains("method=\"add\"") && l.contains("outcome="),
        Duration::from_secs(10),
    );
    assert!(last.is_some(), "{}", grid.output());
    for round in 0..3 {
        for line in [
            "in parent".to_owned(),
            format!("in child {round}"),
            format!("before busy {}", 20 + round),
        ] {
            let count = grid.matching(|l| l.contains(&line)).len();
            let expected = if line == "in parent" { 3 } else { 1 };
            assert_eq!(count, expected, "{line}: {}", grid.output());
        }
    }
    let metrics = rpc(&http, &url, &builtin("_metrics", 4)).await;
    assert_eq!(
        metrics.json()["result"]["methods"]["child"]["call_count"],
        3,
        "{}",
        metrics.json()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_turns_the_access_log_off() {
    let grid = serve(&["--quiet"]);
    let http = client();
    let reply = rpc(
        &http,
        &format!("{}/", grid.url),
        &body("child", json!([5]), 1),
    )
    .await;
    assert_eq!(reply.json()["result"], 10);
    // The console line is logged; the access line after it is not.
    assert!(
        grid.wait_for(|l| l.contains("in child 5"), Duration::from_secs(10))
            .is_some()
    );
    let metrics = rpc(&http, &format!("{}/", grid.url), &builtin("_metrics", 2)).await;
    assert_eq!(
        metrics.json()["result"]["methods"]["child"]["call_count"],
        1
    );
    assert!(
        grid.matching(|l| l.contains("outcome=")).is_empty(),
        "{}",
        grid.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_is_503_without_nodes_while_draining_and_without_capacity() {
    let http = client();
    // A gateway with no node is alive but not ready.
    let gateway = Process::gateway(&[]);
    let (status, text) = get(&format!("{}/ready", gateway.url)).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("no healthy node"), "{text}");

    // A node with one worker and no queue is not ready while it is busy.
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "telemetry.js");
    let node = Process::node(
        &module,
        &["--join", &gateway.url, "--workers", "1", "--queue", "0"],
    );
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30))
            .await
    );
    assert_eq!(get(&format!("{}/ready", gateway.url)).await.0, 200);
    assert_eq!(get(&format!("{}/ready", node.url)).await.0, 200);
    let busy = spawn_rpc(
        &http,
        &format!("{}/", gateway.url),
        &body("busy", json!([1500]), 1),
    );
    let full = eventually(Duration::from_secs(5), || async {
        get(&format!("{}/ready", node.url))
            .await
            .1
            .contains("no free capacity")
    })
    .await;
    assert!(full, "the busy node never reported no free capacity");
    assert_eq!(get(&format!("{}/health", node.url)).await.0, 200);
    assert_eq!(busy.await.unwrap().json()["result"], 1500);
    assert_eq!(get(&format!("{}/ready", node.url)).await.0, 200);

    // A draining `serve` is not ready while its last call finishes.
    let grid = serve(&[]);
    let url = grid.url.clone();
    let slow = spawn_rpc(&http, &format!("{url}/"), &body("busy", json!([1500]), 2));
    let running = eventually(Duration::from_secs(5), || async {
        let info = rpc(&http, &format!("{url}/"), &builtin("_info", 3)).await;
        info.json()["result"]["nodes"]
            .as_array()
            .is_some_and(|nodes| nodes.iter().any(|n| n["in_flight"] == 1))
    })
    .await;
    assert!(running);
    grid.signal(libc::SIGTERM);
    let draining = eventually(Duration::from_secs(5), || async {
        let (status, text) = get(&format!("{url}/ready")).await;
        status == 503 && text.contains("draining")
    })
    .await;
    assert!(draining, "/ready never said draining");
    assert_eq!(slow.await.unwrap().json()["result"], 1500);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_counted_by_key_name_and_never_by_secret() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let keys = keys.to_str().unwrap();
    let output = support::run_cli(
        dir.path(),
        &[
            "keys", "new", "team-a", "--file", keys, "--rate", "1/min", "--burst", "1",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let secret = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let grid = serve(&["--keys", keys]);
    let url = format!("{}/", grid.url);
    let http = client();
    let call = body("add", json!([1, 2]), 1);
    let anonymous = post_with(&http, &url, "application/json", &[], call.clone())
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    let bearer = format!("Bearer {secret}");
    let auth = [("authorization", bearer.as_str())];
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = post_with(&http, &url, "application/json", &auth, call.clone())
            .await
            .unwrap();
        statuses.push(reply.status);
    }
    assert_eq!(statuses, [200, 429, 429]);
    let (_, text) = get(&format!("{}/metrics", grid.url)).await;
    assert_eq!(
        series(&text, "madrpc_edge_unauthorized_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "madrpc_edge_rate_limited_total", &["key=\"team-a\""]),
        Some(2.0)
    );
    assert!(!text.contains(&secret), "a secret in the metrics");
    // The one admitted call is attributed to the key in the access log.
    assert!(
        grid.wait_for(
            |l| l.contains(": call ") && l.contains("key=\"team-a\""),
            Duration::from_secs(10)
        )
        .is_some(),
        "{}",
        grid.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_node_is_counted_as_ejected_and_its_call_as_retried() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "telemetry.js");
    // Health checks far apart: the calls, not a check, find the dead node.
    let gateway = Process::start_with_env(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--health-interval",
            "10s",
        ],
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc gateway listening on ",
    );
    let mut nodes: Vec<Process> = (0..2)
        .map(|_| Process::node(&module, &["--join", &gateway.url]))
        .collect();
    let http = client();
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 2, Duration::from_secs(30))
            .await
    );
    let url = format!("{}/", gateway.url);
    let mut ok = 0;
    for i in 0..20 {
        let reply = rpc(&http, &url, &body("add", json!([i, 1]), i)).await;
        assert_eq!(reply.json()["result"], i + 1);
        ok += 1;
    }
    let dead = nodes[0].url.clone();
    nodes[0].signal(libc::SIGKILL);
    let _ = nodes[0].child.wait();
    for i in 0..20 {
        let reply = rpc(&http, &url, &body("add", json!([i, 1]), i))
            .await
            .json();
        if reply["result"] == i + 1 {
            ok += 1;
        } else {
            assert_eq!(reply["error"]["data"]["kind"], "node_failed", "{reply}");
        }
    }
    let (_, text) = get(&format!("{}/metrics", gateway.url)).await;
    let value = |name, labels: &[&str]| series(&text, name, labels).unwrap_or(0.0);
    let node_label = format!("node=\"{dead}\"");
    assert!(
        value("madrpc_gateway_ejections_total", &[&node_label]) >= 1.0,
        "{text}"
    );
    assert!(
        value("madrpc_gateway_retries_total", &[])
            + value("madrpc_gateway_retries_denied_total", &[])
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(
            "madrpc_gateway_calls_total",
            &["method=\"add\"", "kind=\"ok\""]
        ),
        f64::from(ok)
    );
}
