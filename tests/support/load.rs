//! A load run for deploy tests: clients that call the grid in a loop until
//! stopped, and check every reply; and the scripts they call, whose
//! answers name their version.

use super::grid::rpc;
use super::madrpc;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the clients saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Calls answered with a correct result.
    pub ok: u64,
    /// Every other answer, as text.
    pub failures: Vec<String>,
    /// The versions answers came from.
    pub versions: BTreeSet<String>,
}

/// Clients calling `version` and `tree` (whose answer lists the version of
/// the call and of each of its sub-calls) until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Calls answered so far, right or wrong.
    answered: Arc<AtomicU64>,
    clients: Vec<tokio::task::JoinHandle<LoadReport>>,
}

impl Load {
    /// Starts `clients` clients against the JSON-RPC endpoint `url`.
    pub fn start(url: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let clients = (0..clients)
            .map(|n| {
                let stop = stop.clone();
                let answered = answered.clone();
                let url = url.to_owned();
                tokio::spawn(async move {
                    let http = super::grid::client();
                    let mut report = LoadReport::default();
                    let mut id = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        id += 1;
                        let tree = (id + n as u64).is_multiple_of(2);
                        let body = if tree {
                            json!({"jsonrpc": "2.0", "method": "tree", "params": {"rounds": 2, "ms": 2}, "id": id})
                        } else {
                            json!({"jsonrpc": "2.0", "method": "version", "id": id})
                        };
                        let reply = rpc(&http, &url, &body.to_string()).await;
                        let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                        check(&answer, tree, &mut report);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    report
                })
            })
            .collect();
        Load {
            stop,
            answered,
            clients,
        }
    }

    /// Waits until `more` calls beyond those answered so far are answered.
    pub async fn answers(&self, more: u64) {
        let target = self.answered.load(Ordering::Relaxed) + more;
        let ran = super::grid::eventually(Duration::from_secs(60), || async {
            self.answered.load(Ordering::Relaxed) >= target
        })
        .await;
        assert!(ran, "the load clients answered {more} more calls");
    }

    /// Stops the clients and adds up what they saw.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadReport::default();
        for client in self.clients {
            let report = client.await.expect("a load client ran");
            total.ok += report.ok;
            total.failures.extend(report.failures);
            total.versions.extend(report.versions);
        }
        total
    }
}

/// A `version` answer is a string; a `tree` answer lists one version per
/// call of the tree, all the same.
fn check(answer: &Value, tree: bool, report: &mut LoadReport) {
    let result = &answer["result"];
    let versions: Option<Vec<&str>> = if tree {
        result
            .as_array()
            .and_then(|all| all.iter().map(Value::as_str).collect())
    } else {
        result.as_str().map(|v| vec![v])
    };
    match versions {
        Some(versions) if !versions.is_empty() && versions.iter().all(|v| *v == versions[0]) => {
            report.ok += 1;
            report.versions.insert(versions[0].to_owned());
        }
        _ => report.failures.push(answer.to_string()),
    }
}

/// Runs `madrpc args...` off the async threads and returns whether it
/// succeeded, its stdout and stderr.
pub async fn run_madrpc(args: Vec<String>, env: Vec<(String, String)>) -> (bool, String, String) {
    let (code, stdout, stderr) = run_madrpc_code(args, env).await;
    (code == Some(0), stdout, stderr)
}

/// [`run_madrpc`] with the exit status itself.
pub async fn run_madrpc_code(
    args: Vec<String>,
    env: Vec<(String, String)>,
) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = madrpc()
            .args(&args)
            .env_remove("MADRPC_ADMIN_TOKEN")
            .envs(env)
            .output()
            .expect("madrpc runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("madrpc ran")
}

/// A script whose functions answer with `version`; `tree` makes `rounds`
/// sub-calls one after another, each busy for `ms`, and lists the version
/// of the call and of every sub-call.
pub fn source(version: &str, extra: &str) -> String {
    format!(
        r#"const VERSION = '{version}';
madrpc.register('version', () => VERSION);
madrpc.register('leaf', ({{ ms = 0 }} = {{}}) => {{ const end = Date.now() + ms; while (Date.now() < end) {{}} return VERSION; }});
madrpc.register('tree', async ({{ rounds = 2, ms = 1 }} = {{}}) => {{
  const seen = [VERSION];
  for (let i = 0; i < rounds; i++) seen.push(await madrpc.call('leaf', {{ ms }}));
  return seen;
}});
madrpc.register('cached', ({{ x }}) => ({{ x, version: VERSION }}), {{ cache: '60s' }});
{extra}"#
    )
}

/// Writes `source` to `dir/name`, builds it next to it, and compiles it
/// once into the module cache the grid's processes share, so a deploy in
/// the test waits on no first compile. Returns the module's path.
pub fn module(dir: &Path, name: &str, source: &str) -> PathBuf {
    let script = dir.join(name);
    std::fs::write(&script, source).unwrap();
    let built = ::madrpc::build::build_file(&script).expect("the script builds");
    super::runtime()
        .load(&built.wasm)
        .expect("the module loads");
    let wasm = script.with_extension("wasm");
    std::fs::write(&wasm, built.wasm).unwrap();
    wasm
}
