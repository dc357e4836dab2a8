//! The grid under more load than it can take: client calls past admission
//! are refused at once as `overloaded` (with `Retry-After`), while the
//! sub-calls of the calls it admitted still run; running out of sandbox
//! instance slots is `overloaded` too, never `guest_crashed`; and when
//! every node fails, the gateway's re-sends stay within its retry budget.

mod support;

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::fake_node::{FakeNode, Reply};
use support::grid::{Process, client, nodes_become_available, rpc, spawn_rpc};
use support::logged::Logged;

const OVERLOADED: i64 = -32010;

fn serve(extra: &[&str]) -> Process {
    let script = support::script("overload.js");
    let args = support::grid::serve_args(&script, extra);
    Process::start(&args, support::grid::SERVING)
}

fn body(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string()
}

/// How the calls of a flood ended.
#[derive(Debug, Default)]
struct Outcomes {
    /// Calls whose every sub-call succeeded.
    complete: usize,
    /// Calls refused as overloaded, with `Retry-After`.
    refused: usize,
    /// Anything else: a failed sub-call, a deadline, a refusal without
    /// `Retry-After`.
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn admitted_calls_keep_their_sub_calls_while_clients_flood_the_grid() {
    // Two nodes of one worker each admit 4 client calls apiece. Each call
    // fans out 10 sub-calls of 10 ms: a tree is 100 ms of a worker, so the
    // 64 clients below offer about three times what the grid runs within
    // the 3 s deadline. Admitted, they would all wait out their deadlines.
    let grid = serve(&["--nodes", "2", "--workers", "1", "--deadline", "3s"]);
    let url = format!("{}/", grid.url);
    let http = client();
    // A node learns its pace from the calls it finished: a few rounds of
    // calls at capacity first, on both nodes.
    for _ in 0..3 {
        let warm: Vec<_> = (0..4)
            .map(|_| spawn_rpc(&http, &url, &body("fan", json!([10, 10]))))
            .collect();
        for call in warm {
            assert_eq!(
                call.await.expect("a warm-up call").json()["result"],
                json!([])
            );
        }
    }
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let until = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (http, url, outcomes) = (http.clone(), url.clone(), outcomes.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let reply = rpc(&http, &url, &body("fan", json!([10, 10]))).await;
                    let json = reply.json();
                    let refused = reply.status == 503
                        && json["error"]["code"] == OVERLOADED
                        && reply.headers.contains_key("retry-after");
                    {
                        let mut outcomes = outcomes.lock().unwrap();
                        if json["result"] == json!([]) {
                            outcomes.complete += 1;
                        } else if refused {
                            outcomes.refused += 1;
                        } else {
                            outcomes
                                .other
                                .push(format!("HTTP {}: {json}", reply.status));
                        }
                    }
                    if refused {
                        // Back soon: the flood must go on.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("a client ran");
    }
    let outcomes = outcomes.lock().unwrap();
    assert!(
        outcomes.other.is_empty(),
        "calls that were neither complete nor refused as overloaded: {:?}",
        &outcomes.other[..outcomes.other.len().min(5)]
    );
    assert!(outcomes.complete > 0, "{outcomes:?}");
    assert!(
        outcomes.refused > 0,
        "the grid was never overloaded: {outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_finds_no_instance_slot_is_refused_as_overloaded() {
    // Two workers, but a single sandbox instance slot in the process.
    let grid = serve(&["--nodes", "1", "--workers", "2", "--instance-slots", "1"]);
    let url = format!("{}/", grid.url);
    let http = client();
    // While a long call holds the slot, a second call finds none. (The
    // long call may lose the race for the slot to a probe: then again.)
    let mut refused = None;
    for _ in 0..10 {
        let long = spawn_rpc(&http, &url, &body("work", json!([800])));
        while !long.is_finished() {
            let reply = rpc(&http, &url, &body("work", json!([0]))).await;
            let json = reply.json();
            if json["result"] != 0 {
                let retry_after = reply.headers.contains_key("retry-after");
                refused = Some((reply.status, json, retry_after));
                break;
            }
        }
        let long = long.await.expect("the long call").json();
        if refused.is_some() {
            assert_eq!(long["result"], 800, "{long}");
            break;
        }
        assert_eq!(long["error"]["code"], OVERLOADED, "{long}");
    }
    let refused = refused.expect("no call was ever refused a slot");
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert_eq!(refused.1["error"]["code"], OVERLOADED, "{}", refused.1);
    assert_eq!(refused.1["error"]["data"]["kind"], "overloaded");
    assert!(refused.2, "no Retry-After");

    // The slot is free again.
    let reply = rpc(&http, &url, &body("work", json!([0]))).await.json();
    assert_eq!(reply["result"], 0, "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_node_fails_re_sends_stay_within_the_retry_budget() {
    // 200 nodes that pass health checks but close every call unanswered.
    // Each call fails on its first node, and until half of them are ejected
    // there is always another node to send it to: without a budget every
    // call would be sent twice.
    let mut fakes = Vec::new();
    for _ in 0..200 {
        fakes.push(FakeNode::start(&["add"], vec![], Reply::Close).await);
    }
    let started = Instant::now();
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--health-interval",
        "1s",
    ];
    for fake in &fakes {
        args.extend(["--node", fake.url.as_str()]);
    }
    let gateway = Logged::start(
        &args,
        &[("MADRPC_JOIN_TOKEN", support::grid::TEST_TOKEN)],
        "madrpc gateway listening on ",
    );
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 200, Duration::from_secs(30)).await);

    let calls = 100;
    let url = format!("{}/", gateway.url);
    for i in 0..calls {
        let reply = rpc(&http, &url, &body("add", json!([i, 1]))).await.json();
        assert_eq!(reply["error"]["data"]["kind"], "node_failed", "{reply}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let received: usize = fakes.iter().map(FakeNode::calls).sum();
    let re_sends = received - calls;
    // The budget: 5 tokens at start, 5 a second, a tenth of one per call.
    let budget = 5.0 + 5.0 * elapsed + 0.1 * calls as f64;
    assert!(
        (re_sends as f64) <= budget.floor(),
        "{re_sends} re-sends of {calls} calls in {elapsed:.1} s, over the budget of {budget:.1}"
    );
    assert!(re_sends > 0, "no call was sent again at all");
    let spent = gateway.wait_for(
        |l| l.contains("not retrying: the retry budget is spent"),
        Duration::from_secs(10),
    );
    assert!(spent.is_some(), "the budget never ran out");
    let logged = gateway.wait_for_count(
        |l| l.contains("retrying the call on another node"),
        re_sends,
        Duration::from_secs(10),
    );
    assert_eq!(
        logged.len(),
        re_sends,
        "the gateway's log and the nodes disagree"
    );
}
