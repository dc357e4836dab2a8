//! API keys and rate limits through real processes and sockets: keys
//! missing, wrong, right and reloaded; 429 and recovery; per-address limits
//! and quiet addresses forgotten; sub-calls, through `serve` and through a
//! gateway and a node process, never refused by their caller's rate and
//! attributed to its key; keys never logged.

mod support;

use std::time::{Duration, Instant};
use support::edge::{ADD, assert_error, new_key, post, result_of, serve};
use support::grid::{Process, TEST_TOKEN};
use support::logged::Logged;

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_missing_wrong_right_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let alice = new_key(&keys, "alice", &[]);
    assert!(alice.starts_with("mk_") && alice.len() > 40, "{alice}");
    // The file keeps the name, the SHA-256 of the secret and the limits,
    // nothing more.
    let limited = new_key(
        &keys,
        "limited",
        &["--rate", "5/s", "--burst", "7", "--concurrency", "2"],
    );
    let file = std::fs::read_to_string(&keys).unwrap();
    assert!(
        !file.contains(&alice[3..]) && !file.contains(&limited[3..]),
        "{file}"
    );
    let table: toml::Table = toml::from_str(&file).unwrap();
    assert_eq!(table.keys().collect::<Vec<_>>(), ["key"], "{file}");
    let entries = table["key"].as_array().unwrap();
    let sha256 = |secret: &str| -> String {
        use sha2::Digest;
        sha2::Sha256::digest(secret.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let expected: [toml::Table; 2] = [
        toml::toml! { name = "alice" },
        toml::toml! { name = "limited" rate = 5.0 burst = 7 concurrency = 2 },
    ];
    for ((entry, mut expected), secret) in entries.iter().zip(expected).zip([&alice, &limited]) {
        expected.insert("sha256".into(), sha256(secret).into());
        assert_eq!(entry.as_table().unwrap(), &expected, "{file}");
    }

    let grid = serve(dir.path(), &["--keys", keys.to_str().unwrap()]);
    let url = format!("{}/", grid.url);

    let missing = post(&url, ADD, &[]).await;
    assert_error(&missing, 401, -32030, "unauthorized");
    assert!(
        missing.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
        "{:?}",
        missing.headers
    );
    assert!(
        missing.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let wrong = post(&url, ADD, &[("authorization", "Bearer mk_0000")]).await;
    assert_error(&wrong, 401, -32030, "unauthorized");

    let bearer = format!("Bearer {alice}");
    let right = post(&url, ADD, &[("authorization", &bearer)]).await;
    assert_eq!(right.status, 200);
    assert_eq!(right.json()["result"], 42);
    let header = post(&url, ADD, &[("x-api-key", &alice)]).await;
    assert_eq!(header.json()["result"], 42);
    // The health route stays open to probes.
    let health =
        support::grid::get_json(&support::grid::client(), &format!("{}/health", grid.url)).await;
    assert_eq!(health["status"], "ok");

    // `madrpc call` takes --key and MADRPC_KEY.
    let call = support::run_cli(
        dir.path(),
        &["call", "--url", &url, "--key", &alice, "add", "[1,2]"],
    );
    assert_eq!(
        String::from_utf8_lossy(&call.stdout).trim(),
        "3",
        "{call:?}"
    );
    let env_call = support::madrpc()
        .args(["call", "--url", &url, "add", "[2,3]"])
        .env("MADRPC_KEY", &alice)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&env_call.stdout).trim(), "5");
    let refused = support::run_cli(dir.path(), &["call", "--url", &url, "add", "[1,2]"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("-32030") && stderr.contains("--key"),
        "{stderr}"
    );

    // A new key works after SIGHUP; a revoked one stops working.
    let bob = new_key(&keys, "bob", &[]);
    let revoke = support::run_cli(
        dir.path(),
        &["keys", "revoke", "alice", "--file", keys.to_str().unwrap()],
    );
    assert!(revoke.status.success(), "{revoke:?}");
    assert!(revoke.stdout.is_empty());
    // A call in flight when the keys are reloaded finishes, even though
    // its key is revoked by the reload.
    let busy_url = url.clone();
    let busy_auth = bearer.clone();
    let in_flight = tokio::spawn(async move {
        let body = r#"{"jsonrpc":"2.0","method":"busy","params":[1500],"id":9}"#;
        post(&busy_url, body, &[("authorization", &busy_auth)]).await
    });
    let nodes = format!("{}/v1/nodes", grid.url);
    let running = support::grid::eventually(Duration::from_secs(10), || async {
        let listed = support::grid::get_json(&support::grid::client(), &nodes).await;
        listed["nodes"][0]["in_flight"] == 1
    })
    .await;
    assert!(running, "the long call never started");
    grid.signal(libc::SIGHUP);
    let bob_bearer = format!("Bearer {bob}");
    let reloaded = support::grid::eventually(Duration::from_secs(10), || async {
        post(&url, ADD, &[("authorization", &bob_bearer)])
            .await
            .status
            == 200
    })
    .await;
    assert!(reloaded, "the new key never became valid");
    assert_error(
        &post(&url, ADD, &[("authorization", &bearer)]).await,
        401,
        -32030,
        "unauthorized",
    );
    assert_eq!(result_of(&in_flight.await.unwrap()), 1500);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_answer_429_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let slow = new_key(&keys, "slow", &["--rate", "1/s", "--burst", "3"]);
    let grid = serve(dir.path(), &["--keys", keys.to_str().unwrap()]);
    let url = format!("{}/", grid.url);
    let auth = format!("Bearer {slow}");
    let headers = [("authorization", auth.as_str())];

    // A batch of two counts as two calls: with the single call, the burst
    // of three is spent.
    let batch = r#"[{"jsonrpc":"2.0","method":"add","params":[1,1],"id":1},{"jsonrpc":"2.0","method":"add","params":[2,2],"id":2}]"#;
    let first = post(&url, batch, &headers).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json().as_array().unwrap().len(), 2);
    assert_eq!(post(&url, ADD, &headers).await.status, 200);
    let limited = post(&url, ADD, &headers).await;
    assert_error(&limited, 429, -32031, "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    assert!(
        limited.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'slow'")
    );

    assert_eq!(
        limited.json()["error"]["data"]["retry_after_secs"],
        retry_after
    );

    // After waiting as told, calls go through again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(result_of(&post(&url, ADD, &headers).await), 42);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_rounded_up_and_concurrency_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    // One call every 2 s: the second call, right after the first, waits
    // just under 2 s, which rounds up to 2 (down would be 1).
    let half = new_key(&keys, "half", &["--rate", "30/min", "--burst", "1"]);
    let narrow = new_key(&keys, "narrow", &["--concurrency", "1"]);
    let grid = serve(dir.path(), &["--keys", keys.to_str().unwrap()]);
    let url = format!("{}/", grid.url);

    let auth = format!("Bearer {half}");
    assert_eq!(
        result_of(&post(&url, ADD, &[("authorization", &auth)]).await),
        42
    );
    let limited = post(&url, ADD, &[("authorization", &auth)]).await;
    assert_error(&limited, 429, -32031, "rate_limited");
    assert_eq!(limited.headers["retry-after"], "2");
    assert_eq!(limited.json()["error"]["data"]["retry_after_secs"], 2);

    // A key allowed one call at once: a second call while one runs is
    // refused, and taken again once the first has finished.
    let auth = format!("Bearer {narrow}");
    // On a loaded machine the long call itself may be turned away
    // (overloaded) before the second one is tried: then it is tried again.
    let mut seen = None;
    for _ in 0..5 {
        let (busy_url, busy_auth) = (url.clone(), auth.clone());
        let busy = tokio::spawn(async move {
            let body = r#"{"jsonrpc":"2.0","method":"busy","params":[3000],"id":9}"#;
            post(&busy_url, body, &[("authorization", &busy_auth)]).await
        });
        loop {
            let reply = post(&url, ADD, &[("authorization", &auth)]).await;
            if reply.status != 200 {
                seen = Some((reply, busy));
                break;
            }
            if busy.is_finished() {
                let ended = busy.await.unwrap();
                eprintln!(
                    "the long call ended before a second one was refused: {} {}",
                    ended.status,
                    String::from_utf8_lossy(&ended.body)
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if seen.is_some() {
            break;
        }
    }
    let (refused, busy) = seen.expect("no call was refused while another one ran");
    assert_error(&refused, 429, -32031, "rate_limited");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the key 'narrow' is at its limit of 1 call running at once"),
        "{}",
        refused.json()
    );
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(result_of(&busy.await.unwrap()), 3000);
    assert_eq!(
        result_of(&post(&url, ADD, &[("authorization", &auth)]).await),
        42
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_without_keys_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(dir.path(), &["--rate-per-ip", "2/s", "--burst-per-ip", "2"]);
    let url = format!("{}/", grid.url);
    assert_eq!(post(&url, ADD, &[]).await.status, 200);
    assert_eq!(post(&url, ADD, &[]).await.status, 200);
    let limited = post(&url, ADD, &[]).await;
    assert_error(&limited, 429, -32031, "rate_limited");
    assert!(
        limited.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this address")
    );
    let recovered = support::grid::eventually(Duration::from_secs(5), || async {
        post(&url, ADD, &[]).await.status == 200
    })
    .await;
    assert!(recovered);
}

/// Sends one call from the local address `from` (any of 127.0.0.0/8) and
/// returns the reply's status line.
async fn call_from(from: std::net::Ipv4Addr, server: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ADD}",
        ADD.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply.lines().next().unwrap_or_default().to_owned()
}

/// The number after `name=` in a log line.
fn field(line: &str, name: &str) -> usize {
    let start = line.find(&format!(" {name}=")).expect("the field") + name.len() + 2;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limits_of_quiet_addresses_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "grid.js");
    // A bucket of one call at 100/s is full again 10 ms after a call, so
    // the state of an address is swept within a second of its last call.
    let grid = Logged::start(
        &support::grid::serve_args(
            &module,
            &[
                "--nodes",
                "1",
                "--rate-per-ip",
                "100/s",
                "--burst-per-ip",
                "1",
            ],
        ),
        &[
            ("RUST_LOG", "info,madrpc::cli::edge=debug"),
            ("NO_COLOR", "1"),
        ],
        "madrpc is serving at ",
    );
    let server: std::net::SocketAddr = grid.url.trim_start_matches("http://").parse().unwrap();
    let clients = 20;
    for last in 0..clients {
        let from = std::net::Ipv4Addr::new(127, 0, 0, 2 + last);
        assert_eq!(call_from(from, server).await, "HTTP/1.1 200 OK");
    }
    let swept = |line: &str| line.contains("quiet client addresses dropped");
    let dropped = |lines: &[String]| lines.iter().map(|l| field(l, "dropped")).sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = grid.matching(swept);
        if dropped(&lines) >= usize::from(clients) || Instant::now() > deadline {
            break lines;
        }
        grid.wait_for_count(swept, lines.len() + 1, Duration::from_secs(2));
    };
    assert_eq!(dropped(&lines), usize::from(clients), "{}", grid.output());
    assert_eq!(field(lines.last().unwrap(), "kept"), 0, "{}", grid.output());
    // A forgotten address starts with a full bucket.
    let again = std::net::Ipv4Addr::new(127, 0, 0, 2);
    assert_eq!(call_from(again, server).await, "HTTP/1.1 200 OK");
}

/// Asserts that no line of `output` holds any of `secrets`.
fn assert_never_logged(output: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!output.contains(secret), "a key was logged:\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_calls_pass_as_the_cluster_and_never_spend_the_callers_rate() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    // One call a minute, no burst: a sub-call counted against the key
    // would be refused.
    let key = new_key(&keys, "tight", &["--rate", "1/min", "--burst", "1"]);
    let module = support::build_into(dir.path(), "fanout.js");
    let grid = Logged::start(
        &support::grid::serve_args(&module, &["--nodes", "2", "--keys", keys.to_str().unwrap()]),
        &[("RUST_LOG", "debug"), ("NO_COLOR", "1")],
        "madrpc is serving at ",
    );
    let url = format!("{}/", grid.url);
    let auth = format!("Bearer {key}");
    let tree = r#"{"jsonrpc":"2.0","method":"tree","params":[2,3],"id":1}"#;
    // A 2-level, 3-wide tree: 3 + 9 = 12 sub-calls, each leaf counting 1.
    let reply = post(&url, tree, &[("authorization", &auth)]).await;
    assert_eq!(result_of(&reply), 9, "{}", reply.json());
    // The key itself is spent: its next call is refused.
    assert_error(
        &post(&url, tree, &[("authorization", &auth)]).await,
        429,
        -32031,
        "rate_limited",
    );
    // Without a key, or with a wrong one, nobody gets in, sub-call or not.
    assert_error(&post(&url, tree, &[]).await, 401, -32030, "unauthorized");
    let wrong = "mk_not_a_key_of_this_grid";
    assert_error(
        &post(&url, tree, &[("x-api-key", wrong)]).await,
        401,
        -32030,
        "unauthorized",
    );

    // Every call of the tree, sub-calls at every depth included, is
    // attributed to the caller's key: the debug lines
    // (`call method=tree depth=...`), not the access log's
    // (`call method="tree"`).
    let debug_line = |l: &str| l.contains(" call method=") && l.contains(" depth=");
    let calls = grid.wait_for_count(
        |l| debug_line(l) && l.contains("outcome=ok"),
        13,
        Duration::from_secs(10),
    );
    for depth in 0..=2 {
        let at_depth = calls
            .iter()
            .filter(|l| l.contains(&format!("depth={depth} ")))
            .count();
        let expected = [1, 3, 9][depth];
        assert_eq!(at_depth, expected, "calls at depth {depth}:\n{calls:#?}");
    }
    assert!(calls.iter().all(|l| l.contains("key=tight")), "{calls:#?}");
    assert_never_logged(&grid.output(), &[&key, wrong]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_takes_keys_and_its_nodes_sub_calls_pass_as_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let key = new_key(&keys, "tight", &["--rate", "1/min", "--burst", "1"]);
    let other = new_key(&keys, "other", &[]);
    let module = support::build_into(dir.path(), "fanout.js");
    let gateway = Logged::start(
        &support::grid::gateway_args(&["--keys", keys.to_str().unwrap()]),
        &[
            ("MADRPC_JOIN_TOKEN", TEST_TOKEN),
            ("RUST_LOG", "debug"),
            ("NO_COLOR", "1"),
        ],
        "madrpc gateway listening on ",
    );
    // One node process: every sub-call of the tree goes back through the
    // gateway over HTTP, with the cluster token and the caller's key name.
    let _node = Process::node(&module, &["--join", &gateway.url]);
    let http = support::grid::client();
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30))
            .await
    );
    let url = format!("{}/", gateway.url);
    let tree = r#"{"jsonrpc":"2.0","method":"tree","params":[2,3],"id":1}"#;

    let missing = post(&url, tree, &[]).await;
    assert_error(&missing, 401, -32030, "unauthorized");
    assert!(
        missing.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let wrong = "mk_not_a_key_of_this_grid";
    assert_error(
        &post(&url, tree, &[("authorization", &format!("Bearer {wrong}"))]).await,
        401,
        -32030,
        "unauthorized",
    );
    let reply = post(&url, tree, &[("x-api-key", &key)]).await;
    assert_eq!(result_of(&reply), 9, "{}", reply.json());
    let limited = post(&url, tree, &[("x-api-key", &key)]).await;
    assert_error(&limited, 429, -32031, "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (58..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );

    // Another key's call, so that the log shows whether the refused
    // requests before it ran anything.
    let reply = post(&url, tree, &[("authorization", &format!("Bearer {other}"))]).await;
    assert_eq!(result_of(&reply), 9, "{}", reply.json());

    // The gateway's access log: each client call and its 12 sub-calls, all
    // attributed to the caller's key, and nothing of the refused requests.
    let access = |l: &str| l.contains(" call method=\"tree\"");
    let calls = gateway.wait_for_count(
        |l| access(l) && l.contains("outcome=\"ok\""),
        26,
        Duration::from_secs(10),
    );
    for name in ["tight", "other"] {
        let of_key = calls
            .iter()
            .filter(|l| l.contains(&format!("key=\"{name}\"")))
            .count();
        assert_eq!(of_key, 13, "{name}: {calls:#?}");
    }
    assert_eq!(gateway.matching(access).len(), 26, "{}", gateway.output());
    assert_never_logged(&gateway.output(), &[&key, &other, wrong]);
}
