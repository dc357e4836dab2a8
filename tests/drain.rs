//! Graceful shutdown: SIGTERM on `serve`, a gateway or a node stops new
//! calls, lets the calls in flight finish with every round of their
//! sub-calls, then exits; `--drain-timeout` bounds the wait and a second
//! signal ends the process at once. A rolling restart of every node loses
//! no call.

mod support;

use serde_json::{Value, json};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::grid::{
    Grid, Process, TEST_TOKEN, client, eventually, get_json, nodes_become_available, post, rpc,
    spawn_rpc,
};

fn body(method: &str, params: Value, id: u64) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id}).to_string()
}

fn serve(extra: &[&str]) -> Process {
    let script = support::script("drain.js");
    let mut args = support::grid::serve_args(&script, &["--nodes", "2", "--workers", "1"]);
    args.extend_from_slice(extra);
    Process::start(&args, support::grid::SERVING)
}

/// Waits up to `timeout` for the process to exit; `None` if it did not.
async fn exit_within(process: Process, timeout: Duration) -> Option<ExitStatus> {
    tokio::task::spawn_blocking(move || {
        let mut process = process;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = process
                .child
                .try_wait()
                .expect("the child can be waited on")
            {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    })
    .await
    .unwrap()
}

/// Calls in flight on the gateway at `url`, summed over its nodes.
async fn calls_in_flight(url: &str) -> u64 {
    let nodes = get_json(&client(), &format!("{url}/v1/nodes")).await;
    nodes["nodes"]
        .as_array()
        .map(|nodes| nodes.iter().filter_map(|n| n["in_flight"].as_u64()).sum())
        .unwrap_or(0)
}

/// Sends `rounds` of one-second sub-calls and SIGTERMs `target` once the
/// call is in flight; the call must still get its full answer, a new call
/// must be refused, and `target` must then exit cleanly.
async fn drain_keeps_rounds_alive(gateway_url: &str, target: Process) {
    let http = client();
    let url = format!("{gateway_url}/");
    // 4 rounds of 700 ms: 1 + 2 + 3 + 4.
    let call = spawn_rpc(&http, &url, &body("rounds", json!([4, 700]), 1));
    let started = eventually(Duration::from_secs(10), || async {
        calls_in_flight(gateway_url).await >= 1
    })
    .await;
    assert!(started, "the call never reached a node");
    let signalled = Instant::now();
    target.signal(libc::SIGTERM);
    let reply = call.await.unwrap();
    assert_eq!(reply.json()["result"], 10, "{}", reply.json());
    assert!(
        signalled.elapsed() >= Duration::from_millis(1500),
        "the call finished too early to have spanned the drain"
    );
    let status = exit_within(target, Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the process did not exit cleanly after the drain: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_on_serve_lets_a_fan_out_in_rounds_finish() {
    let serve = serve(&[]);
    let url = serve.url.clone();
    let http = client();
    let call = spawn_rpc(
        &http,
        &format!("{url}/"),
        &body("rounds", json!([4, 700]), 1),
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            calls_in_flight(&url).await >= 1
        })
        .await,
        "the call never reached a local node"
    );
    serve.signal(libc::SIGTERM);
    // While the call drains, new client calls are refused as overloaded.
    let refused = eventually(Duration::from_secs(2), || async {
        match post(
            &http,
            &format!("{url}/"),
            "application/json",
            body("square", json!([3]), 2),
        )
        .await
        {
            Ok(reply) => {
                reply.status == 503
                    && reply.json()["error"]["data"]["kind"] == "draining"
                    && reply.headers.contains_key("retry-after")
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(refused, "a new call was not refused during the drain");
    let reply = call.await.unwrap();
    assert_eq!(reply.json()["result"], 10, "{}", reply.json());
    let status = exit_within(serve, Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "serve did not exit cleanly: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_on_a_gateway_lets_node_sub_calls_finish() {
    let grid = Grid::start("drain.js", 2, &["--workers", "1"]).await;
    let Grid {
        gateway,
        nodes: _nodes,
        dir: _dir,
        ..
    } = grid;
    let url = gateway.url.clone();
    drain_keeps_rounds_alive(&url, gateway).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_node_leaves_the_rotation_and_finishes_its_call() {
    let mut grid = Grid::start("drain.js", 2, &["--workers", "1"]).await;
    let http = client();
    let url = grid.url();
    // Held long enough to still run when the draining node's health is read,
    // even on a loaded machine.
    let call = spawn_rpc(&http, &url, &body("hold", json!([5000, 7]), 1));
    let busy = eventually(Duration::from_secs(10), || async {
        let nodes = get_json(&http, &format!("{}/v1/nodes", grid.gateway.url)).await;
        nodes["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().position(|n| n["in_flight"] == 1))
            .is_some()
    })
    .await;
    assert!(busy, "the call never reached a node");
    // Which process runs it: the one whose URL the gateway lists as busy.
    let nodes = get_json(&http, &format!("{}/v1/nodes", grid.gateway.url)).await;
    let busy_url = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["in_flight"] == 1)
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let index = grid
        .nodes
        .iter()
        .position(|n| n.url == busy_url)
        .expect("the busy node is one of ours");
    // The gateway counts the call before the node has it: wait until the
    // node itself runs it, or it would drain empty and exit at once.
    let running = eventually(Duration::from_secs(10), || async {
        get_json(&http, &format!("{busy_url}/health")).await["in_flight"] == 1
    })
    .await;
    assert!(running, "the call never started on {busy_url}");
    let node = grid.nodes.remove(index);
    node.signal(libc::SIGTERM);
    // The node leaves the rotation while its call still runs...
    let left = eventually(Duration::from_secs(2), || async {
        let nodes = get_json(&http, &format!("{}/v1/nodes", grid.gateway.url)).await;
        !nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["url"] == busy_url.as_str() && n["available"] == true)
    })
    .await;
    assert!(left, "the draining node stayed in rotation");
    // Gateways that list it with --node see it fail its health check.
    let (status, _, health) =
        madrpc::http::get(&http, &format!("{busy_url}/health"), Duration::from_secs(5))
            .await
            .expect("the draining node still answers");
    assert_eq!(status.as_u16(), 503);
    assert_eq!(
        serde_json::from_slice::<Value>(&health).unwrap()["status"],
        "draining"
    );
    let other = rpc(&http, &url, &body("square", json!([9]), 2)).await;
    assert_eq!(other.json()["result"], 81);
    // ...which still gets its answer, and then the node exits.
    assert_eq!(call.await.unwrap().json()["result"], 7);
    let status = exit_within(node, Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the node did not exit cleanly: {status:?}"
    );
}

/// A gateway that lists its nodes with `--node` learns that one drains
/// only from its health check: the check's 503 `draining` takes the node
/// out of rotation without failing it, so its call finishes there and runs
/// nowhere else.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_listed_with_node_finishes_its_call_when_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "drain.js");
    let nodes = [
        Process::node(&module, &["--workers", "1"]),
        Process::node(&module, &["--workers", "1"]),
    ];
    let gateway = Process::gateway(&["--node", &nodes[0].url, "--node", &nodes[1].url]);
    let http = client();
    let url = format!("{}/", gateway.url);
    assert!(
        nodes_become_available(&http, &gateway.url, 2, Duration::from_secs(10)).await,
        "both nodes in rotation"
    );
    let call = spawn_rpc(&http, &url, &body("hold", json!([3000, 7]), 1));
    let runs_on = |i: usize| {
        let health = format!("{}/health", nodes[i].url);
        let http = http.clone();
        async move { get_json(&http, &health).await["in_flight"] == 1 }
    };
    let running = eventually(Duration::from_secs(10), || async {
        runs_on(0).await || runs_on(1).await
    })
    .await;
    assert!(running, "the call never started on a node");
    let busy = if runs_on(0).await { 0 } else { 1 };
    let [first, second] = nodes;
    let (draining, other) = if busy == 0 {
        (first, second)
    } else {
        (second, first)
    };
    draining.signal(libc::SIGTERM);
    assert!(
        nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(5)).await,
        "the draining node left the rotation"
    );
    assert_eq!(call.await.unwrap().json()["result"], 7);
    let health = get_json(&http, &format!("{}/health", other.url)).await;
    assert_eq!(
        (health["served"].as_u64(), health["in_flight"].as_u64()),
        (Some(0), Some(0)),
        "the call ran on the draining node only"
    );
    let status = exit_within(draining, Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drain_timeout_bounds_the_wait_and_a_second_signal_exits_at_once() {
    let http = client();
    for second_signal in [false, true] {
        let serve = serve(&["--drain-timeout", "1s"]);
        let url = serve.url.clone();
        let _call = spawn_rpc(
            &http,
            &format!("{url}/"),
            &body("hold", json!([20000, 1]), 1),
        );
        assert!(
            eventually(Duration::from_secs(10), || async {
                calls_in_flight(&url).await >= 1
            })
            .await
        );
        let signalled = Instant::now();
        serve.signal(libc::SIGTERM);
        if second_signal {
            // The first signal starts the drain (new calls refused) ...
            assert!(
                eventually(Duration::from_secs(2), || async {
                    post(
                        &http,
                        &format!("{url}/"),
                        "application/json",
                        body("square", json!([1]), 2),
                    )
                    .await
                    .is_ok_and(|r| r.status == 503)
                })
                .await
            );
            // ... and the second ends the process without waiting.
            serve.signal(libc::SIGINT);
            let status = exit_within(serve, Duration::from_secs(5)).await;
            let status = status.expect("a second signal ends the process");
            assert!(!status.success(), "{status:?}");
            assert!(signalled.elapsed() < Duration::from_millis(1000));
        } else {
            let status = exit_within(serve, Duration::from_secs(10)).await;
            assert!(status.is_some(), "the drain timeout did not end the wait");
            let waited = signalled.elapsed();
            assert!(
                waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
                "exited after {waited:?}, not after the 1 s drain timeout"
            );
        }
    }
}

/// Starts a node that joins `gateway` on `listen`.
fn node_at(module: &std::path::Path, gateway: &str, listen: &str) -> Process {
    Process::start_with_env(
        &[
            "node",
            "--module",
            module.to_str().unwrap(),
            "--listen",
            listen,
            "--heartbeat",
            "200ms",
            "--workers",
            "2",
            "--join",
            gateway,
        ],
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc node listening on ",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_every_node_loses_no_call() {
    let grid = Grid::start("drain.js", 3, &["--workers", "2"]).await;
    let Grid {
        gateway,
        mut nodes,
        module,
        dir: _dir,
    } = grid;
    let url = format!("{}/", gateway.url);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, ok, failures, url) =
                (stop.clone(), ok.clone(), failures.clone(), url.clone());
            tokio::spawn(async move {
                let http = client();
                let mut id = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    let n = 1 + (id + c) % 12;
                    let expected = n * (n + 1) * (2 * n + 1) / 6;
                    let outcome = post(
                        &http,
                        &url,
                        "application/json",
                        body("sum_squares", json!([n]), id),
                    )
                    .await;
                    match outcome {
                        Ok(reply) if reply.status == 200 && reply.json()["result"] == expected => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(reply) => failures.lock().unwrap().push(format!(
                            "sum_squares({n}): HTTP {} {}",
                            reply.status,
                            String::from_utf8_lossy(&reply.body)
                        )),
                        Err(error) => failures
                            .lock()
                            .unwrap()
                            .push(format!("sum_squares({n}): {error}")),
                    }
                }
            })
        })
        .collect();
    let http = client();
    for i in 0..nodes.len() {
        let before = ok.load(Ordering::Relaxed);
        assert!(
            eventually(Duration::from_secs(10), || async {
                ok.load(Ordering::Relaxed) >= before + 20
            })
            .await,
            "the load stalled before restarting node {i}"
        );
        let old = nodes.remove(i);
        let listen = old.url.trim_start_matches("http://").to_owned();
        old.signal(libc::SIGTERM);
        let status = exit_within(old, Duration::from_secs(15)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "node {i} did not drain and exit: {status:?}"
        );
        nodes.insert(i, node_at(&module, &gateway.url, &listen));
        assert!(
            nodes_become_available(&http, &gateway.url, 3, Duration::from_secs(10)).await,
            "node {i} did not come back"
        );
    }
    let before = ok.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(10), || async {
            ok.load(Ordering::Relaxed) >= before + 20
        })
        .await
    );
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed during the rolling restart: {:?}",
        failures.len(),
        failures.len() + ok.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) > 100);
}
