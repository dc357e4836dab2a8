//! The grid end to end: real gateway and node processes on 127.0.0.1,
//! driven over HTTP exactly as any JSON-RPC client would.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::grid::{
    Grid, Process, client, eventually, get_json, nodes_become_available, post, rpc, spawn_rpc,
};

fn url(process: &Process) -> String {
    format!("{}/", process.url)
}

#[tokio::test(flavor = "multi_thread")]
async fn json_rpc_2_0_to_the_letter() {
    let grid = Grid::start("grid.js", 2, &[]).await;
    let http = client();
    let url = url(&grid.gateway);

    // A single request: exactly one of result/error, the id echoed exactly.
    for id in [r#""abc""#, "7", "1.50", "-3", "null", r#""""#] {
        let reply = rpc(
            &http,
            &url,
            &format!(r#"{{"jsonrpc":"2.0","method":"add","params":[2,3],"id":{id}}}"#),
        )
        .await;
        assert_eq!(reply.status, 200);
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        assert_eq!(text, format!(r#"{{"jsonrpc":"2.0","result":5,"id":{id}}}"#));
    }
    // Named params are one argument.
    let reply = rpc(
        &http,
        &url,
        r#"{"jsonrpc":"2.0","method":"echo","params":{"k":[1,{"n":null}]},"id":1}"#,
    )
    .await;
    assert_eq!(reply.json()["result"], json!({"k": [1, {"n": null}]}));

    // Notifications: executed, no reply; a batch of only notifications has no body.
    let reply = rpc(
        &http,
        &url,
        r#"{"jsonrpc":"2.0","method":"add","params":[1,1]}"#,
    )
    .await;
    assert_eq!(reply.status, 204);
    assert!(reply.body.is_empty());
    let reply = rpc(
        &http,
        &url,
        r#"[{"jsonrpc":"2.0","method":"add","params":[1,1]},{"jsonrpc":"2.0","method":"fail"}]"#,
    )
    .await;
    assert_eq!(reply.status, 204);
    assert!(reply.body.is_empty());

    // A batch: one response per request with an id, matched by id.
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"jsonrpc": "2.0", "method": "add", "params": [i, 1000], "id": format!("call-{i}")}))
        .chain([json!({"jsonrpc": "2.0", "method": "add", "params": [0, 0]})])
        .collect();
    let reply = rpc(&http, &url, &serde_json::to_string(&batch).unwrap()).await;
    let replies = reply.json();
    let replies = replies.as_array().expect("a batch reply is an array");
    assert_eq!(replies.len(), 20, "the notification must get no reply");
    for reply in replies {
        let id = reply["id"].as_str().unwrap();
        let i: i64 = id.trim_start_matches("call-").parse().unwrap();
        assert_eq!(reply["result"], json!(i + 1000), "{reply}");
        assert!(reply.get("error").is_none());
    }

    // The error codes, where the specification puts them.
    let cases = [
        (
            r#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1"#,
            -32700,
            400,
        ),
        (
            r#"{"jsonrpc":"2.0","method":1,"params":"bar","id":1}"#,
            -32600,
            400,
        ),
        (r#"{"jsonrpc":"1.0","method":"add","id":1}"#, -32600, 400),
        (r#"[]"#, -32600, 400),
        (
            r#"{"jsonrpc":"2.0","method":"missing","id":1}"#,
            -32601,
            200,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"rpc.secret","id":1}"#,
            -32601,
            200,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"add","params":5,"id":1}"#,
            -32602,
            200,
        ),
    ];
    for (body, code, status) in cases {
        let reply = rpc(&http, &url, body).await;
        assert_eq!(reply.status, status, "{body}");
        let value = reply.json();
        assert!(value.is_object(), "{body}: {value}");
        assert_eq!(value["error"]["code"], code, "{body}: {value}");
        assert!(value.get("result").is_none());
        assert!(value["error"]["message"].as_str().unwrap().len() > 10);
        assert!(value["error"]["data"]["kind"].is_string(), "{value}");
    }
    let value = rpc(
        &http,
        &url,
        r#"{"jsonrpc":"2.0","method":"missing","id":1}"#,
    )
    .await
    .json();
    assert_eq!(
        value["error"]["data"]["available"],
        json!(["add", "busy", "echo", "fail"])
    );
    assert_eq!(
        rpc(&http, &url, r#"{"jsonrpc":"2.0","method":"rpc.x","id":9}"#)
            .await
            .json()["id"],
        9
    );
    // Invalid requests get a null id; an array of one invalid member gets an array.
    let value = rpc(&http, &url, r#"{"jsonrpc":"2.0","method":1,"id":5}"#)
        .await
        .json();
    assert_eq!(value["id"], Value::Null);
    let value = rpc(&http, &url, "[1]").await.json();
    assert_eq!(value.as_array().unwrap().len(), 1);
    assert_eq!(value[0]["error"]["code"], -32600);
    let value = rpc(&http, &url, "[1,2,3]").await.json();
    assert_eq!(value.as_array().unwrap().len(), 3);

    // Guest errors carry the documented code and structured data.
    let value = rpc(&http, &url, r#"{"jsonrpc":"2.0","method":"fail","id":"f"}"#)
        .await
        .json();
    assert_eq!(value["error"]["code"], -32000);
    assert_eq!(value["error"]["data"]["kind"], "guest_threw");
    assert_eq!(value["error"]["data"]["message"], "deliberate failure");
    assert!(
        value["error"]["data"]["stack"]
            .as_str()
            .unwrap()
            .contains("grid.js:")
    );

    // rpc.discover lists the methods as OpenRPC.
    let value = rpc(
        &http,
        &url,
        r#"{"jsonrpc":"2.0","method":"rpc.discover","id":1}"#,
    )
    .await
    .json();
    assert_eq!(value["result"]["openrpc"], "1.2.6");
    let names: Vec<&str> = value["result"]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "busy", "echo", "fail"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_errors_are_specific() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let gateway = Process::gateway(&["--max-body", "1024", "--max-batch", "5"]);
    let _node = Process::node(&module, &["--join", &gateway.url]);
    let http = client();
    let url = url(&gateway);
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);

    let reply = post(
        &http,
        &url,
        "text/plain",
        r#"{"jsonrpc":"2.0","method":"add","id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 415);
    assert_eq!(reply.json()["error"]["code"], -32600);

    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"echo","params":["{}"],"id":1}}"#,
        "x".repeat(5000)
    );
    let reply = rpc(&http, &url, &big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], -32007);

    let batch = serde_json::to_string(&vec![
        json!({"jsonrpc":"2.0","method":"add","params":[1,2],"id":1});
        6
    ])
    .unwrap();
    let reply = rpc(&http, &url, &batch).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], -32008);

    let reply = rpc(&http, &url, "{not json").await;
    assert_eq!(reply.json()["error"]["code"], -32700);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_without_healthy_nodes_answers_at_once() {
    // A static node that does not exist: never healthy.
    let gateway = Process::gateway(&["--node", "http://127.0.0.1:9"]);
    let http = client();
    let started = std::time::Instant::now();
    let reply = rpc(
        &http,
        &url(&gateway),
        r#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}"#,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(reply.status, 503);
    assert!(reply.headers.contains_key("retry-after"));
    let value = reply.json();
    assert_eq!(value["error"]["code"], -32011);
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("madrpc node --join")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_node_reports_overload_instead_of_queueing() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let node = Process::node(
        &module,
        &["--workers", "1", "--queue", "0", "--insecure-public-calls"],
    );
    let http = client();
    let url = url(&node);
    let slow = spawn_rpc(
        &http,
        &url,
        r#"{"jsonrpc":"2.0","method":"busy","params":[1500],"id":1}"#,
    );
    // Wait until the slow call holds the only worker, then try another.
    let busy = eventually(Duration::from_secs(10), || async {
        get_json(&http, &format!("{}/health", node.url)).await["in_flight"] == 1
    })
    .await;
    assert!(busy, "the slow call never started");
    let reply = rpc(
        &http,
        &url,
        r#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":2}"#,
    )
    .await;
    assert_eq!(
        reply.status, 503,
        "a second call while the only worker is busy was not refused"
    );
    assert_eq!(reply.headers.get("retry-after").unwrap(), "1");
    assert_eq!(reply.json()["error"]["code"], -32010);
    assert_eq!(slow.await.unwrap().json()["result"], 1500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_during_load_loses_no_call() {
    let mut grid = Grid::start("grid.js", 2, &["--workers", "2"]).await;
    let http = client();
    let url = url(&grid.gateway);
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|client_id| {
            let http = http.clone();
            let url = url.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for i in 0..60 {
                    let id = client_id * 1000 + i;
                    let body = format!(
                        r#"{{"jsonrpc":"2.0","method":"busy","params":[{}],"id":{id}}}"#,
                        5 + i % 10
                    );
                    let reply = rpc(&http, &url, &body).await;
                    let value = reply.json();
                    if value["id"] != id || value["result"] != 5 + i % 10 {
                        failures.push(value);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    // Kill a node once the load is well under way.
    assert!(
        eventually(Duration::from_secs(30), || async {
            done.load(Ordering::Relaxed) >= 60
        })
        .await
    );
    grid.nodes[0].signal(libc::SIGKILL);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert_eq!(done.load(Ordering::Relaxed), 480);
    assert!(
        failures.is_empty(),
        "{} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    // The dead node leaves the rotation.
    assert!(nodes_become_available(&http, &grid.gateway.url, 1, Duration::from_secs(10)).await);
    let _ = grid.nodes.remove(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_joins_later_receives_traffic() {
    let mut grid = Grid::start("grid.js", 1, &[]).await;
    let http = client();
    let late = Process::node(&grid.module, &["--join", &grid.gateway.url]);
    assert!(nodes_become_available(&http, &grid.gateway.url, 2, Duration::from_secs(30)).await);
    let url = url(&grid.gateway);
    let batch: Vec<Value> = (0..40)
        .map(|i| json!({"jsonrpc": "2.0", "method": "busy", "params": [20], "id": i}))
        .collect();
    let reply = rpc(&http, &url, &serde_json::to_string(&batch).unwrap()).await;
    assert_eq!(reply.json().as_array().unwrap().len(), 40);
    let served = get_json(&http, &format!("{}/health", late.url)).await["served"]
        .as_u64()
        .unwrap();
    assert!(served > 0, "the late node served nothing");
    grid.nodes.push(late);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_stops_heartbeating_leaves_and_comes_back() {
    let grid = Grid::start("grid.js", 2, &[]).await;
    let http = client();
    grid.nodes[0].signal(libc::SIGSTOP);
    assert!(
        nodes_become_available(&http, &grid.gateway.url, 1, Duration::from_secs(15)).await,
        "a frozen node stayed in rotation"
    );
    for i in 0..10 {
        let reply = rpc(
            &http,
            &url(&grid.gateway),
            &format!(r#"{{"jsonrpc":"2.0","method":"add","params":[{i},1],"id":{i}}}"#),
        )
        .await;
        assert_eq!(reply.json()["result"], i + 1);
    }
    grid.nodes[0].signal(libc::SIGCONT);
    assert!(
        nodes_become_available(&http, &grid.gateway.url, 2, Duration::from_secs(15)).await,
        "the node did not come back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_the_grid_and_stops_cleanly() {
    let script = support::script("grid.js");
    let mut serve = Process::start(
        &support::grid::serve_args(&script, &["--nodes", "2"]),
        "madrpc is serving at ",
    );
    let curl = serve
        .wait_for_line(|l| l.contains("curl -s"), Duration::from_secs(5))
        .expect("a curl example");
    assert!(curl.contains("Content-Type: application/json"), "{curl}");
    let http = client();
    let url = url(&serve);
    let reply = rpc(
        &http,
        &url,
        r#"{"jsonrpc":"2.0","method":"add","params":[20,22],"id":1}"#,
    )
    .await;
    assert_eq!(reply.json()["result"], 42);

    // Two calls in flight when SIGTERM arrives: the balancer gives one to
    // each local node, and both still get their answers.
    let in_flight: Vec<_> = (2..4)
        .map(|id| {
            spawn_rpc(
                &http,
                &url,
                &format!(r#"{{"jsonrpc":"2.0","method":"busy","params":[800],"id":{id}}}"#),
            )
        })
        .collect();
    let started = eventually(Duration::from_secs(10), || async {
        let nodes = get_json(&http, &format!("{}/v1/nodes", serve.url)).await;
        nodes["nodes"].as_array().is_some_and(|nodes| {
            nodes.len() == 2
                && nodes
                    .iter()
                    .all(|n| n["origin"] == "local" && n["in_flight"] == 1)
        })
    })
    .await;
    assert!(started, "the slow calls did not reach one local node each");
    serve.signal(libc::SIGTERM);
    for call in in_flight {
        assert_eq!(call.await.unwrap().json()["result"], 800);
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = serve.child.wait();
        (status, serve)
    })
    .await
    .unwrap()
    .0
    .unwrap();
    assert!(status.success(), "serve exited with {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_call_command_reports_results_and_errors() {
    let grid = Grid::start("grid.js", 1, &[]).await;
    let url = url(&grid.gateway);
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| support::run_cli(dir.path(), args);
    let output = run(&["call", "--url", &url, "add", "[1, 2]"]);
    assert!(output.status.success());
    assert_eq!(support::texts(&output).0.trim(), "3");
    let output = run(&["call", "--url", &url, "nope"]);
    let (stdout, stderr) = support::texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    // The hint: the functions there are.
    assert!(
        stderr.contains("-32601") && stderr.contains("add"),
        "{stderr}"
    );
    let output = run(&["call", "--url", &url, "fail"]);
    let stderr = support::texts(&output).1;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // The guest error with its stack in the script.
    assert!(
        stderr.contains("-32000")
            && stderr.contains("deliberate failure")
            && stderr.contains("grid.js:"),
        "{stderr}"
    );
    let output = run(&["call", "--url", &url, "add", "{oops"]);
    let stderr = support::texts(&output).1;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    let output = run(&["call", "--url", "http://127.0.0.1:9/", "add"]);
    let stderr = support::texts(&output).1;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("cannot reach") && stderr.contains("is the gateway running"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_nodes_with_the_join_token_may_join() {
    let gateway = Process::gateway(&["--join-token", "s3cret"]);
    let http = client();
    let announcement = r#"{"url":"http://127.0.0.1:9","methods":["add"]}"#;
    let reply = post(
        &http,
        &format!("{}/v1/nodes", gateway.url),
        "application/json",
        announcement,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 401);

    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let _intruder = Process::node(&module, &["--join", &gateway.url, "--join-token", "wrong"]);
    let _member = Process::node(&module, &["--join", &gateway.url, "--join-token", "s3cret"]);
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    let nodes = get_json(&http, &format!("{}/v1/nodes", gateway.url)).await;
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1, "{nodes}");
}
