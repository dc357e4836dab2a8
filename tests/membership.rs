//! Closed membership and nodes that take calls only from their cluster,
//! through real gateway and node processes on 127.0.0.1.

mod support;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::grid::{
    HttpReply, Process, TEST_TOKEN, available_nodes, client, eventually, get_json,
    nodes_become_available, post, post_with, rpc,
};
use support::logged::Logged;

const ADD: &str = r#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}"#;

fn announce(url: &str) -> String {
    json!({"url": url, "methods": ["add"]}).to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts a 401 with `WWW-Authenticate: Bearer` and the error object
/// `error` (the body itself, or its `error` member) of kind unauthorized.
fn assert_unauthorized(reply: &HttpReply, hint: &str) {
    assert_eq!(
        reply.status,
        401,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    let body = reply.json();
    let error = if body.get("jsonrpc").is_some() {
        &body["error"]
    } else {
        &body
    };
    assert_eq!(error["code"], -32030, "{body}");
    assert_eq!(error["data"]["kind"], "unauthorized", "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(hint), "{message}");
}

async fn node_count(http: &madrpc::http::HttpClient, gateway: &str) -> usize {
    get_json(http, &format!("{gateway}/v1/nodes")).await["nodes"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn join_is_refused_without_the_token_the_gateway_printed() {
    let mut gateway = Process::start(
        &support::grid::gateway_args(&[]),
        "madrpc gateway listening on ",
    );
    let token_line = gateway
        .wait_for_line(|l| l.starts_with("join token: "), Duration::from_secs(5))
        .expect("the gateway prints a join token");
    let token = token_line["join token: ".len()..].trim().to_owned();
    assert_eq!(token.len(), 64, "{token_line}");
    let hint = gateway
        .wait_for_line(
            |l| l.starts_with("start a node with: "),
            Duration::from_secs(5),
        )
        .expect("the gateway prints the node command");
    assert!(
        hint.contains(&format!("MADRPC_JOIN_TOKEN={token} madrpc node"))
            && hint.contains(&format!("--join {}", gateway.url)),
        "{hint}"
    );

    let http = client();
    let join = format!("{}/v1/nodes", gateway.url);
    let body = announce("http://127.0.0.1:9");
    let reply = post(&http, &join, "application/json", body.clone())
        .await
        .unwrap();
    assert_unauthorized(&reply, "MADRPC_JOIN_TOKEN");
    for wrong in [
        bearer("wrong"),
        bearer(&token[..63]),
        format!("Basic {token}"),
    ] {
        let reply = post_with(
            &http,
            &join,
            "application/json",
            &[("authorization", &wrong)],
            body.clone(),
        )
        .await
        .unwrap();
        assert_unauthorized(&reply, "join token");
    }
    let leave = format!("{}/v1/nodes/leave", gateway.url);
    let reply = post(&http, &leave, "application/json", body).await.unwrap();
    assert_unauthorized(&reply, "join token");
    assert_eq!(node_count(&http, &gateway.url).await, 0);

    // The printed command works.
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let module = module.to_str().unwrap();
    let _node = Process::start_with_env(
        &[
            "node",
            "--module",
            module,
            "--listen",
            "127.0.0.1:0",
            "--heartbeat",
            "200ms",
            "--join",
            &gateway.url,
        ],
        &[("MADRPC_JOIN_TOKEN", &token)],
        "madrpc node listening on ",
    );
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    let reply = rpc(&http, &format!("{}/", gateway.url), ADD).await;
    assert_eq!(reply.json()["result"], 3);
    assert_eq!(node_count(&http, &gateway.url).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn open_join_and_public_nodes_need_explicit_flags() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let module = module.to_str().unwrap();

    // A node without a token does not start...
    let output = support::run_cli(
        dir.path(),
        &["node", "--module", module, "--listen", "127.0.0.1:0"],
    );
    let stderr = support::texts(&output).1;
    assert!(!output.status.success());
    assert!(
        stderr.contains("--join-token") && stderr.contains("--insecure-public-calls"),
        "{stderr}"
    );

    // ...unless made public, with a warning, and then anyone may call it.
    let node = Logged::start(
        &[
            "node",
            "--module",
            module,
            "--listen",
            "127.0.0.1:0",
            "--insecure-public-calls",
            "--heartbeat",
            "200ms",
        ],
        &[("NO_COLOR", "1")],
        "madrpc node listening on ",
    );
    let warned = |l: &str| l.contains("WARN") && l.contains("--insecure-public-calls: anyone");
    assert!(
        node.wait_for(warned, Duration::from_secs(5)).is_some(),
        "{}",
        node.output()
    );
    let http = client();
    let reply = rpc(&http, &format!("{}/", node.url), ADD).await;
    assert_eq!(reply.json()["result"], 3);

    // An open gateway warns at start, takes a join without a token, and
    // presents none.
    let gateway = Logged::start(
        &support::grid::gateway_args(&["--insecure-open-join"]),
        &[("NO_COLOR", "1")],
        "madrpc gateway listening on ",
    );
    let warned = |l: &str| l.contains("WARN") && l.contains("--insecure-open-join: any node");
    assert!(
        gateway.wait_for(warned, Duration::from_secs(5)).is_some(),
        "{}",
        gateway.output()
    );
    assert!(
        gateway
            .matching(|l| l.starts_with("join token:"))
            .is_empty()
    );
    let reply = post(
        &http,
        &format!("{}/v1/nodes", gateway.url),
        "application/json",
        announce(&node.url),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 204);
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(10)).await);
    let reply = rpc(&http, &format!("{}/", gateway.url), ADD).await;
    assert_eq!(reply.json()["result"], 3);

    // The flags that would close it again conflict with it.
    let output = support::run_cli(
        dir.path(),
        &["gateway", "--insecure-open-join", "--join-token", "x"],
    );
    assert!(!output.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn join_with_a_path_query_or_credentials_is_refused() {
    let gateway = Process::gateway(&[]);
    let http = client();
    let join = format!("{}/v1/nodes", gateway.url);
    let auth = bearer(TEST_TOKEN);
    for url in [
        "http://127.0.0.1:9/admin/delete?x=",
        "http://127.0.0.1:9/admin",
        "http://127.0.0.1:9?x=1",
        "http://127.0.0.1:9/#top",
        "http://user:pw@127.0.0.1:9",
        "ftp://127.0.0.1:9",
        "127.0.0.1:9",
        "http://127.0.0.1",
    ] {
        let reply = post_with(
            &http,
            &join,
            "application/json",
            &[("authorization", &auth)],
            announce(url),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 422, "{url} was not refused");
        let error = reply.json();
        assert_eq!(error["data"]["kind"], "invalid_node_url", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("HOST:PORT"),
            "{error}"
        );
    }
    assert_eq!(node_count(&http, &gateway.url).await, 0);

    // With --node-network (repeatable), a node outside the networks is
    // refused too, and so is a host name; one inside joins.
    let fenced = Process::gateway(&[
        "--node-network",
        "10.0.0.0/8",
        "--node-network",
        "127.0.0.2/32",
    ]);
    let fenced_join = format!("{}/v1/nodes", fenced.url);
    let credentials = [("authorization", auth.as_str())];
    let join_fenced = |url: &str| {
        post_with(
            &http,
            &fenced_join,
            "application/json",
            &credentials,
            announce(url),
        )
    };
    for (url, hint) in [
        ("http://127.0.0.1:9", "--node-network"),
        ("http://localhost:9", "IP address"),
    ] {
        let reply = join_fenced(url).await.unwrap();
        assert_eq!(reply.status, 422, "{url}");
        assert_eq!(reply.json()["data"]["kind"], "invalid_node_url");
        assert!(
            reply.json()["message"].as_str().unwrap().contains(hint),
            "{}",
            reply.json()
        );
    }
    assert_eq!(node_count(&http, &fenced.url).await, 0);
    let reply = join_fenced("http://127.0.0.2:9").await.unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(node_count(&http, &fenced.url).await, 1);

    // The same rules hold for --node.
    let dir = tempfile::tempdir().unwrap();
    let output = support::run_cli(
        dir.path(),
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--join-token",
            "t",
            "--node",
            "http://127.0.0.1:9/admin?x=",
        ],
    );
    let stderr = support::texts(&output).1;
    assert!(!output.status.success());
    assert!(stderr.contains("cannot use --node"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_token_is_revoked_drops_out() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("join-token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let interval = Duration::from_millis(500);
    let gateway = Process::start(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--health-interval",
            "500ms",
            "--join-token-file",
            token_file.to_str().unwrap(),
        ],
        "madrpc gateway listening on ",
    );
    let module = support::build_into(dir.path(), "grid.js");
    let module = module.to_str().unwrap();
    let node = |token: &str| {
        Process::start_with_env(
            &[
                "node",
                "--module",
                module,
                "--listen",
                "127.0.0.1:0",
                "--heartbeat",
                "100ms",
                "--join",
                &gateway.url,
            ],
            &[("MADRPC_JOIN_TOKEN", token)],
            "madrpc node listening on ",
        )
    };
    let old = node("first-token");
    let http = client();
    let url = format!("{}/", gateway.url);
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    assert_eq!(rpc(&http, &url, ADD).await.json()["result"], 3);

    std::fs::write(&token_file, "second-token\n").unwrap();
    let revoked = Instant::now();
    gateway.signal(libc::SIGHUP);
    let gone = eventually(interval * 3 + Duration::from_secs(2), || async {
        available_nodes(&http, &gateway.url).await == 0
    })
    .await;
    assert!(gone, "the node with the revoked token stayed in rotation");
    let took = revoked.elapsed();
    // Within three health intervals of the revocation, give or take the
    // signal's handling and this test's polling (every 50 ms).
    assert!(
        took < interval * 3 + Duration::from_millis(350),
        "the revoked node left rotation only after {took:?}"
    );
    // Still alive and answering its health check all along.
    let health = get_json(&http, &format!("{}/health", old.url)).await;
    assert_eq!(health["status"], "ok");
    let reply = rpc(&http, &url, ADD).await;
    assert_eq!(reply.status, 503, "{}", reply.json());
    assert!(
        eventually(Duration::from_secs(10), || async {
            node_count(&http, &gateway.url).await == 0
        })
        .await,
        "the revoked node was never removed"
    );
    eprintln!("revoked node left rotation after {} ms", took.as_millis());

    // A node with the new token joins and serves.
    let _new = node("second-token");
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    assert_eq!(rpc(&http, &url, ADD).await.json()["result"], 3);
    assert_eq!(node_count(&http, &gateway.url).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_direct_node_call_without_the_credential_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let node = Process::node(&module, &[]);
    let http = client();
    let endpoint = format!("{}/", node.url);
    let internal = format!("{}/v1/call/add", node.url);

    let reply = rpc(&http, &endpoint, ADD).await;
    assert_unauthorized(&reply, "Authorization: Bearer");
    assert_eq!(reply.json()["id"], Value::Null);
    let reply = post(&http, &internal, "application/json", "[1,2]")
        .await
        .unwrap();
    assert_unauthorized(&reply, "call the gateway");
    let wrong = bearer("not-the-token");
    let reply = post_with(
        &http,
        &endpoint,
        "application/json",
        &[("authorization", &wrong)],
        ADD,
    )
    .await
    .unwrap();
    assert_unauthorized(&reply, "Authorization: Bearer");
    assert_eq!(
        get_json(&http, &format!("{}/health", node.url)).await["status"],
        "ok"
    );

    let right = bearer(TEST_TOKEN);
    let reply = post_with(
        &http,
        &endpoint,
        "application/json",
        &[("authorization", &right)],
        ADD,
    )
    .await
    .unwrap();
    assert_eq!(reply.json()["result"], 3);

    // With the token and --insecure-public-calls, a node takes both.
    let public = Process::node(&module, &["--insecure-public-calls"]);
    let reply = rpc(&http, &format!("{}/", public.url), ADD).await;
    assert_eq!(reply.json()["result"], 3);
    let reply = post_with(
        &http,
        &format!("{}/", public.url),
        "application/json",
        &[("authorization", &right)],
        ADD,
    )
    .await
    .unwrap();
    assert_eq!(reply.json()["result"], 3);
    drop(public);

    // A gateway with the cluster token reaches the node as a static node;
    // one with another token gets node_failed, never the node's refusal.
    let gateway = Process::gateway(&["--node", &node.url]);
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(10)).await);
    let reply = rpc(&http, &format!("{}/", gateway.url), ADD).await;
    assert_eq!(reply.json()["result"], 3);
    let stranger = Process::gateway(&["--node", &node.url, "--join-token", "other"]);
    assert!(nodes_become_available(&http, &stranger.url, 1, Duration::from_secs(10)).await);
    let reply = rpc(&http, &format!("{}/", stranger.url), ADD).await;
    let error = &reply.json()["error"];
    assert_eq!(error["code"], -32012, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("join token"),
        "{error}"
    );
}

/// Every request a fake node received: its path and `Authorization`.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

async fn record_request(
    axum::extract::State(received): axum::extract::State<Received>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .unwrap_or_default();
    let path = request
        .uri()
        .path_and_query()
        .map_or(String::new(), ToString::to_string);
    received.lock().unwrap().push((path, credential));
    next.run(request).await
}

/// A fake node without the call channel: answers `/health` like a node,
/// and `/v1/call/{method}` with whatever `reply` makes of the method; it
/// records every request.
async fn fake_node(reply: fn(&str) -> Response) -> (String, Received, tokio::task::JoinHandle<()>) {
    use axum::extract::Path;
    use axum::routing::{get, post};
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/health",
            get(|| async {
                let mut response =
                    axum::Json(json!({"status": "ok", "methods": ["add", "big", "bad", "html"]}))
                        .into_response();
                response
                    .headers_mut()
                    .insert("x-madrpc-node-reply", HeaderValue::from_static("1"));
                response
            }),
        )
        .route(
            "/v1/call/{method}",
            post(move |Path(method): Path<String>| async move { reply(&method) }),
        )
        // A node without the call channel: calls go over its HTTP route.
        .route(
            madrpc::wire::PATH,
            get(|| async {
                let mut response = StatusCode::NOT_FOUND.into_response();
                response
                    .headers_mut()
                    .insert("x-madrpc-node-reply", HeaderValue::from_static("1"));
                response
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            received.clone(),
            record_request,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received, server)
}

fn foreign_reply(method: &str) -> Response {
    let marked_json = |body: Vec<u8>| {
        let mut response = (StatusCode::OK, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-madrpc-node-reply", HeaderValue::from_static("1"));
        response
    };
    match method {
        "html" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<h1>internal admin page: secret</h1>",
        )
            .into_response(),
        "big" => marked_json(format!("\"{}\"", "x".repeat(2 << 20)).into_bytes()),
        "bad" => marked_json(b"secret, and not JSON".to_vec()),
        _ => (StatusCode::IM_A_TEAPOT, "secret").into_response(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_that_is_not_a_node_protocol_reply_never_reaches_the_client() {
    let (fake, received, server) = fake_node(foreign_reply).await;
    let gateway = Process::gateway(&["--node", &fake, "--max-result", "1MiB"]);
    let http = client();
    for method in ["html", "big", "bad", "add"] {
        support::grid::expect_node_failed(&http, &gateway.url, method).await;
    }
    server.abort();
    // The gateway asked for its own routes only (the channel once, found
    // missing, then the call route), every time with the cluster
    // credential.
    let received = received.lock().unwrap().clone();
    let calls: Vec<&str> = received
        .iter()
        .map(|(path, _)| path.as_str())
        .filter(|path| *path != "/health")
        .collect();
    assert_eq!(
        calls,
        [
            madrpc::wire::PATH,
            "/v1/call/html",
            "/v1/call/big",
            "/v1/call/bad",
            "/v1/call/add"
        ]
    );
    assert!(
        received.len() > calls.len(),
        "no health check: {received:?}"
    );
    let credential = bearer(support::grid::TEST_TOKEN);
    assert!(
        received.iter().all(|(_, c)| *c == credential),
        "{received:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_health_check_answered_by_something_else_admits_no_node() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Answers every path with 200 and a node-like JSON object, unmarked.
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let app = axum::Router::new().fallback(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        async { axum::Json(json!({"status": "ok", "methods": ["add"]})) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let gateway = Process::gateway(&["--node", &other]);
    let http = client();
    // A second probe only starts once the first one's outcome is recorded.
    let probed_twice = eventually(Duration::from_secs(10), || async {
        requests.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(probed_twice, "the gateway never probed the other service");
    let nodes = get_json(&http, &format!("{}/v1/nodes", gateway.url)).await;
    assert_eq!(nodes["nodes"][0]["url"], other.as_str());
    assert_eq!(nodes["nodes"][0]["available"], false, "{nodes}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_presents_the_token_on_joins_and_sub_calls() {
    use axum::http::HeaderMap;
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    // A stand-in gateway that records the credentials it is shown and
    // answers sub-call batches of `double`.
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = |seen: &Arc<Mutex<Vec<(String, String)>>>, route: &str, headers: &HeaderMap| {
        let credential = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        seen.lock().unwrap().push((route.to_owned(), credential));
    };
    let (on_join, on_call) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/v1/nodes",
            post(move |headers: HeaderMap| async move {
                record(&on_join, "join", &headers);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/",
            post(move |headers: HeaderMap, body: axum::body::Bytes| async move {
                record(&on_call, "sub-call", &headers);
                let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
                let replies: Vec<Value> = batch
                    .iter()
                    .map(|call| {
                        json!({"jsonrpc": "2.0", "id": call["id"], "result": call["params"][0].as_i64().unwrap() * 2})
                    })
                    .collect();
                axum::Json(replies)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "fanout.js");
    let node = Process::node(&module, &["--join", &gateway]);
    let http = client();
    let right = bearer(TEST_TOKEN);
    let reply = post_with(
        &http,
        &format!("{}/", node.url),
        "application/json",
        &[("authorization", &right)],
        r#"{"jsonrpc":"2.0","method":"sync_double_plus_one","params":[20],"id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply.json()["result"], 41, "{}", reply.json());
    let joined = eventually(Duration::from_secs(10), || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(route, _)| route == "join")
    })
    .await;
    assert!(joined, "the node never joined");
    let seen = seen.lock().unwrap().clone();
    for route in ["join", "sub-call"] {
        let credentials: Vec<&String> = seen
            .iter()
            .filter(|(r, _)| r == route)
            .map(|(_, c)| c)
            .collect();
        assert!(!credentials.is_empty(), "no {route} reached the gateway");
        assert!(
            credentials.iter().all(|c| **c == right),
            "{route}: {credentials:?}"
        );
    }
    server.abort();
}
