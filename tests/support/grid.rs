//! Running gateways, nodes and `serve` as real processes on 127.0.0.1 and
//! talking HTTP to them.

use super::madrpc;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The cluster token the helpers' gateways and nodes share (through
/// `MADRPC_JOIN_TOKEN`; an explicit `--join-token` overrides it).
pub const TEST_TOKEN: &str = "test-cluster-token";

/// What `serve` prints once it listens, before its URL.
pub const SERVING: &str = "madrpc is serving at ";

/// The arguments of `serve MODULE` on a free loopback port, then `extra`,
/// for [`Process::start`] and `Logged::start`.
pub fn serve_args<'a>(module: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        module.to_str().expect("UTF-8 path"),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    args
}

/// The arguments of a gateway on a free loopback port that checks its
/// nodes' health every 200 ms, then `extra`.
pub fn gateway_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--health-interval",
        "200ms",
    ];
    args.extend_from_slice(extra);
    args
}

/// A child process that is killed when dropped.
pub struct Process {
    pub child: Child,
    pub url: String,
    lines: mpsc::Receiver<String>,
    /// The process's own default data folder, so that no two processes of
    /// a test run, nor the user's, share a job store.
    _data: tempfile::TempDir,
}

impl Process {
    /// Starts `madrpc args...` and waits for the stdout line that starts
    /// with `ready_prefix`, taking the URL that follows it.
    pub fn start(args: &[&str], ready_prefix: &str) -> Process {
        Process::start_with_env(args, &[], ready_prefix)
    }

    /// [`Process::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], ready_prefix: &str) -> Process {
        let data = tempfile::tempdir().expect("a data folder");
        let mut child = madrpc()
            .args(args)
            .env_remove("MADRPC_JOIN_TOKEN")
            .env("XDG_DATA_HOME", data.path())
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("madrpc starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Process {
            child,
            url: String::new(),
            lines,
            _data: data,
        };
        let line = process
            .wait_for_line(
                |line| line.starts_with(ready_prefix),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|| panic!("madrpc {args:?} never printed '{ready_prefix}'"));
        let url = line[ready_prefix.len()..]
            .split_whitespace()
            .next()
            .expect("a URL after the prefix");
        process.url = url.trim_end_matches('/').to_owned();
        process
    }

    /// Waits for a stdout line matching `predicate`.
    pub fn wait_for_line(
        &mut self,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if predicate(&line) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// A gateway on a free port with the given extra arguments, and
    /// [`TEST_TOKEN`] as its cluster token.
    pub fn gateway(extra: &[&str]) -> Process {
        Process::start_with_env(
            &gateway_args(extra),
            &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
            "madrpc gateway listening on ",
        )
    }

    /// A node serving `module` on a free port with the given extra
    /// arguments, and [`TEST_TOKEN`] as its cluster token.
    pub fn node(module: &Path, extra: &[&str]) -> Process {
        let module = module.to_str().expect("UTF-8 path");
        let mut args = vec![
            "node",
            "--module",
            module,
            "--listen",
            "127.0.0.1:0",
            // Twice per gateway health interval: the gateway drops a node
            // silent for three intervals (600 ms), and a loaded test
            // machine can hold a heartbeat back for hundreds of ms.
            "--heartbeat",
            "100ms",
        ];
        args.extend_from_slice(extra);
        Process::start_with_env(
            &args,
            &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
            "madrpc node listening on ",
        )
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response as the tests look at it.
pub struct HttpReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl HttpReply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A shared HTTP client.
pub fn client() -> madrpc::http::HttpClient {
    madrpc::http::client()
}

/// POSTs `body` with the given content type.
pub async fn post(
    client: &madrpc::http::HttpClient,
    url: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Result<HttpReply, String> {
    post_with(client, url, content_type, &[], body).await
}

/// [`post`] with extra request headers.
pub async fn post_with(
    client: &madrpc::http::HttpClient,
    url: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<HttpReply, String> {
    let mut request = hyper::Request::post(url).header(hyper::header::CONTENT_TYPE, content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(60), client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(HttpReply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// POSTs a JSON-RPC body.
pub async fn rpc(client: &madrpc::http::HttpClient, url: &str, body: &str) -> HttpReply {
    post(client, url, "application/json", body.to_owned())
        .await
        .unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
}

/// GETs a JSON document.
pub async fn get_json(client: &madrpc::http::HttpClient, url: &str) -> serde_json::Value {
    let (_, _, body) = madrpc::http::get(client, url, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    serde_json::from_slice(&body).expect("JSON")
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits up to `timeout` for the gateway at `url` to report `count`
/// available nodes.
pub async fn nodes_become_available(
    client: &madrpc::http::HttpClient,
    url: &str,
    count: usize,
    timeout: Duration,
) -> bool {
    eventually(timeout, || async {
        available_nodes(client, url).await == count
    })
    .await
}

/// Number of available nodes the gateway at `url` reports.
pub async fn available_nodes(client: &madrpc::http::HttpClient, url: &str) -> usize {
    let nodes = get_json(client, &format!("{url}/v1/nodes")).await;
    nodes["nodes"]
        .as_array()
        .map(|nodes| nodes.iter().filter(|n| n["available"] == true).count())
        .unwrap_or(0)
}

/// A gateway with nodes that joined it, all serving one module.
pub struct Grid {
    pub dir: tempfile::TempDir,
    pub module: std::path::PathBuf,
    pub gateway: Process,
    pub nodes: Vec<Process>,
}

impl Grid {
    /// Builds `tests/scripts/<script>` and starts a gateway with `count`
    /// nodes serving it, waiting until all are available.
    pub async fn start(script: &str, count: usize, node_args: &[&str]) -> Grid {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let module = super::build_into(dir.path(), script);
        Grid::start_module(dir, module, count, node_args).await
    }

    /// Builds `examples/<example>` and starts a grid serving it.
    pub async fn start_example(example: &str, count: usize, node_args: &[&str]) -> Grid {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let module = dir.path().join(example.replace(".js", ".wasm"));
        let built =
            madrpc::build::build_file(&super::example(example)).expect("the example builds");
        std::fs::write(&module, built.wasm).expect("the module is written");
        Grid::start_module(dir, module, count, node_args).await
    }

    /// Like [`Grid::start`] for an already built module.
    pub async fn start_module(
        dir: tempfile::TempDir,
        module: std::path::PathBuf,
        count: usize,
        node_args: &[&str],
    ) -> Grid {
        let gateway = Process::gateway(&[]);
        let join = gateway.url.clone();
        let nodes: Vec<Process> = (0..count)
            .map(|_| {
                let mut args = vec!["--join", join.as_str()];
                args.extend_from_slice(node_args);
                Process::node(&module, &args)
            })
            .collect();
        let http = client();
        let ready =
            nodes_become_available(&http, &gateway.url, count, Duration::from_secs(30)).await;
        assert!(ready, "the nodes never became available");
        Grid {
            dir,
            module,
            gateway,
            nodes,
        }
    }

    /// The gateway's JSON-RPC endpoint.
    pub fn url(&self) -> String {
        format!("{}/", self.gateway.url)
    }
}

/// Sends a JSON-RPC body in the background.
pub fn spawn_rpc(
    http: &madrpc::http::HttpClient,
    url: &str,
    body: &str,
) -> tokio::task::JoinHandle<HttpReply> {
    let http = http.clone();
    let url = url.to_owned();
    let body = body.to_owned();
    tokio::spawn(async move { rpc(&http, &url, &body).await })
}

/// Calls `method` through the gateway at `gateway` once the node is back in
/// rotation, and checks that the node's reply, which was outside the node
/// protocol, reached the client only as a short `node_failed` without the
/// node's body (which says `secret`), and took the node out of rotation.
/// Returns the error object.
pub async fn expect_node_failed(
    client: &madrpc::http::HttpClient,
    gateway: &str,
    method: &str,
) -> serde_json::Value {
    assert!(
        nodes_become_available(client, gateway, 1, Duration::from_secs(10)).await,
        "the fake node never came back"
    );
    let reply = rpc(
        client,
        &format!("{gateway}/"),
        &format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":[],"id":1}}"#),
    )
    .await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(!text.contains("secret"), "{method}: {text}");
    assert!(text.len() < 4096, "{method}: a {} byte reply", text.len());
    let error = reply.json()["error"].clone();
    assert_eq!(error["code"], -32012, "{method}: {error}");
    assert_eq!(error["data"]["kind"], "node_failed", "{method}: {error}");
    // It counts against the node: out of rotation at once.
    assert_eq!(available_nodes(client, gateway).await, 0, "{method}");
    error
}
