//! What a listener does before JSON-RPC, through real processes and
//! sockets: API keys (missing, wrong, right, reloaded), rate limits and
//! recovery, TLS with `madrpc call` and curl, and slow or surplus
//! connections cut off while a good client is served.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::grid::{HttpReply, Process};

const ADD: &str = r#"{"jsonrpc":"2.0","method":"add","params":[40,2],"id":7}"#;

/// `madrpc serve` of the grid test script with extra flags.
fn serve(dir: &Path, extra: &[&str]) -> Process {
    let module = support::build_into(dir, "grid.js");
    let module = module.to_str().expect("UTF-8 path").to_owned();
    let mut args = vec![
        "serve",
        module.as_str(),
        "--nodes",
        "1",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Process::start(&args, "madrpc is serving at ")
}

/// POSTs a JSON-RPC body with extra headers.
async fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> HttpReply {
    try_post(url, body, headers)
        .await
        .unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
}

/// [`post`] that reports a failed exchange instead of panicking.
async fn try_post(url: &str, body: &str, headers: &[(&str, &str)]) -> Result<HttpReply, String> {
    let mut request = hyper::Request::post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a request");
    let response = support::grid::client()
        .request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    Ok(HttpReply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.map_err(|e| e.to_string())?.to_bytes(),
    })
}

/// `madrpc keys new NAME --file FILE ...`, returning the secret.
fn new_key(file: &Path, name: &str, extra: &[&str]) -> String {
    let file = file.to_str().expect("UTF-8 path");
    let mut args = vec!["keys", "new", name, "--file", file];
    args.extend_from_slice(extra);
    let output = support::run_cli(Path::new("."), &args);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout holds the secret alone: {stdout:?}");
    lines[0].to_owned()
}

/// The result of a reply that must be HTTP 200.
fn result_of(reply: &HttpReply) -> serde_json::Value {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["result"].clone()
}

fn assert_error(reply: &HttpReply, status: u16, code: i64, kind: &str) {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let json = reply.json();
    assert_eq!(json["error"]["code"], code, "{json}");
    assert_eq!(json["error"]["data"]["kind"], kind, "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_missing_wrong_right_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let alice = new_key(&keys, "alice", &[]);
    assert!(alice.starts_with("mk_") && alice.len() > 40, "{alice}");
    let file = std::fs::read_to_string(&keys).unwrap();
    assert!(
        file.contains("alice") && !file.contains(&alice[3..]),
        "{file}"
    );

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
    tokio::time::sleep(Duration::from_millis(300)).await;
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

    // After waiting as told, calls go through again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(result_of(&post(&url, ADD, &headers).await), 42);
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

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as PEM
/// files in `dir` with the given prefix.
fn certificates(dir: &Path, prefix: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{prefix} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf_key = KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let path = |name: &str| {
        dir.join(format!("{prefix}-{name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let (ca_path, cert_path, key_path) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_round_trip_with_call_and_curl_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "first");
    let grid = serve(dir.path(), &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(grid.url.starts_with("https://127.0.0.1:"), "{}", grid.url);
    let url = format!("{}/", grid.url);

    let call = support::run_cli(
        dir.path(),
        &["call", "--url", &url, "--ca", &ca, "add", "[20,22]"],
    );
    assert!(call.status.success(), "{call:?}");
    assert_eq!(String::from_utf8_lossy(&call.stdout).trim(), "42");
    let untrusted = support::run_cli(dir.path(), &["call", "--url", &url, "add", "[1,1]"]);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("certificate"),
        "{untrusted:?}"
    );

    let curl = std::process::Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &ca,
            "-H",
            "Content-Type: application/json",
            "-d",
            ADD,
            &url,
        ])
        .output()
        .expect("curl runs (scripts/setup installs it)");
    assert!(curl.status.success(), "{curl:?}");
    let reply: serde_json::Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert_eq!(reply["result"], 42);
    let plain = url.replacen("https://", "http://", 1);
    let plain_curl = std::process::Command::new("curl")
        .args([
            "-sS",
            "-m",
            "5",
            "-H",
            "Content-Type: application/json",
            "-d",
            ADD,
            &plain,
        ])
        .output()
        .unwrap();
    assert!(
        !plain_curl.status.success(),
        "plain HTTP must not be served on a TLS port"
    );

    // A renewed certificate (from another CA) takes effect on SIGHUP.
    let (ca2, cert2, key2) = certificates(dir.path(), "second");
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    grid.signal(libc::SIGHUP);
    let renewed = support::grid::eventually(Duration::from_secs(10), || async {
        let call = support::run_cli(
            Path::new("."),
            &["call", "--url", &url, "--ca", &ca2, "add", "[1,2]"],
        );
        call.status.success()
    })
    .await;
    assert!(renewed, "the renewed certificate was never served");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_over_tls_fans_out() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "fanout");
    let module = support::build_into(dir.path(), "fanout.js");
    let grid = Process::start(
        &[
            "serve",
            module.to_str().unwrap(),
            "--nodes",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        "madrpc is serving at ",
    );
    // Sub-calls stay inside the process, so they need no certificate.
    let url = format!("{}/", grid.url);
    let call = support::run_cli(
        dir.path(),
        &["call", "--url", &url, "--ca", &ca, "tree", "[2, 4]"],
    );
    assert!(call.status.success(), "{call:?}");
    assert_eq!(String::from_utf8_lossy(&call.stdout).trim(), "16");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_calls_https_nodes_it_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "node");
    let module = support::build_into(dir.path(), "grid.js");
    let gateway = Process::gateway(&["--join-token", "cluster-secret", "--ca", &ca]);
    let node = Process::node(
        &module,
        &[
            "--join",
            &gateway.url,
            "--join-token",
            "cluster-secret",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert!(node.url.starts_with("https://"), "{}", node.url);
    let http = support::grid::client();
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(20))
            .await
    );
    let reply = post(&format!("{}/", gateway.url), ADD, &[]).await;
    assert_eq!(
        reply.json()["result"],
        42,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// Reads until the server closes the connection; returns what it sent and
/// how long that took, or `None` past `limit`.
fn wait_for_close(stream: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some((received, start.elapsed())),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some((received, start.elapsed()));
            }
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_surplus_connections_are_cut_off_while_good_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(
        dir.path(),
        &[
            "--header-timeout",
            "1s",
            "--body-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--max-connections",
            "40",
        ],
    );
    let url = format!("{}/", grid.url);
    let addr = grid.url.trim_start_matches("http://").to_owned();

    // Slow-header clients: half a request head each.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream
                .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Ty")
                .unwrap();
            stream
        })
        .collect();
    // A well-behaved client is served meanwhile.
    for _ in 0..5 {
        assert_eq!(post(&url, ADD, &[]).await.json()["result"], 42);
    }
    for stream in &mut slow {
        let (_, after) = wait_for_close(stream, Duration::from_secs(10))
            .expect("a slow-header connection was never closed");
        assert!(
            after < Duration::from_secs(5),
            "closed only after {after:?}"
        );
    }

    // A stalled body gets 408.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"")
        .unwrap();
    let (reply, _) = wait_for_close(&mut stalled, Duration::from_secs(10)).expect("closed");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");

    // An idle keep-alive connection is closed after the idle timeout.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (reply, after) =
        wait_for_close(&mut idle, Duration::from_secs(10)).expect("idle connection closed");
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
    assert!(
        after >= Duration::from_millis(1500),
        "closed after {after:?}, before the idle timeout"
    );

    // Past the connection cap, new connections get 503 and are closed,
    // and once the hogs go, clients are served again.
    let hogs: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let refused = support::grid::eventually(Duration::from_secs(5), || async {
        let mut extra = TcpStream::connect(&addr).unwrap();
        let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        match wait_for_close(&mut extra, Duration::from_secs(3)) {
            Some((reply, _)) => String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 503"),
            None => false,
        }
    })
    .await;
    assert!(refused, "a connection over the cap was not refused");
    drop(hogs);
    let served = support::grid::eventually(Duration::from_secs(5), || async {
        try_post(&url, ADD, &[])
            .await
            .is_ok_and(|reply| reply.status == 200)
    })
    .await;
    assert!(served);
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_calls_pass_as_the_cluster_and_never_spend_the_callers_rate() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    // One call a minute, no burst: a sub-call counted against the key
    // would be refused.
    let key = new_key(&keys, "tight", &["--rate", "1/min", "--burst", "1"]);
    let module = support::build_into(dir.path(), "fanout.js");
    let log = dir.path().join("serve.log");
    let grid = LoggedServe::start(
        &[
            "serve",
            module.to_str().unwrap(),
            "--nodes",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--keys",
            keys.to_str().unwrap(),
        ],
        &log,
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
    // Without a key, nobody gets in, sub-call or not.
    assert_error(&post(&url, tree, &[]).await, 401, -32030, "unauthorized");

    // Every call of the tree, sub-calls at every depth included, is
    // attributed to the caller's key.
    // Log lines are written by a thread of their own: wait until the 13
    // calls of the first tree are all in the file.
    let mut logged = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        logged = std::fs::read_to_string(&log).unwrap();
        // The debug lines (`call method=tree depth=...`), not the access
        // log's (`call method="tree"`), which come on another thread.
        let debug_lines = logged
            .lines()
            .filter(|l| l.contains(" call method=") && l.contains(" depth="))
            .count();
        if debug_lines >= 13 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains(" call method="))
        .collect();
    for depth in 0..=2 {
        let at_depth = calls
            .iter()
            .filter(|l| l.contains(&format!("depth={depth} ")) && l.contains("outcome=ok"))
            .count();
        let expected = [1, 3, 9][depth];
        assert_eq!(at_depth, expected, "calls at depth {depth}:\n{logged}");
    }
    assert!(
        calls
            .iter()
            .filter(|l| l.contains("outcome=ok"))
            .all(|l| l.contains("key=tight")),
        "{logged}"
    );
}

/// `madrpc serve` with debug logs written to a file.
struct LoggedServe {
    child: std::process::Child,
    url: String,
}

impl LoggedServe {
    fn start(args: &[&str], log: &Path) -> LoggedServe {
        let mut child = support::madrpc()
            .args(args)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let url = loop {
            let line = lines.next().expect("serve printed its URL").unwrap();
            if let Some(rest) = line.strip_prefix("madrpc is serving at ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches('/')
                    .to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        LoggedServe { child, url }
    }
}

impl Drop for LoggedServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
