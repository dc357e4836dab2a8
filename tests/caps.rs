//! Host memory stays bounded where a peer or a guest controls a size: a
//! batch response as a whole, and the results of a call's sub-calls.

mod support;

use support::grid::{Process, client, rpc};

fn serve(dir: &std::path::Path, extra: &[&str]) -> Process {
    let module = support::build_into(dir, "caps.js");
    let module = module.to_str().unwrap().to_owned();
    let mut args = vec![
        "serve",
        module.as_str(),
        "--nodes",
        "1",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Process::start(&args, "madrpc is serving at ")
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
}
