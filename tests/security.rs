//! What every listener does before JSON-RPC, through real processes and
//! sockets: TLS with `madrpc call` and curl, certificates reloaded on
//! SIGHUP, https nodes, slow or surplus connections cut off while a good
//! client is served, and the open-file limit raised at start. API keys and
//! rate limits are in `keys.rs`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::edge::{ADD, post, serve, try_post};
use support::grid::Process;

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
    // The error says what to do: give the CA.
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        stderr.contains("certificate") && stderr.contains("--ca FILE"),
        "{stderr}"
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
        &support::grid::serve_args(
            &module,
            &["--nodes", "2", "--tls-cert", &cert, "--tls-key", &key],
        ),
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
async fn a_gateway_over_tls_calls_https_nodes_it_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "node");
    let module = support::build_into(dir.path(), "grid.js");
    // The gateway serves https:// too, and the node, trusting the same
    // private CA, joins it over TLS.
    let gateway = Process::gateway(&[
        "--join-token",
        "cluster-secret",
        "--ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    assert!(gateway.url.starts_with("https://"), "{}", gateway.url);
    let node = Process::node(
        &module,
        &[
            "--join",
            &gateway.url,
            "--join-token",
            "cluster-secret",
            "--ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert!(node.url.starts_with("https://"), "{}", node.url);
    let url = format!("{}/", gateway.url);
    let call = || {
        support::run_cli(
            dir.path(),
            &["call", "--url", &url, "--ca", &ca, "add", "[20,22]"],
        )
    };
    let served = support::grid::eventually(Duration::from_secs(20), || async {
        call().status.success()
    })
    .await;
    let last = call();
    assert!(served, "{last:?}");
    assert_eq!(String::from_utf8_lossy(&last.stdout).trim(), "42");
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
    let mut answer = String::new();
    let refused = support::grid::eventually(Duration::from_secs(5), || {
        let mut extra = TcpStream::connect(&addr).unwrap();
        let reply = wait_for_close(&mut extra, Duration::from_secs(3));
        answer = reply.map_or_else(String::new, |(reply, _)| {
            String::from_utf8_lossy(&reply).into_owned()
        });
        std::future::ready(answer.starts_with("HTTP/1.1 503"))
    })
    .await;
    assert!(refused, "a connection over the cap was not refused");
    // A whole HTTP response: its length as announced, a JSON-RPC error.
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{answer}"
    );
    assert!(head.contains("Retry-After: 1"), "{answer}");
    let error: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(error["error"]["code"], -32010, "{error}");
    assert_eq!(error["error"]["data"]["kind"], "overloaded", "{error}");
    drop(hogs);
    let served = support::grid::eventually(Duration::from_secs(5), || async {
        try_post(&url, ADD, &[])
            .await
            .is_ok_and(|reply| reply.status == 200)
    })
    .await;
    assert!(served);
}

/// The soft and hard open-file limits of process `pid`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (fields[0].to_owned(), fields[1].to_owned())
}

#[test]
fn the_open_file_limit_is_raised_to_its_hard_limit_at_start() {
    // Started with a soft limit far below the hard one, as many systems
    // start services (1,024).
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let soft = limit.rlim_max.min(256);
    let mut command = support::madrpc();
    command.args(["gateway", "--listen", "127.0.0.1:0", "--join-token", "t"]);
    command.stdout(std::process::Stdio::piped());
    // SAFETY: setrlimit only lowers this child's own soft limit, before exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            let lowered = libc::rlimit {
                rlim_cur: soft,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .any(|l| l.starts_with("madrpc gateway listening on "));
    let limits = open_file_limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "the gateway never started");
    let hard = if limit.rlim_max == libc::RLIM_INFINITY {
        "unlimited".to_owned()
    } else {
        limit.rlim_max.to_string()
    };
    assert_eq!(
        limits,
        (hard.clone(), hard),
        "started with a soft limit of {soft}"
    );
}
