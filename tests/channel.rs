//! The call channel between a gateway and a node process: calls share one
//! long-lived connection per node, the channel takes calls only from the
//! cluster, a call the gateway gives up on stops on the node, and a new
//! cluster token takes effect on the next call even on an open channel,
//! and a reply on it that is not the node protocol's never reaches a client.

mod support;

use futures::future::join_all;
use madrpc::wire::{self, FrameReader, Tag};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::grid::{
    Process, TEST_TOKEN, client, eventually, get_json, nodes_become_available, rpc,
};
use support::logged::Logged;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn call(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    rpc(&client(), &format!("{url}/"), &body).await.json()
}

/// Established TCP connections whose local port is `port`, from
/// `/proc/net/tcp`.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.split(':').nth(1))
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_share_one_channel_to_their_node() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let node = Process::node(&module, &[]);
    let gateway = Process::gateway(&["--node", &node.url]);
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);

    // Sixteen calls at once, each long enough that they overlap: over HTTP
    // each would hold a connection of its own.
    let replies = join_all((0..16).map(|i| call(&gateway.url, "busy", json!([30 + i])))).await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["result"], 30 + i as u64, "{reply}");
    }
    assert_eq!(
        get_json(&http, &format!("{}/health", node.url)).await["served"],
        16
    );
    // The channel, and the health checks' keep-alive connection (this
    // test's own /health request closes when its client is dropped).
    let open = established_to(port_of(&node.url));
    assert!(
        (1..=3).contains(&open),
        "{open} connections to the node for 16 concurrent calls"
    );
}

/// Asks `node` for the call channel on a raw socket; returns the reply
/// head and the socket.
async fn upgrade(node: &str, token: Option<&str>) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(node.trim_start_matches("http://"))
        .await
        .unwrap();
    let authorization = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: node\r\nconnection: upgrade\r\nupgrade: {}\r\n{authorization}\r\n",
        wire::PATH,
        wire::PROTOCOL
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "no reply head");
        head.push(byte[0]);
    }
    (String::from_utf8(head).unwrap().to_lowercase(), stream)
}

async fn send_call(
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    id: u64,
    method: &str,
    params: &str,
) {
    let meta = [("x-madrpc-depth", "0".to_owned())];
    let head = wire::call_head(id, method, &meta, params.len());
    stream.write_all(&head).await.unwrap();
    stream.write_all(params.as_bytes()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_channel_takes_calls_only_from_the_cluster_and_stops_calls_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let node = Process::node(&module, &[]);

    let (head, _) = upgrade(&node.url, None).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (head, _) = upgrade(&node.url, Some("wrong-token")).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");

    let (head, mut stream) = upgrade(&node.url, Some(TEST_TOKEN)).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains(&format!("upgrade: {}", wire::PROTOCOL)),
        "{head}"
    );
    assert!(head.contains("x-madrpc-node-reply: 1"), "{head}");
    let (read, mut write) = stream.split();
    let mut replies = FrameReader::new(read);

    // A long call, then two short ones: the short ones' replies come first,
    // matched by id.
    let started = Instant::now();
    send_call(&mut write, 1, "busy", "[5000]").await;
    send_call(&mut write, 2, "add", "[1,2]").await;
    send_call(&mut write, 3, "fail", "[]").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let frame = replies.next(1 << 20).await.unwrap().unwrap();
        seen.push((frame.id, frame.tag, frame.body));
    }
    seen.sort_by_key(|(id, _, _)| *id);
    assert_eq!(seen[0].0, 2);
    assert_eq!((seen[0].1, &seen[0].2[..]), (Tag::Ok, &b"3"[..]));
    assert_eq!((seen[1].0, seen[1].1), (3, Tag::Error));
    let error: Value = serde_json::from_slice(&seen[1].2).unwrap();
    assert_eq!(error["data"]["kind"], "guest_threw", "{error}");

    // Giving the long call up stops it on the node well before its 5 s.
    let http = client();
    let health = format!("{}/health", node.url);
    assert_eq!(get_json(&http, &health).await["in_flight"], 1);
    let cancel = wire::frame_head(Tag::Cancel, 1, 0);
    write.write_all(&cancel).await.unwrap();
    assert!(
        eventually(Duration::from_secs(3), || async {
            get_json(&http, &health).await["in_flight"] == 0
        })
        .await
    );
    assert!(started.elapsed() < Duration::from_millis(4000));

    // Bytes that are not a frame close the channel.
    write.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), replies.next(1 << 20)).await;
    assert!(
        matches!(closed, Ok(Ok(None)) | Ok(Err(_))),
        "the channel stayed open: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_cluster_token_takes_effect_on_an_open_channel() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TEST_TOKEN}\n")).unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let node = Process::node(&module, &[]);
    let gateway = Logged::start(
        &support::grid::gateway_args(&[
            "--join-token-file",
            token_file.to_str().unwrap(),
            "--node",
            &node.url,
        ]),
        &[],
        "madrpc gateway listening on ",
    );
    let http = client();
    assert!(nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30)).await);
    assert_eq!(call(&gateway.url, "add", json!([1, 2])).await["result"], 3);

    std::fs::write(&token_file, "another-token\n").unwrap();
    gateway.signal(libc::SIGHUP);
    assert!(
        gateway
            .wait_for(
                |l| l.contains("join token reloaded"),
                Duration::from_secs(10)
            )
            .is_some()
    );
    // The channel was opened with the old token; the node never saw the
    // new one, so it refuses the channel the gateway opens with it.
    let reply = call(&gateway.url, "add", json!([1, 2])).await;
    assert_eq!(reply["error"]["code"], -32012, "{reply}");
    assert_eq!(reply["error"]["data"]["kind"], "node_failed", "{reply}");
    assert_eq!(
        get_json(&http, &format!("{}/health", node.url)).await["served"],
        1
    );
}

/// What a fake node answers on the channel for each method: a frame's tag
/// and body, none of them the node protocol's reply.
fn foreign_frame(method: &str) -> (Tag, Vec<u8>) {
    match method {
        "big" => (Tag::Ok, format!("\"{}\"", "x".repeat(2 << 20)).into_bytes()),
        "bad" => (Tag::Ok, b"secret, and not JSON".to_vec()),
        _ => (Tag::Error, b"secret, and no error object".to_vec()),
    }
}

/// Serves the call channel on an upgraded connection, answering every
/// call with [`foreign_frame`].
async fn answer_calls(io: hyper::upgrade::Upgraded) {
    let (read, mut write) = tokio::io::split(hyper_util::rt::TokioIo::new(io));
    let mut reader = FrameReader::new(read);
    while let Ok(Some(frame)) = reader.next(1 << 20).await {
        if frame.tag != Tag::Call {
            continue;
        }
        let Ok(call) = wire::parse_call(frame.body) else {
            return;
        };
        let (tag, body) = foreign_frame(&call.method);
        let head = wire::frame_head(tag, frame.id, body.len());
        if write.write_all(&head).await.is_err() || write.write_all(&body).await.is_err() {
            return;
        }
    }
}

/// A node that offers the call channel, like a real one, but answers
/// calls on it with frames that are not the node protocol's replies.
async fn fake_channel_node() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    let marked = |mut response: Response| {
        response
            .headers_mut()
            .insert("x-madrpc-node-reply", HeaderValue::from_static("1"));
        response
    };
    let app = axum::Router::new()
        .route(
            "/health",
            get(move || async move {
                marked(
                    axum::Json(json!({"status": "ok", "methods": ["big", "bad", "wrong"]}))
                        .into_response(),
                )
            }),
        )
        .route(
            wire::PATH,
            get(move |mut request: axum::extract::Request| async move {
                let on_upgrade = hyper::upgrade::on(&mut request);
                tokio::spawn(async move {
                    if let Ok(io) = on_upgrade.await {
                        answer_calls(io).await;
                    }
                });
                let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
                let headers = response.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, HeaderValue::from_static(wire::PROTOCOL));
                marked(response)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_on_the_channel_outside_the_protocol_never_reaches_the_client() {
    let (fake, server) = fake_channel_node().await;
    let gateway = Process::gateway(&["--node", &fake, "--max-result", "1MiB"]);
    let http = client();
    // Each is refused for what it is, which only reading it on the channel
    // can tell (the fake node has no HTTP call route).
    for (method, why) in [
        ("big", "bytes, over the limit"),
        ("bad", "a result that is not JSON"),
        ("wrong", "an error that is not a JSON-RPC error object"),
    ] {
        let error = &support::grid::expect_node_failed(&http, &gateway.url, method).await;
        assert!(
            error["message"].as_str().unwrap().contains(why),
            "{method}: {error}"
        );
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn half_a_frame_is_cut_off_after_the_body_timeout_but_a_quiet_channel_stays() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    let node = Process::node(&module, &["--body-timeout", "1s"]);

    // A channel with nothing on it stays open past the timeout.
    let (head, mut quiet) = upgrade(&node.url, Some(TEST_TOKEN)).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // Half a frame, then nothing: the node closes the channel.
    let (head, mut stalled) = upgrade(&node.url, Some(TEST_TOKEN)).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let frame = wire::call_head(1, "add", &[], 5);
    stalled.write_all(&frame[..6]).await.unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    send_call(&mut quiet, 2, "add", "[1,2]").await;
    let (read, _) = quiet.split();
    let reply = FrameReader::new(read).next(1 << 20).await.unwrap().unwrap();
    assert_eq!(
        (reply.id, reply.tag, &reply.body[..]),
        (2, Tag::Ok, &b"3"[..])
    );
}
