//! Hostile scripts on a real grid. Every file in `tests/scripts/hostile/`
//! tries to exhaust or escape the sandbox (loops of every shape, memory
//! bombs, deep recursion, huge results and output, catastrophic regular
//! expressions, thrown non-Errors, cyclic results, fan-out bombs, reaching
//! for WASI) and names on its first line the error it must end with:
//! `// expect: KIND`, a `data.kind` of the README's error table, and
//! optionally on the next lines what the message must say
//! (`// message: TEXT`) and a tighter deadline the call is sent with
//! (`// deadline-ms: N`, as the `x-madrpc-deadline-ms` header).
//! A sub-call refused for the depth or sub-call limit rejects with an
//! `RpcError` carrying the limit's code; a function that lets it escape ends
//! with that same code and kind, as the README's error table says. They run
//! one after another on one `madrpc serve`, while well-behaved clients call
//! the same grid throughout and must see only correct results.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::grid::{HttpReply, Process, available_nodes, client, post_with, rpc};

/// Tight limits keep the suite fast: a loop ends after a fifth of a second
/// of CPU time (the memory bombs reach 32 MiB well before that, also on a
/// busy machine, and the loops end well within the deadline).
const LIMITS: &[&str] = &[
    "--fuel",
    "2000000000",
    "--deadline",
    "1500ms",
    "--memory",
    "32MiB",
    "--max-result",
    "64KiB",
    "--max-console",
    "4KiB",
    "--max-depth",
    "4",
    "--max-subcalls",
    "64",
];

/// The README's error table: the code of each `data.kind`.
fn code_of(kind: &str) -> i64 {
    match kind {
        "guest_threw" => -32000,
        "fuel_exhausted" => -32001,
        "memory_exceeded" => -32002,
        "deadline_exceeded" => -32003,
        "stack_overflow" => -32004,
        "not_serializable" | "never_settled" => -32005,
        "guest_crashed" => -32006,
        "params_too_large" | "result_too_large" | "body_too_large" => -32007,
        "call_depth_exceeded" => -32020,
        "too_many_subcalls" => -32021,
        other => panic!("'{other}' is not a kind of the README's error table"),
    }
}

/// One hostile script: its method (the file's stem), the kind it must end
/// with, and its source.
struct Hostile {
    method: String,
    expect: String,
    message: Option<String>,
    deadline_ms: Option<String>,
    source: String,
}

fn hostile_scripts() -> Vec<Hostile> {
    let dir = support::script("hostile");
    let mut scripts: Vec<Hostile> = std::fs::read_dir(&dir)
        .expect("tests/scripts/hostile exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "js"))
        .map(|path| read_hostile(&path))
        .collect();
    scripts.sort_by(|a, b| a.method.cmp(&b.method));
    scripts
}

fn read_hostile(path: &Path) -> Hostile {
    let source = std::fs::read_to_string(path).expect("a readable script");
    let header = |key: &str| {
        source
            .lines()
            .take_while(|line| line.starts_with("//"))
            .find_map(|line| line.strip_prefix(&format!("// {key}: ")))
            .map(|value| value.trim().to_owned())
    };
    let expect = header("expect")
        .unwrap_or_else(|| panic!("{} does not start with '// expect: KIND'", path.display()));
    code_of(&expect);
    let message = header("message");
    let deadline_ms = header("deadline-ms");
    let method = path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a UTF-8 file name")
        .to_owned();
    assert!(
        source.contains(&format!("madrpc.register('{method}'")),
        "{} must register a function named after the file",
        path.display()
    );
    Hostile {
        method,
        expect,
        message,
        deadline_ms,
        source,
    }
}

/// The honest functions and every hostile script in one module, each script
/// in a scope of its own.
fn combined_source(scripts: &[Hostile]) -> String {
    let mut source = std::fs::read_to_string(support::script("honest.js")).expect("honest.js");
    for script in scripts {
        source.push_str("\n(() => {\n");
        source.push_str(&script.source);
        source.push_str("\n})();\n");
    }
    source
}

/// sum_squares(n) as the honest function computes it.
fn sum_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

/// One honest call and the result it must have.
fn honest_call(round: u64) -> (Value, u64) {
    if round % 4 == 3 {
        let count = 1 + round % 8;
        let expected = (0..count).map(sum_squares).sum();
        (json!({"method": "fan_sum", "params": [count]}), expected)
    } else {
        let n = (round * 7919) % 2000;
        (
            json!({"method": "sum_squares", "params": [n]}),
            sum_squares(n),
        )
    }
}

/// Calls the grid until `stop`, counting calls in `done` and checking every
/// reply; returns a description of every wrong one.
async fn honest_client(url: String, stop: Arc<AtomicBool>, done: Arc<AtomicUsize>) -> Vec<String> {
    let http = client();
    let mut wrong = Vec::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let (mut request, expected) = honest_call(round);
        request["jsonrpc"] = json!("2.0");
        request["id"] = json!(round);
        // A well-behaved client: when the grid refuses a call as overloaded
        // (a hostile tree may hold every worker), it waits as Retry-After
        // says and sends the call again, a few times at most.
        let mut reply = rpc(&http, &url, &request.to_string()).await;
        for _ in 0..5 {
            let refused = reply.status == 503
                && serde_json::from_slice::<Value>(&reply.body)
                    .is_ok_and(|body| body["error"]["data"]["kind"] == "overloaded");
            let Some(wait) = refused
                .then(|| reply.headers.get("retry-after"))
                .flatten()
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            else {
                break;
            };
            tokio::time::sleep(Duration::from_secs(wait)).await;
            reply = rpc(&http, &url, &request.to_string()).await;
        }
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if reply.status != 200 || body["result"] != json!(expected) || body["id"] != json!(round) {
            wrong.push(format!(
                "{request} -> HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    wrong
}

fn check_hostile(script: &Hostile, reply: &HttpReply) -> Result<(), String> {
    let body: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("a reply that is not JSON ({e})"))?;
    let kind = &body["error"]["data"]["kind"];
    let code = &body["error"]["code"];
    if reply.status != 200
        || *kind != json!(script.expect)
        || *code != json!(code_of(&script.expect))
        || body["id"] != json!(script.method)
        || script.message.as_ref().is_some_and(|text| {
            !body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text.as_str()))
        })
    {
        let mut text = body.to_string();
        text.truncate(600);
        return Err(format!(
            "expected {} ({}) {:?}, got HTTP {}: {text}",
            script.expect,
            code_of(&script.expect),
            script.message,
            reply.status
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_scripts_end_with_their_documented_errors_while_honest_calls_succeed() {
    let scripts = hostile_scripts();
    assert!(
        scripts.len() >= 25,
        "only {} hostile scripts",
        scripts.len()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let built = madrpc::build::build_source("hostile.js", &combined_source(&scripts))
        .expect("the hostile scripts build");
    let module = dir.path().join("hostile.wasm");
    std::fs::write(&module, built.wasm).expect("the module is written");

    let mut args = support::grid::serve_args(&module, &["--nodes", "2", "--workers", "2"]);
    args.extend_from_slice(LIMITS);
    let serve = Process::start(&args, support::grid::SERVING);
    let url = format!("{}/", serve.url);
    let http = client();

    let stop = Arc::new(AtomicBool::new(false));
    let honest_done = Arc::new(AtomicUsize::new(0));
    let honest: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(honest_client(
                url.clone(),
                stop.clone(),
                honest_done.clone(),
            ))
        })
        .collect();

    let mut failures = Vec::new();
    let mut slowest = (String::new(), Duration::ZERO);
    for script in &scripts {
        let before = honest_done.load(Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": script.method, "id": script.method});
        let started = Instant::now();
        let headers: Vec<(&str, &str)> = script
            .deadline_ms
            .iter()
            .map(|ms| ("x-madrpc-deadline-ms", ms.as_str()))
            .collect();
        let reply = post_with(&http, &url, "application/json", &headers, body.to_string())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", script.method));
        let took = started.elapsed();
        if took > slowest.1 {
            slowest = (script.method.clone(), took);
        }
        if let Err(problem) = check_hostile(script, &reply) {
            failures.push(format!("{}: {problem}", script.method));
        }
        eprintln!(
            "{:<32} {:>6} ms, {} honest calls meanwhile",
            script.method,
            took.as_millis(),
            honest_done.load(Ordering::Relaxed) - before
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut wrong = Vec::new();
    for task in honest {
        wrong.extend(task.await.expect("the honest client ran"));
    }
    let honest_calls = honest_done.load(Ordering::Relaxed);
    eprintln!(
        "{} hostile scripts, {honest_calls} honest calls, slowest script {} ({} ms)",
        scripts.len(),
        slowest.0,
        slowest.1.as_millis()
    );

    assert!(
        failures.is_empty(),
        "hostile scripts that did not end as documented:\n{}",
        failures.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "{} of {honest_calls} honest calls went wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        honest_calls >= scripts.len(),
        "the honest clients made only {honest_calls} calls"
    );
    assert_eq!(
        available_nodes(&http, &serve.url).await,
        2,
        "a node left rotation"
    );
}
