//! The gateway's status page: `GET /` is a page with no external assets
//! that headless Chromium (Debian's `chromium`, installed by
//! `scripts/setup`) renders with the nodes, the methods, the module's hash
//! and the recent errors of a running `serve`; `POST /` stays JSON-RPC.

mod support;

use serde_json::{Value, json};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::grid::{Process, client, get_json, rpc};

/// The page at `url` as headless Chromium renders it after its scripts
/// ran, or a failure message naming what went wrong.
fn rendered(url: &str, profile: &std::path::Path) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromium runs (scripts/setup installs Debian's chromium)");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = stdout.read_to_string(&mut dom);
        dom
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling the process group of our own child.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
    reader.join().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_nodes_methods_module_and_errors() {
    let script = support::script("telemetry.js");
    let grid = Process::start(
        &support::grid::serve_args(&script, &["--nodes", "2"]),
        "madrpc is serving at ",
    );
    let http = client();
    let url = format!("{}/", grid.url);
    let call = |method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string()
    };
    assert_eq!(
        rpc(&http, &url, &call("add", json!([2, 3]))).await.json()["result"],
        5
    );
    let failed = rpc(&http, &url, &call("fail", json!([]))).await.json();
    assert_eq!(failed["error"]["data"]["kind"], "guest_threw");
    let status = get_json(&http, &format!("{}/v1/status", grid.url)).await;
    let hash = status["modules"][0]
        .as_str()
        .expect("the module's hash")
        .to_owned();
    assert_eq!(hash.len(), 64);

    let dir = tempfile::tempdir().unwrap();
    let page = tokio::task::spawn_blocking(move || rendered(&url, &dir.path().join("profile")))
        .await
        .unwrap();
    for expected in [
        "local:0",
        "local:1",
        "<code>add</code>",
        "<code>busy</code>",
        "<code>child</code>",
        "<code>fail</code>",
        "<code>parent</code>",
        "guest_threw",
        "it failed on purpose",
        &hash[..12],
        ">ready<",
    ] {
        assert!(
            page.contains(expected),
            "'{expected}' is not on the page:\n{page}"
        );
    }
    // Nothing is loaded from elsewhere.
    let (_, _, html) = madrpc::http::get(&http, &format!("{}/", grid.url), Duration::from_secs(10))
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&html);
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
}
