//! What the gateway sends again, and what it does not: a call is retried
//! once on another node only when its node failed before replying or no
//! longer held the call's module version; a guest
//! error, a limit breach, an overload or a timeout is final. A failing node
//! is ejected for 1 s, doubling to 30 s, until it succeeds again.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::fake_node::{FakeNode, Reply};
use support::grid::{Process, client, eventually, get_json, nodes_become_available, rpc};
use support::logged::Logged;

fn gateway(extra: &[&str]) -> Logged {
    let args = support::grid::gateway_args(extra);
    Logged::start(
        &args,
        &[("MADRPC_JOIN_TOKEN", support::grid::TEST_TOKEN)],
        "madrpc gateway listening on ",
    )
}

async fn call(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    rpc(&client(), &format!("{url}/"), &body).await.json()
}

/// Calls the nodes ran, by their own count.
async fn served(nodes: &[&Process]) -> u64 {
    let mut total = 0;
    for node in nodes {
        total += get_json(&client(), &format!("{}/health", node.url)).await["served"]
            .as_u64()
            .expect("a served count");
    }
    total
}

/// The `backoff_ms` of every ejection the gateway logged, in order.
/// The backoffs logged at ejection, once at least `expected` were logged: a
/// reply can reach the client before the gateway's log line reaches us.
fn ejections(gateway: &Logged, expected: usize) -> Vec<u64> {
    gateway
        .wait_for_count(
            |l| l.contains("node ejected"),
            expected,
            Duration::from_secs(10),
        )
        .iter()
        .filter_map(|l| l.split("backoff_ms=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_failing_before_its_reply_is_retried_once_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let real = Process::node(&module, &[]);
    let fake = FakeNode::start(&["add"], vec![], Reply::Close).await;
    let gateway = gateway(&["--node", &fake.url, "--node", &real.url]);
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 2, Duration::from_secs(30)).await);

    // Balancing picks either node; call until the failing one got a call.
    let mut calls = 0;
    while fake.calls() == 0 && calls < 100 {
        let reply = call(&gateway.url, "add", json!([calls, 1])).await;
        assert_eq!(reply["result"], calls + 1, "{reply}");
        calls += 1;
    }
    assert_eq!(fake.calls(), 1, "the failing node never got a call");
    let retry = gateway
        .wait_for(
            |l| l.contains("retrying the call on another node"),
            Duration::from_secs(5),
        )
        .expect("the retry is logged");
    assert!(retry.contains(&format!("failed={}", fake.url)), "{retry}");
    assert!(retry.contains(&format!("node={}", real.url)), "{retry}");
    assert_eq!(ejections(&gateway, 1), [1000]);
    // Every call ran exactly once on the real node.
    assert_eq!(served(&[&real]).await, calls as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_errors_and_limit_breaches_are_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "fanout.js");
    let nodes = [
        Process::node(&module, &["--fuel", "1000000000", "--memory", "32MiB"]),
        Process::node(&module, &["--fuel", "1000000000", "--memory", "32MiB"]),
    ];
    let gateway = gateway(&["--node", &nodes[0].url, "--node", &nodes[1].url]);
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 2, Duration::from_secs(30)).await);
    let nodes: Vec<&Process> = nodes.iter().collect();

    let reply = call(&gateway.url, "fail", json!([])).await;
    assert_eq!(reply["error"]["code"], -32000, "{reply}");
    assert_eq!(served(&nodes).await, 1);
    let reply = call(&gateway.url, "spin", json!([])).await;
    assert_eq!(reply["error"]["code"], -32001, "{reply}");
    assert_eq!(served(&nodes).await, 2);
    let reply = call(&gateway.url, "bomb", json!([])).await;
    assert_eq!(reply["error"]["code"], -32002, "{reply}");
    assert_eq!(served(&nodes).await, 3);

    assert!(
        gateway.matching(|l| l.contains("retrying")).is_empty(),
        "{}",
        gateway.output()
    );
    assert_eq!(ejections(&gateway, 0), Vec::<u64>::new());
    assert_eq!(support::grid::available_nodes(&http, &gateway.url).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_timeout_is_neither_retried_nor_held_against_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let nodes = [Process::node(&module, &[]), Process::node(&module, &[])];
    let gateway = gateway(&[
        "--call-timeout",
        "300ms",
        "--node",
        &nodes[0].url,
        "--node",
        &nodes[1].url,
    ]);
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 2, Duration::from_secs(30)).await);
    let nodes: Vec<&Process> = nodes.iter().collect();

    let started = Instant::now();
    let reply = call(&gateway.url, "busy", json!([1500])).await;
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply["error"]["code"], -32003, "{reply}");
    assert_eq!(
        reply["error"]["data"]["kind"], "deadline_exceeded",
        "{reply}"
    );
    assert_eq!(reply["error"]["data"]["limit_ms"], 300, "{reply}");
    assert_eq!(support::grid::available_nodes(&http, &gateway.url).await, 2);
    // The node stops the call when the gateway gives up on it, and nothing
    // sent it again.
    let stopped = eventually(Duration::from_secs(10), || async {
        let mut in_flight = 0;
        for node in &nodes {
            in_flight += get_json(&http, &format!("{}/health", node.url)).await["in_flight"]
                .as_u64()
                .unwrap();
        }
        in_flight == 0
    })
    .await;
    assert!(stopped);
    assert_eq!(served(&nodes).await, 0);
    assert!(
        gateway.matching(|l| l.contains("retrying")).is_empty(),
        "{}",
        gateway.output()
    );
    assert_eq!(ejections(&gateway, 0), Vec::<u64>::new());
    assert_eq!(call(&gateway.url, "add", json!([1, 2])).await["result"], 3);
    assert_eq!(served(&nodes).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ejection_backs_off_from_one_second_and_resets_after_a_success() {
    let fake = FakeNode::start(&["add"], vec![], Reply::Close).await;
    let gateway = gateway(&["--node", &fake.url]);
    let http = client();
    let available = || nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(10));
    assert!(available().await);

    let reply = call(&gateway.url, "add", json!([1, 2])).await;
    assert_eq!(reply["error"]["code"], -32012, "{reply}");
    let ejected = Instant::now();
    assert_eq!(support::grid::available_nodes(&http, &gateway.url).await, 0);
    assert!(available().await);
    let out = ejected.elapsed();
    assert!(out >= Duration::from_millis(1000), "back after {out:?}");

    let reply = call(&gateway.url, "add", json!([1, 2])).await;
    assert_eq!(reply["error"]["code"], -32012, "{reply}");
    let ejected = Instant::now();
    assert!(available().await);
    let out = ejected.elapsed();
    assert!(out >= Duration::from_millis(2000), "back after {out:?}");
    assert_eq!(ejections(&gateway, 2), [1000, 2000]);

    // One success clears the history: the next failure backs off 1 s again.
    fake.plan(vec![Reply::Http(200, "3")], Reply::Close);
    assert_eq!(call(&gateway.url, "add", json!([1, 2])).await["result"], 3);
    let reply = call(&gateway.url, "add", json!([1, 2])).await;
    assert_eq!(reply["error"]["code"], -32012, "{reply}");
    assert_eq!(ejections(&gateway, 3), [1000, 2000, 1000]);
    assert_eq!(fake.calls(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_no_longer_holds_a_calls_version_passes_it_to_one_that_does() {
    use support::load::{module, run_madrpc, source};
    let dir = tempfile::tempdir().unwrap();
    let app = module(dir.path(), "app.js", &source("v1", ""));
    let data = dir.path().join("data");
    let gateway = gateway(&["--admin-token", "adm", "--data-dir", data.to_str().unwrap()]);
    let http = client();
    let _real = Process::node(&app, &["--join", &gateway.url]);
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    let (ok, id, stderr) = run_madrpc(
        vec![
            "deploy".into(),
            app.to_str().unwrap().into(),
            "--url".into(),
            gateway.url.clone(),
        ],
        vec![("MADRPC_ADMIN_TOKEN".into(), "adm".into())],
    )
    .await;
    assert!(ok, "{stderr}");
    // A stand-in node says it holds the version, then refuses every call
    // as a node that just dropped it would.
    let gone = r#"{"code":-32012,"message":"this node does not hold module version","data":{"kind":"module_unavailable"}}"#;
    let fake = FakeNode::start(&["version"], Vec::new(), Reply::Http(422, gone)).await;
    let summary = json!({"hash": id.trim(), "methods": ["version"]});
    let announcement =
        json!({"url": fake.url, "methods": ["version"], "module": summary, "loaded": [summary]});
    let join = format!("{}/v1/nodes", gateway.url);
    let heartbeats = tokio::spawn(async move {
        let http = client();
        let auth = format!("Bearer {}", support::grid::TEST_TOKEN);
        loop {
            let _ = support::grid::post_with(
                &http,
                &join,
                "application/json",
                &[("authorization", auth.as_str())],
                announcement.to_string(),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(nodes_become_available(&http, &gateway.url, 2, Duration::from_secs(10)).await);
    for _ in 0..10 {
        let reply = call(&gateway.url, "version", json!({})).await;
        assert_eq!(reply["result"], "v1", "{reply}");
    }
    heartbeats.abort();
    assert!(
        fake.calls() > 0,
        "the gateway sent calls to the stand-in node"
    );
}
