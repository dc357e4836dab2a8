//! Zero-downtime deploys: `madrpc deploy` ships a new module version to
//! `serve` and to a gateway with joined nodes while clients call them,
//! calls switch at once, a call in flight finishes with every sub-call on
//! the version it started on, `--rollback` goes back, a node started
//! without `--module` fetches the current version, and deploys need the
//! admin token; a version a node cannot load fails the deploy at once.
//! `serve --watch` swaps the module on save and keeps the old one through a
//! syntax error.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::grid::{
    Process, TEST_TOKEN, client, eventually, get_json, nodes_become_available, rpc, spawn_rpc,
};
use support::load::{Load, module, run_madrpc, run_madrpc_code, source};
use support::logged::Logged;

const ADMIN: &str = "test-admin-token";

fn call(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string()
}

/// Calls in flight on the gateway at `base`, over all its nodes.
async fn in_flight(http: &madrpc::http::HttpClient, base: &str) -> u64 {
    let nodes = get_json(http, &format!("{base}/v1/nodes")).await;
    nodes["nodes"]
        .as_array()
        .map(|n| n.iter().filter_map(|n| n["in_flight"].as_u64()).sum())
        .unwrap_or(0)
}

/// Runs `madrpc deploy ARGS --url BASE` with the admin token; the new id.
async fn deploy(base: &str, args: &[&str]) -> String {
    let mut all: Vec<String> = vec!["deploy".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--url".into(), base.into()]);
    let (ok, stdout, stderr) =
        run_madrpc(all, vec![("MADRPC_ADMIN_TOKEN".into(), ADMIN.into())]).await;
    assert!(ok, "madrpc deploy {args:?} failed: {stderr}");
    let id = stdout.trim().to_owned();
    assert_eq!(id.len(), 64, "deploy prints the version id: {stdout}");
    id
}

/// Runs `madrpc deploy FILE --url BASE` with the admin token; its exit
/// status and what it wrote to stderr.
async fn deploy_status(file: &std::path::Path, base: &str) -> (Option<i32>, String) {
    let (code, _, stderr) = run_madrpc_code(
        vec![
            "deploy".into(),
            file.to_str().unwrap().into(),
            "--url".into(),
            base.into(),
        ],
        vec![("MADRPC_ADMIN_TOKEN".into(), ADMIN.into())],
    )
    .await;
    (code, stderr)
}

/// Switches the grid at `base` with `madrpc deploy ARGS` while a long call
/// started before it and a load run go on. Checks that the long call and
/// all its sub-calls ran on `before`, that no call of the load failed, and
/// that calls right after the switch run on `after`. Returns the new id.
async fn switch_under_load(base: &str, args: &[&str], before: &str, after: &str) -> String {
    let http = client();
    let url = format!("{base}/");
    let long = spawn_rpc(&http, &url, &call("tree", json!({"rounds": 8, "ms": 250})));
    assert!(
        eventually(Duration::from_secs(10), || async {
            in_flight(&http, base).await > 0
        })
        .await,
        "the long call started"
    );
    let load = Load::start(&url, 4);
    load.answers(20).await;
    let id = deploy(base, args).await;
    let still_running = !long.is_finished();
    let now = rpc(&http, &url, &call("version", json!({}))).await.json();
    assert_eq!(
        now["result"], after,
        "a call after the deploy runs on the new version"
    );
    load.answers(20).await;
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "failed calls during the switch: {:?}",
        report.failures
    );
    assert!(report.ok >= 40, "the load ran: {report:?}");
    let long = long.await.unwrap().json();
    assert!(
        still_running,
        "the long call was in flight when the switch finished"
    );
    assert_eq!(
        long["result"],
        json!(vec![before; 9]),
        "the call in flight and all its sub-calls finished on the old version"
    );
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_and_a_rollback_on_serve_switch_every_call_without_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    module(dir.path(), "app.js", &source("v1", ""));
    let v2 = module(
        dir.path(),
        "next.js",
        &source("v2", "madrpc.register('added', () => 'new');"),
    );
    let script = dir.path().join("app.js");
    let serve = Logged::start(
        &support::grid::serve_args(&script, &["--nodes", "2"]),
        &[("MADRPC_ADMIN_TOKEN", ADMIN), ("RUST_LOG", "debug")],
        "madrpc is serving at ",
    );
    let base = serve.url.clone();
    let url = format!("{base}/");
    let http = client();
    let cached = call("cached", json!({"x": 1}));
    rpc(&http, &url, &cached).await;
    let hit = rpc(&http, &url, &cached).await;
    assert_eq!(hit.headers["x-madrpc-cache"], "hit");
    assert_eq!(hit.json()["result"]["version"], "v1");

    let id = switch_under_load(&base, &[v2.to_str().unwrap()], "v1", "v2").await;

    let discover = rpc(&http, &url, &call("rpc.discover", json!({})))
        .await
        .json();
    assert_eq!(discover["result"]["info"]["x-madrpc-module"], id.as_str());
    let names: Vec<&str> = discover["result"]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"added"),
        "rpc.discover lists the new method: {names:?}"
    );
    let (_, _, metrics) =
        madrpc::http::get(&http, &format!("{base}/metrics"), Duration::from_secs(10))
            .await
            .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(&format!("madrpc_gateway_module_info{{module=\"{id}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"madrpc_gateway_deploys_total{action="deploy",outcome="activated"} 1"#),
        "{metrics}"
    );
    let status = get_json(&http, &format!("{base}/v1/status")).await;
    assert_eq!(status["deployed"]["id"], id.as_str());
    assert!(
        status["methods"]
            .as_array()
            .unwrap()
            .contains(&json!("added"))
    );
    let added = rpc(&http, &url, &call("added", json!({}))).await.json();
    assert_eq!(added["result"], "new");
    // The result cached for v1 is not served for v2.
    let fresh = rpc(&http, &url, &cached).await;
    assert_eq!(fresh.headers["x-madrpc-cache"], "miss");
    assert_eq!(fresh.json()["result"]["version"], "v2");

    let back = switch_under_load(&base, &["--rollback"], "v2", "v1").await;
    assert_ne!(back, id);
    let gone = rpc(&http, &url, &call("added", json!({}))).await.json();
    assert_eq!(gone["error"]["data"]["kind"], "method_not_found");
    assert!(
        serve.matching(|l| l.contains(ADMIN)).is_empty(),
        "the admin token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_hands_versions_to_joined_nodes_and_keeps_them_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = module(dir.path(), "app.js", &source("v1", ""));
    let v2 = module(dir.path(), "next.js", &source("v2", ""));
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let gateway_args = ["--admin-token", ADMIN, "--data-dir", data];
    let gateway = Process::gateway(&gateway_args);
    let base = gateway.url.clone();
    let http = client();
    let _first = Process::node(&v1, &["--join", &base]);
    assert!(nodes_become_available(&http, &base, 1, Duration::from_secs(30)).await);
    let id1 = deploy(&base, &[v1.to_str().unwrap()]).await;

    let id2 = switch_under_load(&base, &[v2.to_str().unwrap()], "v1", "v2").await;

    // A node started without --module serves the current version.
    let _second = Process::start_with_env(
        &[
            "node",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat",
            "200ms",
            "--join",
            &base,
        ],
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc node listening on ",
    );
    assert!(nodes_become_available(&http, &base, 2, Duration::from_secs(30)).await);
    let modules_of = |nodes: Value| -> Vec<String> {
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["module"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let nodes = get_json(&http, &format!("{base}/v1/nodes")).await;
    assert_eq!(modules_of(nodes), [id2.clone(), id2.clone()]);

    let back = switch_under_load(&base, &["--rollback"], "v2", "v1").await;
    assert_eq!(back, id1);
    let both_back = eventually(Duration::from_secs(10), || async {
        modules_of(get_json(&http, &format!("{base}/v1/nodes")).await) == [id1.clone(), id1.clone()]
    })
    .await;
    assert!(both_back, "both nodes serve the version rolled back to");

    // A restarted gateway serves the version deployed last.
    drop(gateway);
    let gateway = Process::gateway(&gateway_args);
    let listed = get_json(&http, &format!("{}/v1/modules", gateway.url)).await;
    assert_eq!(listed["current"], id1.as_str());
    let versions: Vec<&str> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [id1.as_str(), id2.as_str()]);
    let (ok, history, stderr) = run_madrpc(
        vec![
            "deploy".into(),
            "--history".into(),
            "--url".into(),
            gateway.url.clone(),
        ],
        Vec::new(),
    )
    .await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].starts_with(&format!("* {}", &id1[..12])),
        "{history}"
    );
    assert!(
        lines[1].starts_with(&format!("  {}", &id2[..12])) && lines[1].contains("next.js"),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_need_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = module(dir.path(), "app.js", &source("v1", ""));
    let path = v1.to_str().unwrap();
    let http = client();
    let args = |url: &str| -> Vec<String> {
        ["deploy", path, "--url", url]
            .iter()
            .map(|a| a.to_string())
            .collect()
    };

    let closed = Process::start(
        &["serve", path, "--nodes", "1", "--listen", "127.0.0.1:0"],
        "madrpc is serving at ",
    );
    let token = vec![("MADRPC_ADMIN_TOKEN".to_owned(), ADMIN.to_owned())];
    let (code, _, stderr) = run_madrpc_code(args(&closed.url), token.clone()).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("Deploys are off") && stderr.contains("--admin-token"),
        "{stderr}"
    );
    let refused = support::grid::post(
        &http,
        &format!("{}/v1/modules", closed.url),
        "application/wasm",
        std::fs::read(&v1).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["data"]["kind"], "deploys_disabled");

    let open = Process::start(
        &[
            "serve",
            path,
            "--nodes",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            ADMIN,
        ],
        "madrpc is serving at ",
    );
    let wrong = vec![("MADRPC_ADMIN_TOKEN".to_owned(), "not-the-token".to_owned())];
    let (code, _, stderr) = run_madrpc_code(args(&open.url), wrong).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("admin token"), "{stderr}");
    let (code, _, stderr) = run_madrpc_code(args(&open.url), Vec::new()).await;
    assert!(
        code == Some(1) && stderr.contains("Unauthorized"),
        "{stderr}"
    );
    let anonymous = support::grid::post(
        &http,
        &format!("{}/v1/modules/rollback", open.url),
        "application/json",
        "",
    )
    .await
    .unwrap();
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
    let download = madrpc::http::get(
        &http,
        &format!("{}/v1/modules/current", open.url),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(download.0, 401, "module downloads need a token too");
    let (code, _, stderr) = run_madrpc_code(
        vec![
            "deploy".into(),
            "--rollback".into(),
            "--url".into(),
            open.url.clone(),
        ],
        token,
    )
    .await;
    assert!(
        code == Some(1) && stderr.contains("no earlier version"),
        "{stderr}"
    );
    // A script that does not build, and bytes that are not a module.
    let broken = dir.path().join("broken.js");
    std::fs::write(&broken, "madrpc.register('x', () => {\n  return (1\n});\n").unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, "not a module").unwrap();
    for (file, expected) in [
        (&broken, "broken.js:3:"),
        (&garbage, "not a WebAssembly module"),
    ] {
        let (code, stderr) = deploy_status(file, &open.url).await;
        assert!(
            code == Some(1) && stderr.contains(expected),
            "{expected}: {stderr}"
        );
    }
    let (code, _, stderr) = run_madrpc_code(args("http://127.0.0.1:9"), Vec::new()).await;
    assert!(
        code == Some(1) && stderr.contains("cannot reach the grid"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_watch_swaps_the_module_on_save_and_keeps_it_through_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    module(dir.path(), "next.js", &source("v2", ""));
    let script = dir.path().join("app.js");
    module(dir.path(), "app.js", &source("v1", ""));
    let serve = Logged::start(
        &support::grid::serve_args(&script, &["--watch", "--nodes", "2"]),
        &[],
        "madrpc is serving at ",
    );
    let url = format!("{}/", serve.url);
    let http = client();
    let load = Load::start(&url, 4);
    load.answers(20).await;
    std::fs::write(&script, source("v2", "")).unwrap();
    let saved = std::time::Instant::now();
    let deployed = tokio::task::block_in_place(|| {
        serve.wait_for(|l| l.starts_with("deployed "), Duration::from_secs(60))
    });
    assert!(
        deployed.is_some(),
        "serve --watch deployed the change:\n{}",
        serve.output()
    );
    // Checked four times a second and built in about a second; the bound
    // leaves room for a debug build on a machine busy with other tests,
    // and still tells polling from a change noticed only much later.
    let took = saved.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "live {took:?} after the save"
    );
    let now = rpc(&http, &url, &call("version", json!({}))).await.json();
    assert_eq!(now["result"], "v2");

    std::fs::write(
        &script,
        "madrpc.register('version', () => {\n  return 'v3'\n}}\n",
    )
    .unwrap();
    let error = tokio::task::block_in_place(|| {
        serve.wait_for(|l| l.starts_with("error: "), Duration::from_secs(60))
    })
    .unwrap_or_else(|| panic!("the build error was printed:\n{}", serve.output()));
    assert!(
        error.contains("app.js:3:"),
        "the error names file:line:column: {error}"
    );
    let still = rpc(&http, &url, &call("version", json!({}))).await.json();
    assert_eq!(still["result"], "v2", "the old version keeps serving");
    load.answers(20).await;
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "failed calls: {:?}",
        report.failures
    );
    assert_eq!(report.versions.iter().collect::<Vec<_>>(), ["v1", "v2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grid_with_nodes_that_cannot_report_their_versions_refuses_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = module(dir.path(), "app.js", &source("v1", ""));
    let node = Process::node(&v1, &[]);
    let data = dir.path().join("data");
    let gateway = Process::gateway(&[
        "--admin-token",
        ADMIN,
        "--data-dir",
        data.to_str().unwrap(),
        "--node",
        &node.url,
    ]);
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    let (code, stderr) = deploy_status(&v1, &gateway.url).await;
    assert!(
        code == Some(1) && stderr.contains("--node or found with --discover"),
        "{stderr}"
    );
    // Calls go on as before, on the node's own module.
    let now = rpc(
        &http,
        &format!("{}/", gateway.url),
        &call("version", json!({})),
    )
    .await
    .json();
    assert_eq!(now["result"], "v1");
}

/// A version the gateway takes (its manifest is a madrpc module's) but a
/// node cannot load (it exports none of the guest ABI) fails the deploy at
/// once, with the node's reason, and calls stay on the current version.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_a_node_cannot_load_fails_the_deploy_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = module(dir.path(), "app.js", &source("v1", ""));
    let data = dir.path().join("data");
    let gateway = Process::gateway(&["--admin-token", ADMIN, "--data-dir", data.to_str().unwrap()]);
    let _node = Process::node(&v1, &["--join", &gateway.url]);
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    deploy(&gateway.url, &[v1.to_str().unwrap()]).await;

    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    madrpc::manifest::Manifest {
        abi: madrpc::manifest::ABI_VERSION,
        script: "broken.js".into(),
        methods: vec!["version".into()],
        cache: Default::default(),
    }
    .append_to(&mut wasm);
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, wasm).unwrap();
    let started = std::time::Instant::now();
    let (code, stderr) = deploy_status(&broken, &gateway.url).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not export"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the deploy failed only after {:?}, not at once",
        started.elapsed()
    );
    let now = rpc(
        &http,
        &format!("{}/", gateway.url),
        &call("version", json!({})),
    )
    .await
    .json();
    assert_eq!(now["result"], "v1", "{now}");
}

/// A gateway with an admin token and one node joined to it serving `v1`,
/// heartbeating every 300 ms: a deploy waits for the node to report the new
/// version, so it lasts a few hundred milliseconds.
async fn slow_grid(v1: &std::path::Path) -> (Logged, Process) {
    let gateway = Logged::start(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--health-interval",
            "400ms",
            "--admin-token",
            ADMIN,
        ],
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc gateway listening on ",
    );
    let node = Process::start_with_env(
        &[
            "node",
            "--module",
            v1.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--heartbeat",
            "300ms",
            "--join",
            &gateway.url,
        ],
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc node listening on ",
    );
    assert!(nodes_become_available(&client(), &gateway.url, 1, Duration::from_secs(30)).await);
    (gateway, node)
}

/// POSTs the module at `path` to the gateway at `base` with the admin
/// token, in a task of its own.
fn post_module(base: &str, path: &std::path::Path) -> tokio::task::JoinHandle<Value> {
    let url = format!("{base}/v1/modules");
    let wasm = std::fs::read(path).unwrap();
    tokio::spawn(async move {
        let authorization = format!("Bearer {ADMIN}");
        let reply = support::grid::post_with(
            &client(),
            &url,
            "application/wasm",
            &[("authorization", &authorization)],
            wasm,
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.json());
        reply.json()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_runs_to_its_end_when_its_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = module(dir.path(), "app.js", &source("v1", ""));
    let v2 = module(dir.path(), "next.js", &source("v2", ""));
    let (gateway, _node) = slow_grid(&v1).await;
    let base = gateway.url.clone();
    let version = || async {
        rpc(&client(), &format!("{base}/"), &call("version", json!([])))
            .await
            .json()["result"]
            .clone()
    };
    assert_eq!(version().await, "v1");

    let client_side = post_module(&base, &v2);
    let started = tokio::task::block_in_place(|| {
        gateway.wait_for(
            |l| l.contains("deploying a module version"),
            Duration::from_secs(10),
        )
    });
    assert!(started.is_some(), "{}", gateway.output());
    assert!(
        !client_side.is_finished(),
        "the deploy finished before its client could go away"
    );
    client_side.abort();

    assert!(
        eventually(Duration::from_secs(15), || async {
            version().await == "v2"
        })
        .await,
        "the deploy stopped with its client: {}",
        gateway.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_sent_together_run_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = module(dir.path(), "app.js", &source("v1", ""));
    let v2 = module(dir.path(), "next.js", &source("v2", ""));
    let v3 = module(dir.path(), "last.js", &source("v3", ""));
    let (gateway, _node) = slow_grid(&v1).await;
    let base = gateway.url.clone();
    let first = post_module(&base, &v1).await.unwrap();
    let id1 = first["id"].clone();

    let (a, b) = tokio::join!(post_module(&base, &v2), post_module(&base, &v3));
    let (a, b) = (a.unwrap(), b.unwrap());
    // The one that ran second replaced the one that ran first, never both
    // the version before them.
    let (earlier, later) = if b["previous"] == a["id"] {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(earlier["previous"], id1, "{earlier} {later}");
    assert_eq!(later["previous"], earlier["id"], "{earlier} {later}");
}
