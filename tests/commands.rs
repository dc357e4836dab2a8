//! The README's promises about the commands that run a grid (`serve`,
//! `gateway`, `node`, `call`, `deploy`) that no other test file covers,
//! through real processes on 127.0.0.1: their names, defaults, environment
//! variables, health, heartbeats and built-in methods.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::fake_node::{FakeNode, Reply};
use support::grid::{
    Process, client, eventually, get_json, nodes_become_available, rpc, spawn_rpc,
};
use support::logged::Logged;
use support::texts;

fn request(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string()
}

async fn call(url: &str, method: &str, params: Value) -> Value {
    rpc(&client(), &format!("{url}/"), &request(method, params))
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_names_its_local_nodes_and_stops_on_ctrl_c() {
    let script = support::script("claims.js");
    let mut serve = Logged::start(
        &support::grid::serve_args(&script, &["--nodes", "2", "--workers", "1"]),
        &[],
        "madrpc is serving at ",
    );
    let http = client();
    let nodes = get_json(&http, &format!("{}/v1/nodes", serve.url)).await;
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["url"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local:0", "local:1"], "{nodes}");
    assert!(
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["origin"] == "local")
    );

    let in_flight = spawn_rpc(
        &http,
        &format!("{}/", serve.url),
        &request("busy", json!([700])),
    );
    let started = eventually(Duration::from_secs(10), || async {
        let nodes = get_json(&http, &format!("{}/v1/nodes", serve.url)).await;
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["in_flight"] == 1)
    })
    .await;
    assert!(started);
    // `serve` takes no joins: its cluster token is one nobody knows.
    let announcement = json!({"url": "http://127.0.0.1:9", "methods": ["add"]}).to_string();
    for token in [None, Some("Bearer guess")] {
        let headers: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
        let reply = support::grid::post_with(
            &http,
            &format!("{}/v1/nodes", serve.url),
            "application/json",
            &headers,
            announcement.clone(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 401, "{token:?}");
    }
    serve.signal(libc::SIGINT);
    serve
        .wait_for(|l| l.contains("shutting down"), Duration::from_secs(5))
        .expect("the shutdown is logged");
    // No new calls: they are refused as `draining` (the listener stays open
    // for the sub-calls of calls in flight), or the listener is closed.
    let refused = eventually(Duration::from_secs(5), || async {
        let reply = madrpc::http::post_json(
            &http,
            &format!("{}/", serve.url),
            bytes::Bytes::from(request("add", json!([1, 2]))),
            Duration::from_secs(5),
        )
        .await;
        match reply {
            Err(madrpc::http::HttpError::Unreachable { .. }) => true,
            Ok((status, _, body)) => {
                let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                status == 503 && body["error"]["data"]["kind"] == "draining"
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(refused, "calls were still taken after Ctrl-C");
    // The call in flight still gets its answer, then serve exits cleanly.
    assert_eq!(in_flight.await.unwrap().json()["result"], 700);
    let status = tokio::task::spawn_blocking(move || serve.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("serve exits");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_node_list_serves_calls() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "claims.js");
    let node = Process::node(&module, &[]);
    let gateway = Process::gateway(&["--node", &node.url]);
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    let nodes = get_json(&http, &format!("{}/v1/nodes", gateway.url)).await;
    assert_eq!(nodes["nodes"][0]["origin"], "static", "{nodes}");
    assert_eq!(nodes["nodes"][0]["url"], node.url.as_str(), "{nodes}");
    assert_eq!(
        call(&gateway.url, "add", json!([40, 2])).await["result"],
        42
    );
    assert_eq!(
        get_json(&http, &format!("{}/health", node.url)).await["served"],
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_variables_stand_in_for_their_flags() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "claims.js");
    let module = module.to_str().unwrap();
    let token = [("MADRPC_JOIN_TOKEN", "s3cret")];
    let gateway = Logged::start(
        &support::grid::gateway_args(&[]),
        &token,
        "madrpc gateway listening on ",
    );
    let node_args = [
        "node",
        "--module",
        module,
        "--listen",
        "127.0.0.1:0",
        "--heartbeat",
        "200ms",
        "--join",
        &gateway.url,
    ];
    let intruder = Logged::start(
        &node_args,
        &[("MADRPC_JOIN_TOKEN", "wrong")],
        "madrpc node listening on ",
    );
    let member = Logged::start(&node_args, &token, "madrpc node listening on ");
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    intruder
        .wait_for(|l| l.contains("401"), Duration::from_secs(10))
        .expect("the intruder is refused");
    let nodes = get_json(&http, &format!("{}/v1/nodes", gateway.url)).await;
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes["nodes"][0]["url"], member.url.as_str(), "{nodes}");

    // `madrpc call` finds the gateway through MADRPC_URL.
    let output = support::madrpc()
        .args(["call", "add", "[20, 22]"])
        .env("MADRPC_URL", format!("{}/", gateway.url))
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "42");

    // So does `madrpc deploy`.
    let output = support::madrpc()
        .args(["deploy", "--history"])
        .env("MADRPC_URL", &gateway.url)
        .output()
        .unwrap();
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("no version deployed on {}", gateway.url)),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_reports_its_health() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "claims.js");
    let node = Process::node(&module, &["--workers", "3", "--insecure-public-calls"]);
    let http = client();
    let health = get_json(&http, &format!("{}/health", node.url)).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["workers"], 3);
    assert_eq!(health["in_flight"], 0);
    assert_eq!(health["served"], 0);
    let methods = health["methods"].as_array().unwrap();
    assert!(
        methods.contains(&json!("add")) && methods.contains(&json!("fire_and_forget")),
        "{health}"
    );
    // Its module: the SHA-256 of the file, and no cacheable function.
    let sha256: String = {
        use sha2::Digest;
        sha2::Sha256::digest(std::fs::read(&module).unwrap())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    };
    assert_eq!(health["module"]["hash"], sha256, "{health}");
    assert_eq!(health["module"]["cache"], json!({}), "{health}");
    let slow = spawn_rpc(
        &http,
        &format!("{}/", node.url),
        &request("busy", json!([500])),
    );
    let running = eventually(Duration::from_secs(10), || async {
        get_json(&http, &format!("{}/health", node.url)).await["in_flight"] == 1
    })
    .await;
    assert!(running);
    assert_eq!(slow.await.unwrap().json()["result"], 500);
    assert_eq!(
        get_json(&http, &format!("{}/health", node.url)).await["served"],
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_checks_each_node_every_second() {
    let fake = FakeNode::start(&["add"], vec![], Reply::Close).await;
    let _gateway = Process::start(
        &["gateway", "--listen", "127.0.0.1:0", "--node", &fake.url],
        "madrpc gateway listening on ",
    );
    let checked = eventually(Duration::from_secs(10), || async {
        fake.health_checks().len() >= 4
    })
    .await;
    assert!(checked);
    let checks = fake.health_checks();
    let span = checks[3] - checks[0];
    assert!(
        span >= Duration::from_millis(2700) && span <= Duration::from_millis(4200),
        "three intervals took {span:?}"
    );
}

/// `madrpc node --join` heartbeats its gateway every second by default: a
/// stand-in gateway counts the heartbeats.
#[tokio::test(flavor = "multi_thread")]
async fn a_joined_node_heartbeats_every_second() {
    let gateway = FakeNode::start(&["add"], vec![], Reply::Http(200, "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "claims.js");
    let _node = Process::start_with_env(
        &[
            "node",
            "--module",
            module.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--join",
            &gateway.url,
        ],
        &[("MADRPC_JOIN_TOKEN", support::grid::TEST_TOKEN)],
        "madrpc node listening on ",
    );
    let heartbeat = |count: usize| {
        let gateway = &gateway;
        async move {
            assert!(
                eventually(Duration::from_secs(10), || async {
                    gateway.calls() >= count
                })
                .await,
                "fewer than {count} heartbeats"
            );
            Instant::now()
        }
    };
    let first = heartbeat(1).await;
    let fourth = heartbeat(4).await;
    let span = fourth - first;
    assert!(
        span >= Duration::from_millis(2700) && span <= Duration::from_millis(3600),
        "three heartbeat intervals took {span:?}"
    );
}

/// A node started with `--join` and no `--module` waits, saying why, while
/// its gateway cannot be reached or has no module deployed, then serves the
/// module deployed on it.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_a_module_waits_for_its_gateways() {
    use support::load::{module, run_madrpc, source};
    let token = [("MADRPC_JOIN_TOKEN", support::grid::TEST_TOKEN)];
    let waiting = "waiting for the module to serve";
    let node_args = |gateway: &str| {
        vec![
            "node".to_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--heartbeat".into(),
            "200ms".into(),
            "--join".into(),
            gateway.to_owned(),
        ]
    };
    let args = node_args("http://127.0.0.1:9");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let unreachable = Logged::spawn(&args, &token);
    unreachable
        .wait_for(
            |l| l.contains("cannot reach the gateway") && l.contains(waiting),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no reason given:\n{}", unreachable.output()));

    let dir = tempfile::tempdir().unwrap();
    let app = module(dir.path(), "app.js", &source("v1", ""));
    let data = dir.path().join("data");
    let gateway = Process::gateway(&["--admin-token", "adm", "--data-dir", data.to_str().unwrap()]);
    let args = node_args(&gateway.url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Logged::spawn(&args, &token);
    node.wait_for(
        |l| l.contains("the gateway has no deployed module yet") && l.contains(waiting),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("no reason given:\n{}", node.output()));
    assert!(node.matching(|l| l.contains("listening on")).is_empty());

    let (ok, _, stderr) = run_madrpc(
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
    node.wait_for(
        |l| l.contains("madrpc node listening on"),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|| panic!("the node never started serving:\n{}", node.output()));
    assert!(nodes_become_available(&client(), &gateway.url, 1, Duration::from_secs(30)).await);
    assert_eq!(
        call(&gateway.url, "version", json!([])).await["result"],
        "v1"
    );
}

/// `_metrics` and `_info` are answered by madrpc for the original MaDRPC's
/// clients; a script's own functions of those names are shadowed.
#[tokio::test(flavor = "multi_thread")]
async fn the_built_ins_shadow_a_scripts_functions_of_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("shadowed.js");
    std::fs::write(
        &script,
        "madrpc.register('_info', () => 'mine');\nmadrpc.register('_metrics', () => 'mine');\n",
    )
    .unwrap();
    let serve = Logged::start(
        &support::grid::serve_args(&script, &["--nodes", "1"]),
        &[],
        "madrpc is serving at ",
    );
    let info = call(&serve.url, "_info", json!([])).await;
    assert_eq!(info["result"]["server_type"], "orchestrator", "{info}");
    let metrics = call(&serve.url, "_metrics", json!([])).await;
    assert!(metrics["result"]["uptime_ms"].is_u64(), "{metrics}");
}
