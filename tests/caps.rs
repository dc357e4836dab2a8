//! Bounds that hold whatever a guest or a peer does: host memory for a
//! batch response and for a call's sub-call results, and the calls and
//! fuel a whole call tree shares.

mod support;

use std::time::Duration;
use support::grid::{Process, client, rpc};

fn serve(dir: &std::path::Path, extra: &[&str]) -> Process {
    let module = support::build_into(dir, "caps.js");
    let mut args = support::grid::serve_args(&module, &["--nodes", "1"]);
    args.extend_from_slice(extra);
    Process::start(&args, support::grid::SERVING)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_response_stays_within_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(dir.path(), &["--max-response", "1KiB"]);
    let entries: Vec<String> = (0..10)
        .map(|id| format!(r#"{{"jsonrpc":"2.0","method":"text","params":[300],"id":{id}}}"#))
        .collect();
    let reply = rpc(
        &client(),
        &format!("{}/", grid.url),
        &format!("[{}]", entries.join(",")),
    )
    .await;
    assert_eq!(reply.status, 200);
    let replies = reply.json();
    let replies = replies.as_array().unwrap();
    assert_eq!(replies.len(), 10);
    let ok = replies.iter().filter(|r| r["result"].is_string()).count();
    // 302 bytes per result (the quotes included): three fit in 1 KiB.
    assert_eq!(ok, 3, "{replies:?}");
    for refused in replies.iter().filter(|r| r.get("error").is_some()) {
        assert_eq!(refused["error"]["code"], -32007);
        assert_eq!(refused["error"]["data"]["kind"], "batch_response_too_large");
        assert_eq!(refused["error"]["data"]["limit_bytes"], 1024);
    }
    assert!(
        reply.body.len() < 1024 + 10 * 300,
        "{} bytes",
        reply.body.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_call_results_stay_within_the_callers_memory() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(dir.path(), &["--memory", "64MiB"]);
    let body = r#"{"jsonrpc":"2.0","method":"gather","params":[6, 3000000],"id":1}"#;
    let reply = rpc(&client(), &format!("{}/", grid.url), body).await;
    let json = reply.json();
    let kinds = json["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{json}"));
    let fitted = kinds
        .iter()
        .filter(|k| k.as_u64() == Some(3_000_000))
        .count();
    let refused = kinds
        .iter()
        .filter(|k| k.as_str() == Some("subcall_results_too_large"))
        .count();
    // A quarter of 64 MiB holds five results of 3 MB; the sixth is refused.
    assert_eq!((fitted, refused), (5, 1), "{json}");

    // Let escape, the refusal reaches the client as the function's error,
    // the sub-call's code, kind and limit kept in `data.cause`.
    let body = r#"{"jsonrpc":"2.0","method":"gather_and_let_escape","params":[6, 3000000],"id":1}"#;
    let reply = rpc(&client(), &format!("{}/", grid.url), body).await;
    let error = error_of(&reply);
    assert_eq!(reply.status, 200);
    assert_eq!(error["code"], -32000, "{error}");
    assert_eq!(error["data"]["kind"], "guest_threw", "{error}");
    let cause = &error["data"]["cause"];
    assert_eq!(cause["code"], -32007, "{error}");
    assert_eq!(cause["kind"], "subcall_results_too_large", "{error}");
    assert_eq!(cause["limit_bytes"], 16 << 20, "{error}");
}

fn error_of(reply: &support::grid::HttpReply) -> serde_json::Value {
    let json = reply.json();
    assert!(json.get("error").is_some(), "{json}");
    json["error"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_tree_shares_its_calls() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(dir.path(), &["--max-tree-calls", "20"]);
    let url = format!("{}/", grid.url);
    // 3 + 9 = 12 sub-calls fit in 20.
    let small = rpc(
        &client(),
        &url,
        r#"{"jsonrpc":"2.0","method":"tree","params":[2,3],"id":1}"#,
    )
    .await;
    assert_eq!(small.json()["result"], 9, "{}", small.json());
    // 5 + 25 = 30 do not: the whole tree stops with its own error.
    let big = rpc(
        &client(),
        &url,
        r#"{"jsonrpc":"2.0","method":"tree","params":[2,5],"id":2}"#,
    )
    .await;
    let error = error_of(&big);
    assert_eq!(error["code"], -32022, "{error}");
    assert_eq!(error["data"]["kind"], "tree_budget_exceeded");
    assert_eq!(error["data"]["budget"], "calls");
    assert_eq!(error["data"]["limit"], 20);
    // Each client call starts a tree of its own.
    let again = rpc(
        &client(),
        &url,
        r#"{"jsonrpc":"2.0","method":"tree","params":[2,3],"id":3}"#,
    )
    .await;
    assert_eq!(again.json()["result"], 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_tree_shares_its_fuel() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(dir.path(), &["--max-tree-fuel", "1000000000"]);
    let url = format!("{}/", grid.url);
    let fits = rpc(
        &client(),
        &url,
        r#"{"jsonrpc":"2.0","method":"burn_many","params":[4,10000],"id":1}"#,
    )
    .await;
    assert_eq!(fits.json()["result"], 4, "{}", fits.json());
    // Four sub-calls of 3,000,000 iterations (about 100 ms of CPU, a
    // billion fuel units, each) burn past a billion together; 300,000
    // iterations alone (about 10 ms) fit.
    let body = r#"{"jsonrpc":"2.0","method":"burn_many","params":[4,3000000],"id":2}"#;
    let error = error_of(&rpc(&client(), &url, body).await);
    assert_eq!(error["code"], -32022, "{error}");
    assert_eq!(error["data"]["budget"], "fuel");
    assert_eq!(error["data"]["limit"], 1_000_000_000u64);
    let alone = rpc(
        &client(),
        &url,
        r#"{"jsonrpc":"2.0","method":"burn","params":[300000],"id":3}"#,
    )
    .await;
    assert!(alone.json()["result"].is_number(), "{}", alone.json());
}

#[tokio::test(flavor = "multi_thread")]
async fn budget_headers_cannot_be_forged_past_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(dir.path(), &[]);
    let url = format!("{}/", grid.url);
    let body = r#"{"jsonrpc":"2.0","method":"tree","params":[1,2],"id":1}"#;
    for (name, value) in [
        ("x-madrpc-depth", "4294967295"),
        ("x-madrpc-depth", "-1"),
        ("x-madrpc-tree", "1,2"),
    ] {
        let reply = support::grid::post_with(
            &client(),
            &url,
            "application/json",
            &[(name, value)],
            body.to_owned(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 400, "{name}: {value}");
        assert_eq!(error_of(&reply)["data"]["kind"], "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_cannot_claim_a_place_deep_in_a_call_tree() {
    // Believed, depth 8 would put the sub-calls of `tree` past the depth
    // limit of 8, and a tree header would tie the call to another tree's
    // budget. From a client (no cluster token) both are set aside after
    // their check: the call starts its own tree at depth 0.
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(dir.path(), &[]);
    let url = format!("{}/", grid.url);
    let body = r#"{"jsonrpc":"2.0","method":"tree","params":[1,2],"id":1}"#;
    for headers in [
        &[("x-madrpc-depth", "8")][..],
        &[("x-madrpc-depth", "3"), ("x-madrpc-tree", "1,10000,1000")][..],
    ] {
        let reply = support::grid::post_with(
            &client(),
            &url,
            "application/json",
            headers,
            body.to_owned(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200, "{headers:?}");
        assert_eq!(reply.json()["result"], 2, "{headers:?}: {}", reply.json());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_whose_deadline_passes_in_the_queue_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(dir.path(), &["--workers", "1"]);
    let url = format!("{}/", grid.url);
    let http = client();
    let first = support::grid::spawn_rpc(
        &http,
        &url,
        r#"{"jsonrpc":"2.0","method":"busy","params":[800],"id":1}"#,
    );
    // The one worker is taken; a call that may wait only 200 ms queues
    // behind it and is dropped when its deadline passes.
    let running = support::grid::eventually(Duration::from_secs(10), || async {
        let nodes = support::grid::get_json(&http, &format!("{}/v1/nodes", grid.url)).await;
        nodes["nodes"][0]["in_flight"] == 1
    })
    .await;
    assert!(running);
    let queued = support::grid::post_with(
        &http,
        &url,
        "application/json",
        &[("x-madrpc-deadline-ms", "200")],
        r#"{"jsonrpc":"2.0","method":"busy","params":[10],"id":2}"#,
    )
    .await
    .unwrap();
    // Admission refuses it as soon as it cannot expect to start in time
    // (overloaded); should it be let in, it is dropped when its deadline
    // passes in the queue. Either way it never runs.
    let error = error_of(&queued);
    let message = error["message"].as_str().unwrap();
    match error["code"].as_i64() {
        Some(-32010) => assert_eq!(error["data"]["kind"], "overloaded", "{error}"),
        Some(-32003) => assert!(message.contains("it did not run"), "{error}"),
        _ => panic!("neither refused nor dropped: {error}"),
    }
    assert_eq!(first.await.unwrap().json()["result"], 800);
}
