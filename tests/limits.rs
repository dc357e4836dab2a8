//! The README's table of limits: the defaults a grid runs with when no flag
//! is given, each reached through HTTP JSON-RPC and read back from the
//! error's `data`, and the admission flags that no other test sets. Defaults
//! too long to wait for in a test (a 30 s drain, a 7-day retention) are
//! read from the command's own help, which prints the value it uses.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::grid::{HttpReply, client, eventually, get_json, rpc, spawn_rpc};
use support::logged::Logged;

/// `madrpc serve tests/scripts/errors.js` with one local node and no limit
/// flag but `extra`.
fn serve(extra: &[&str]) -> Logged {
    serve_script("errors.js", &[&["--nodes", "1"], extra].concat())
}

fn serve_script(name: &str, extra: &[&str]) -> Logged {
    let script = support::script(name);
    let args = support::grid::serve_args(&script, extra);
    Logged::start(&args, &[], support::grid::SERVING)
}

fn request(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string()
}

async fn call(url: &str, method: &str, params: Value) -> HttpReply {
    rpc(&client(), &format!("{url}/"), &request(method, params)).await
}

/// The reply's error `data`, once its status, code and kind are checked.
fn error_data(reply: &HttpReply, status: u16, code: i64, kind: &str) -> Value {
    let value = reply.json();
    assert_eq!(reply.status, status, "{value}");
    assert_eq!(value["error"]["code"], code, "{value}");
    assert_eq!(value["error"]["data"]["kind"], kind, "{value}");
    value["error"]["data"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limits_default_to_the_documented_values() {
    let serve = serve(&[]);
    let url = serve.url.as_str();
    const MIB: u64 = 1 << 20;

    // --max-params 4 MiB (in a body within --max-body).
    let params = "p".repeat(4 << 20);
    let data = error_data(
        &call(url, "echo", json!([params])).await,
        200,
        -32007,
        "params_too_large",
    );
    assert_eq!(data["limit_bytes"], 4 * MIB);
    // ...and just under it is served.
    let params = "p".repeat((4 << 20) - 100);
    let reply = call(url, "echo", json!([params])).await.json();
    assert_eq!(
        reply["result"].as_str().map(str::len),
        Some((4 << 20) - 100)
    );

    // --max-result 4 MiB.
    let data = error_data(
        &call(url, "big_result", json!([4 << 20])).await,
        200,
        -32007,
        "result_too_large",
    );
    assert_eq!(data["limit_bytes"], 4 * MIB);
    assert_eq!(data["size"], (4 << 20) + 2);

    // --max-body 8 MiB.
    let body = request("echo", json!(["b".repeat(8 << 20)]));
    let data = error_data(
        &rpc(&client(), &format!("{url}/"), &body).await,
        413,
        -32007,
        "body_too_large",
    );
    assert_eq!(data["limit_bytes"], 8 * MIB);

    // --max-batch 1,000.
    let entry = json!({"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1});
    let batch = Value::Array(vec![entry; 1001]).to_string();
    let data = error_data(
        &rpc(&client(), &format!("{url}/"), &batch).await,
        413,
        -32008,
        "batch_too_large",
    );
    assert_eq!(data["limit"], 1000);

    // --max-response 64 MiB: sixteen results of 4,000,002 bytes fit, the
    // seventeenth does not.
    let entry = |id: usize| json!({"jsonrpc": "2.0", "method": "big_result", "params": [4_000_000], "id": id});
    let batch = Value::Array((0..17).map(entry).collect()).to_string();
    let replies = rpc(&client(), &format!("{url}/"), &batch).await.json();
    let replies = replies.as_array().expect("a batch reply");
    let refused: Vec<&Value> = replies
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert_eq!((replies.len(), refused.len()), (17, 1));
    assert_eq!(
        refused[0]["error"]["data"]["kind"],
        "batch_response_too_large"
    );
    assert_eq!(refused[0]["error"]["data"]["limit_bytes"], 64 * MIB);

    // --memory 128 MiB.
    let data = error_data(
        &call(url, "bomb", json!([])).await,
        200,
        -32002,
        "memory_exceeded",
    );
    assert_eq!(data["limit_bytes"], 128 * MIB);

    // --max-depth 8.
    let data = error_data(
        &call(url, "recurse_forever", json!([0])).await,
        200,
        -32020,
        "call_depth_exceeded",
    );
    assert_eq!(data["limit"], 8);

    // --max-subcalls 1,000: exactly that many is served, one more is not.
    let reply = call(url, "fan_out", json!([1000])).await.json();
    assert_eq!(
        reply["result"].as_array().map(Vec::len),
        Some(1000),
        "{reply}"
    );
    let data = error_data(
        &call(url, "fan_out", json!([1001])).await,
        200,
        -32021,
        "too_many_subcalls",
    );
    assert_eq!(data["limit"], 1000);

    // --max-tree-calls 10,000: eleven fan-outs of 1,000 are a tree of more.
    let data = error_data(
        &call(url, "wide_tree", json!([11, 1000])).await,
        200,
        -32022,
        "tree_budget_exceeded",
    );
    assert_eq!(data["budget"], "calls");
    assert_eq!(data["limit"], 10_000);
}

/// `--client-calls`: client calls a node runs at once. With two workers and
/// one place, a second client call is refused while the first runs, though
/// a worker is free; with two places it runs.
#[tokio::test(flavor = "multi_thread")]
async fn client_calls_bounds_the_client_calls_a_node_runs_at_once() {
    for (places, refused) in [("1", true), ("2", false)] {
        let serve = serve(&["--workers", "2", "--queue", "0", "--client-calls", places]);
        let http = client();
        let slow = spawn_rpc(
            &http,
            &format!("{}/", serve.url),
            &request("busy", json!([800])),
        );
        let running = eventually(Duration::from_secs(10), || async {
            get_json(&http, &format!("{}/v1/nodes", serve.url)).await["nodes"][0]["in_flight"] == 1
        })
        .await;
        assert!(running, "the slow call never started");
        let reply = call(&serve.url, "add", json!([1, 2])).await;
        if refused {
            let data = error_data(&reply, 503, -32010, "overloaded");
            assert_eq!(data["retry_after_secs"], 1, "{data}");
        } else {
            assert_eq!(reply.json()["result"], 3, "{}", reply.json());
        }
        assert_eq!(slow.await.unwrap().json()["result"], 800);
    }
}

/// The value of the series `name` in a Prometheus text page, 0 if absent.
fn series(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `--subcalls`: sub-calls a node admits at once, running or waiting. The
/// sub-calls of a fan-out of slow calls (each needs a worker) past it are
/// refused as `overloaded` and sent again after a short pause, so the
/// fan-out still succeeds; the gateway counts the refusals.
#[tokio::test(flavor = "multi_thread")]
async fn subcalls_bounds_the_sub_calls_a_node_admits_at_once() {
    const OVERLOADED: &str = r#"madrpc_gateway_calls_total{method="busy",kind="overloaded"}"#;
    const OK: &str = r#"madrpc_gateway_calls_total{method="busy",kind="ok"}"#;
    for (subcalls, refused) in [(None, false), (Some("2"), true)] {
        let mut extra = vec!["--nodes", "1", "--workers", "1"];
        extra.extend(subcalls.map(|n| ["--subcalls", n]).into_iter().flatten());
        let serve = serve_script("jobs.js", &extra);
        let reply = call(&serve.url, "spread", json!([6, 50])).await.json();
        assert_eq!(reply["result"], 15, "{reply}");
        let metrics = metrics_text(&format!("{}/metrics", serve.url)).await;
        assert_eq!(series(&metrics, OK), 6, "{metrics}");
        assert_eq!(series(&metrics, OVERLOADED) > 0, refused, "{metrics}");
    }
}

async fn metrics_text(url: &str) -> String {
    let (status, _, body) = madrpc::http::get(&client(), url, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

/// `--job-deadline` and `--job-fuel`: a job's call runs under them rather
/// than the per-call limits, and breaching them is final (one attempt).
#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_under_the_job_deadline_and_fuel_flags() {
    use support::jobs::{finished, submit};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let serve = serve_script(
        "jobs.js",
        &[
            "--nodes",
            "1",
            "--data-dir",
            &data,
            "--job-deadline",
            "700ms",
            "--job-fuel",
            "2000000000",
        ],
    );
    // A call is held to the per-call limits: a second of CPU is within them.
    let reply = call(&serve.url, "busy", json!([1000])).await.json();
    assert_eq!(reply["result"], 1000, "{reply}");

    let id = submit(&serve.url, json!({"method": "busy", "params": [1000]})).await;
    let job = finished(&serve.url, &id).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["error"]["code"], -32001, "{job}");
    assert_eq!(job["error"]["data"]["kind"], "fuel_exhausted", "{job}");
    assert_eq!(job["error"]["data"]["limit"], 2_000_000_000u64, "{job}");

    // Waiting on a sub-call burns no fuel; the job deadline ends it.
    let id = submit(&serve.url, json!({"method": "spread", "params": [1, 3000]})).await;
    let job = finished(&serve.url, &id).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["error"]["code"], -32003, "{job}");
    assert_eq!(job["error"]["data"]["kind"], "deadline_exceeded", "{job}");
    // What was left of the 700 ms when the call started.
    let limit_ms = job["error"]["data"]["limit_ms"].as_u64().unwrap_or(0);
    assert!((500..=700).contains(&limit_ms), "{job}");
}

/// The `[default: ...]` clap prints for `flag` in `madrpc COMMAND --help`:
/// the value the command uses when the flag is not given.
fn help_default(command: &str, flag: &str) -> String {
    let output = support::madrpc()
        .args([command, "--help"])
        .output()
        .expect("madrpc runs");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let block: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(&format!("{flag} ")))
        .take_while({
            let mut first = true;
            move |l| std::mem::take(&mut first) || !l.trim_start().starts_with('-')
        })
        .collect();
    block
        .iter()
        .find_map(|l| l.trim().strip_prefix("[default: ")?.strip_suffix(']'))
        .unwrap_or_else(|| panic!("madrpc {command} --help: no default for {flag}:\n{help}"))
        .to_owned()
}

/// The defaults the README states for flags whose effect takes too long to
/// wait for in a test.
#[test]
fn the_flags_default_to_what_the_readme_says() {
    let documented = [
        ("serve", "--listen", "127.0.0.1:8080"),
        ("serve", "--health-interval", "1s"),
        ("serve", "--call-timeout", "60s"),
        ("serve", "--drain-timeout", "30s"),
        ("serve", "--cache-size", "64MiB"),
        ("serve", "--job-deadline", "1h"),
        ("serve", "--job-fuel", "36000000000000"),
        ("serve", "--job-attempts", "5"),
        ("serve", "--job-retention", "7d"),
        ("serve", "--job-lease", "15s"),
        ("gateway", "--health-interval", "1s"),
        ("gateway", "--call-timeout", "60s"),
        ("gateway", "--drain-timeout", "30s"),
        ("gateway", "--discover-interval", "2s"),
        ("gateway", "--cache-size", "64MiB"),
        ("gateway", "--max-result", "4MiB"),
        ("node", "--heartbeat", "1s"),
        ("node", "--drain-timeout", "30s"),
        ("call", "--url", "http://127.0.0.1:8080/"),
        ("top", "--interval", "1s"),
    ];
    for (command, flag, default) in documented {
        assert_eq!(
            help_default(command, flag),
            default,
            "madrpc {command} {flag}"
        );
    }
}

/// `serve` runs one local node per core, each with cores / nodes workers
/// (at least one), and listens where the README says without `--listen`.
#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_one_local_node_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let serve = serve_script("claims.js", &[]);
    let nodes = get_json(&client(), &format!("{}/v1/nodes", serve.url)).await;
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["url"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..cores).map(|i| format!("local:{i}")).collect();
    assert_eq!(names, expected, "{nodes}");
    let ready = serve
        .wait_for(
            |l| l.starts_with("madrpc is serving at "),
            Duration::from_secs(1),
        )
        .unwrap();
    let plural = if cores == 1 { "" } else { "s" };
    assert!(
        ready.contains(&format!("({cores} local node{plural}, 1 worker each)")),
        "{ready}"
    );
}

/// `--max-console` keeps 64 KiB of a call's console output by default: the
/// rest is dropped and its size logged.
#[test]
fn console_output_is_kept_up_to_64_kib_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = support::script("sandbox.js");
    // `chatty` logs `line I {"i":I}` for each I, then `a warning`.
    let lines = 4000;
    let output = support::run_cli(
        dir.path(),
        &[
            "run",
            sandbox.to_str().unwrap(),
            "chatty",
            &format!("[{lines}]"),
        ],
    );
    let (stdout, stderr) = support::texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), lines.to_string());
    let written: usize = (0..lines)
        .map(|i| format!("line {i} {{\"i\":{i}}}\n").len())
        .sum::<usize>()
        + "a warning\n".len();
    let dropped: usize = stderr
        .split("dropped_bytes=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count of dropped bytes:\n{stderr}"));
    assert_eq!(written - dropped, 64 << 10, "bytes kept");
}
