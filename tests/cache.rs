//! The result cache of `serve`: functions registered with `{ cache }` are
//! served from the gateway's cache by module, method and canonical params,
//! shown by `x-madrpc-cache`; identical calls in flight run once; errors
//! and functions without the option are never cached. Runs of the guest are
//! counted from the pool's debug log.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::grid::{HttpReply, Process, client, post_with};
use support::logged::Logged;

const READY: &str = "madrpc is serving at ";

/// `tests/scripts/cache.js`, built once for every test of this binary.
fn module() -> &'static std::path::Path {
    static MODULE: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    let (_, path) = MODULE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = support::build_into(dir.path(), "cache.js");
        (dir, path)
    });
    path
}

/// One call through a standalone gateway.
async fn call_url(url: &str, method: &str, params: &str) -> HttpReply {
    let body = format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":1}}"#);
    post_with(&client(), &format!("{url}/"), "application/json", &[], body)
        .await
        .unwrap_or_else(|e| panic!("calling {method}: {e}"))
}

/// `madrpc serve cache.wasm` with the pool's runs logged, and `extra`.
fn serve(extra: &[&str]) -> Logged {
    let module = module().display().to_string();
    let mut args = vec!["serve", &module, "--listen", "127.0.0.1:0", "--nodes", "2"];
    args.extend(extra);
    Logged::start(
        &args,
        &[("RUST_LOG", "info,madrpc::node::pool=debug")],
        READY,
    )
}

/// Runs of `method` the pool logged so far.
fn runs_of(grid: &Logged, method: &str) -> usize {
    let needle = format!("method={method} ");
    grid.matching(|l| l.contains(" call") && l.contains(&needle))
        .len()
}

/// Waits until the pool logged `count` runs of `method` (they are logged
/// as they finish, on another thread than the reply).
fn await_runs(grid: &Logged, method: &str, count: usize) -> usize {
    let needle = format!("method={method} ");
    grid.wait_for_count(
        |l| l.contains(" call") && l.contains(&needle),
        count,
        Duration::from_secs(10),
    )
    .len()
}

/// One call of `method` with `params` (raw JSON), with extra headers.
async fn call(grid: &Logged, method: &str, params: &str, headers: &[(&str, &str)]) -> HttpReply {
    let body = format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":1}}"#);
    post_with(
        &client(),
        &format!("{}/", grid.url),
        "application/json",
        headers,
        body,
    )
    .await
    .unwrap_or_else(|e| panic!("calling {method}: {e}"))
}

fn cache_header(reply: &HttpReply) -> Option<&str> {
    reply
        .headers
        .get("x-madrpc-cache")
        .map(|v| v.to_str().expect("an ASCII header"))
}

fn result(reply: &HttpReply) -> Value {
    let body = reply.json();
    assert!(body.get("result").is_some(), "no result: {body}");
    body["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_is_served_without_running_the_guest() {
    let grid = serve(&[]);
    let first = call(&grid, "slow", r#"{"a":1,"b":[1,2]}"#, &[]).await;
    assert_eq!(cache_header(&first), Some("miss"));
    assert_eq!(await_runs(&grid, "slow", 1), 1);
    // The same params with the keys in another order and other spacing.
    let second = call(&grid, "slow", r#"{ "b": [1, 2], "a": 1 }"#, &[]).await;
    assert_eq!(cache_header(&second), Some("hit"));
    assert_eq!(result(&second), result(&first));
    // Other params are another entry.
    let other = call(&grid, "slow", r#"{"a":2}"#, &[]).await;
    assert_eq!(cache_header(&other), Some("miss"));
    assert_ne!(result(&other)["random"], result(&first)["random"]);
    assert_eq!(await_runs(&grid, "slow", 2), 2);
    // Another call of the first params is still a hit: the guest ran twice.
    let third = call(&grid, "slow", r#"{"a":1,"b":[1,2]}"#, &[]).await;
    assert_eq!(cache_header(&third), Some("hit"));
    assert_eq!(runs_of(&grid, "slow"), 2);

    // rpc.discover shows which methods are cacheable, and for how long.
    let discover = call(&grid, "rpc.discover", "[]", &[]).await;
    let methods = result(&discover)["methods"].as_array().unwrap().clone();
    let ttl = |name: &str| {
        methods
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["x-madrpc-cache"]["ttl_ms"].clone())
    };
    assert_eq!(ttl("slow"), Some(json!(60_000)));
    assert_eq!(ttl("brief"), Some(json!(300)));
    assert_eq!(ttl("live"), Some(Value::Null));
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_expire_and_no_cache_runs_again() {
    let grid = serve(&[]);
    let first = call(&grid, "brief", "[1]", &[]).await;
    assert_eq!(cache_header(&first), Some("miss"));
    let hit = call(&grid, "brief", "[1]", &[]).await;
    assert_eq!(cache_header(&hit), Some("hit"));
    assert_eq!(result(&hit), result(&first));
    // Past the 300 ms time to live the function runs again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let expired = loop {
        let reply = call(&grid, "brief", "[1]", &[]).await;
        if cache_header(&reply) == Some("miss") {
            break result(&reply);
        }
        assert_eq!(result(&reply), result(&first));
        assert!(
            std::time::Instant::now() < deadline,
            "the entry never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(expired, result(&first));

    // no-cache runs the function and refreshes the entry.
    let cached = call(&grid, "slow", r#"{"n":1}"#, &[]).await;
    let fresh = call(
        &grid,
        "slow",
        r#"{"n":1}"#,
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(cache_header(&fresh), Some("miss"));
    assert_ne!(result(&fresh), result(&cached));
    assert_eq!(await_runs(&grid, "slow", 2), 2);
    let after = call(&grid, "slow", r#"{"n":1}"#, &[]).await;
    assert_eq!(cache_header(&after), Some("hit"));
    assert_eq!(result(&after), result(&fresh));
    // So does no-store.
    let stored = call(
        &grid,
        "slow",
        r#"{"n":1}"#,
        &[("cache-control", "no-store")],
    )
    .await;
    assert_eq!(cache_header(&stored), Some("miss"));
    assert_ne!(result(&stored), result(&after));
    let last = call(&grid, "slow", r#"{"n":1}"#, &[]).await;
    assert_eq!(result(&last), result(&stored));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_and_functions_without_the_option_are_never_cached() {
    let grid = serve(&[]);
    for _ in 0..2 {
        let reply = call(&grid, "flaky", "[]", &[]).await;
        assert_eq!(
            reply.json()["error"]["data"]["kind"],
            "guest_threw",
            "{}",
            reply.json()
        );
        assert_eq!(cache_header(&reply), Some("miss"));
    }
    assert_eq!(await_runs(&grid, "flaky", 2), 2);

    let one = call(&grid, "live", "[]", &[]).await;
    let two = call(&grid, "live", "[]", &[]).await;
    assert_eq!(cache_header(&one), None);
    assert_eq!(cache_header(&two), None);
    assert_ne!(result(&one)["random"], result(&two)["random"]);
    assert_eq!(await_runs(&grid, "live", 2), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_concurrent_calls_run_the_guest_once() {
    let grid = serve(&[]);
    let calls = (0..8).map(|_| call(&grid, "slow", r#"{"ms":500,"same":true}"#, &[]));
    let replies = futures::future::join_all(calls).await;
    let first = result(&replies[0]);
    for reply in &replies {
        assert_eq!(result(reply), first);
    }
    let misses = replies
        .iter()
        .filter(|r| cache_header(r) == Some("miss"))
        .count();
    assert_eq!(misses, 1);
    // One run, and no second one trailing behind.
    assert_eq!(await_runs(&grid, "slow", 1), 1);
    let again = call(&grid, "slow", r#"{"ms":500,"same":true}"#, &[]).await;
    assert_eq!(cache_header(&again), Some("hit"));
    assert_eq!(runs_of(&grid, "slow"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_calls_use_the_cache() {
    let grid = serve(&[]);
    let direct = call(&grid, "slow", r#"{"tag":"t"}"#, &[]).await;
    assert_eq!(cache_header(&direct), Some("miss"));
    // `outer` is not cacheable; its sub-call of `slow` is served from the
    // entry the direct call left.
    let outer = call(&grid, "outer", r#"["t"]"#, &[]).await;
    assert_eq!(cache_header(&outer), None);
    assert_eq!(result(&outer), result(&direct)["random"]);
    assert_eq!(await_runs(&grid, "outer", 1), 1);
    assert_eq!(runs_of(&grid, "slow"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_cache_evicts_the_least_recently_used() {
    let grid = serve(&["--cache-size", "6KiB"]);
    // Three results of about 2.5 KiB: the third evicts the first.
    let one = call(&grid, "blob", "[1, 2500]", &[]).await;
    let two = call(&grid, "blob", "[2, 2500]", &[]).await;
    assert_eq!(
        cache_header(&call(&grid, "blob", "[2, 2500]", &[]).await),
        Some("hit")
    );
    assert_eq!(
        cache_header(&call(&grid, "blob", "[1, 2500]", &[]).await),
        Some("hit")
    );
    // [2] is now the least recently used: [3] pushes it out, not [1].
    let _three = call(&grid, "blob", "[3, 2500]", &[]).await;
    let one_again = call(&grid, "blob", "[1, 2500]", &[]).await;
    assert_eq!(cache_header(&one_again), Some("hit"));
    assert_eq!(result(&one_again), result(&one));
    let two_again = call(&grid, "blob", "[2, 2500]", &[]).await;
    assert_eq!(cache_header(&two_again), Some("miss"));
    assert_ne!(result(&two_again), result(&two));
    assert_eq!(await_runs(&grid, "blob", 4), 4);
    // A result larger than the whole cache is not kept.
    let big = call(&grid, "blob", "[4, 7000]", &[]).await;
    let big_again = call(&grid, "blob", "[4, 7000]", &[]).await;
    assert_eq!(cache_header(&big_again), Some("miss"));
    assert_ne!(result(&big_again), result(&big));

    // --cache-size 0 turns the cache off.
    let off = serve(&["--cache-size", "0"]);
    let a = call(&off, "slow", "{}", &[]).await;
    let b = call(&off, "slow", "{}", &[]).await;
    assert_eq!(cache_header(&b), None);
    assert_ne!(result(&a), result(&b));
}

#[test]
fn a_bad_cache_option_fails_the_build_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.js"),
        "madrpc.register('ok', () => 1, { cache: '5m' });\nmadrpc.register('bad', () => 1, { cache: '60 seconds' });\n",
    )
    .unwrap();
    let output = support::run_cli(dir.path(), &["build", "bad.js"]);
    let (_, stderr) = support::texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.js:2"), "{stderr}");
    assert!(
        stderr.contains("madrpc.register('bad', fn, { cache })"),
        "{stderr}"
    );
    assert!(stderr.contains("'60s'"), "{stderr}");

    std::fs::write(
        dir.path().join("typo.js"),
        "madrpc.register('f', () => 1, { cahce: '5m' });\n",
    )
    .unwrap();
    let output = support::run_cli(dir.path(), &["build", "typo.js"]);
    let (_, stderr) = support::texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("typo.js:1"), "{stderr}");
    assert!(stderr.contains("unknown option 'cahce'"), "{stderr}");
}

/// A standalone gateway caches by the module its nodes announce: when the
/// node is replaced by one running another module with the same method,
/// the old results are not served; the new node's sub-calls, which come
/// back through the gateway over HTTP, use the cache too.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_module_never_gets_the_old_modules_results() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = support::build_into(dir.path(), "cache_v2.js");
    let gateway = Process::gateway(&[]);
    let join = ["--join", gateway.url.as_str()];
    let old = Process::node(module(), &join);
    let http = client();
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30))
            .await
    );
    let first = call_url(&gateway.url, "slow", "{}").await;
    assert_eq!(cache_header(&first), Some("miss"));
    let again = call_url(&gateway.url, "slow", "{}").await;
    assert_eq!(cache_header(&again), Some("hit"));
    assert_eq!(result(&again), result(&first));

    // The old node goes away (its heartbeats stop), the new one joins.
    drop(old);
    let new = Process::node(&v2, &join);
    let new_url = new.url.clone();
    assert!(
        support::grid::eventually(Duration::from_secs(30), || async {
            let nodes = support::grid::get_json(&http, &format!("{}/v1/nodes", gateway.url)).await;
            let available: Vec<String> = nodes["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["available"] == true)
                .filter_map(|n| n["url"].as_str().map(str::to_owned))
                .collect();
            available == [new_url.clone()]
        })
        .await
    );
    let after = call_url(&gateway.url, "slow", "{}").await;
    assert_eq!(cache_header(&after), Some("miss"));
    assert_eq!(result(&after)["version"], 2);
    let hit = call_url(&gateway.url, "slow", "{}").await;
    assert_eq!(cache_header(&hit), Some("hit"));
    assert_eq!(result(&hit), result(&after));

    // The sub-call of `slow` from `outer` gets the cached entry.
    let direct = call_url(&gateway.url, "slow", r#"{"tag":"t"}"#).await;
    let outer = call_url(&gateway.url, "outer", r#"["t"]"#).await;
    assert_eq!(cache_header(&outer), None);
    assert_eq!(result(&outer), result(&direct)["random"]);
}

/// A batch's entries use the cache one by one (identical entries run
/// once); the response has no `x-madrpc-cache`, which could not describe
/// them all.
#[tokio::test(flavor = "multi_thread")]
async fn batch_entries_use_the_cache_without_a_header() {
    let grid = serve(&[]);
    let cached = call(&grid, "slow", r#"{"in":"batch"}"#, &[]).await;
    let body = r#"[
        {"jsonrpc":"2.0","method":"slow","params":{"in":"batch"},"id":1},
        {"jsonrpc":"2.0","method":"slow","params":{"ms":300,"new":1},"id":2},
        {"jsonrpc":"2.0","method":"slow","params":{"new":1,"ms":300},"id":3}
    ]"#;
    let reply = post_with(
        &client(),
        &format!("{}/", grid.url),
        "application/json",
        &[],
        body,
    )
    .await
    .unwrap();
    assert_eq!(cache_header(&reply), None);
    let replies = reply.json();
    let by_id = |id: u64| {
        replies
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["result"].clone())
            .unwrap()
    };
    assert_eq!(by_id(1), result(&cached));
    assert_eq!(by_id(2), by_id(3));
    // The first call and one run shared by entries 2 and 3.
    assert_eq!(await_runs(&grid, "slow", 2), 2);
    assert_eq!(runs_of(&grid, "slow"), 2);
}

/// Calls the node at `url` has served so far, from its `/health`.
async fn served(url: &str) -> u64 {
    support::grid::get_json(&client(), &format!("{url}/health")).await["served"]
        .as_u64()
        .expect("a served count")
}

/// The module hashes a gateway knows its available nodes run.
async fn known_modules(gateway: &str) -> Vec<String> {
    let nodes = support::grid::get_json(&client(), &format!("{gateway}/v1/nodes")).await;
    nodes["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["available"] == true)
        .filter_map(|n| n["module"].as_str().map(str::to_owned))
        .collect()
}

/// A gateway that finds its node with `--node` or `--discover` (no
/// heartbeats) learns the node's module from its `/health` and caches for
/// it: the node runs the function once for two calls. A gateway in front of two such nodes that
/// run different modules caches nothing, so neither gets the other's
/// results.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_caches_for_nodes_it_health_checks_by_their_module() {
    let node = Process::node(module(), &[]);
    let health = support::grid::get_json(&client(), &format!("{}/health", node.url)).await;
    let hash = health["module"]["hash"].as_str().expect("a module hash");
    assert_eq!(health["module"]["cache"]["slow"], 60_000, "{health}");
    let gateway = Process::gateway(&["--node", &node.url]);
    assert!(
        support::grid::eventually(Duration::from_secs(30), || async {
            known_modules(&gateway.url).await == [hash.to_owned()]
        })
        .await,
        "the gateway never learned the node's module"
    );
    let before = served(&node.url).await;
    let first = call_url(&gateway.url, "slow", r#"{"n":1}"#).await;
    assert_eq!(cache_header(&first), Some("miss"));
    let again = call_url(&gateway.url, "slow", r#"{ "n": 1 }"#).await;
    assert_eq!(cache_header(&again), Some("hit"));
    assert_eq!(result(&again), result(&first));
    assert_eq!(served(&node.url).await - before, 1, "the guest ran once");

    // The same for a node found by DNS (`localhost` names 127.0.0.1).
    let port = node.url.rsplit(':').next().expect("a port");
    let found = Process::gateway(&[
        "--discover",
        &format!("dns:localhost:{port}"),
        "--discover-interval",
        "200ms",
    ]);
    assert!(
        support::grid::eventually(Duration::from_secs(30), || async {
            known_modules(&found.url).await == [hash.to_owned()]
        })
        .await,
        "the gateway never learned the discovered node's module"
    );
    let before = served(&node.url).await;
    let first = call_url(&found.url, "slow", r#"{"n":3}"#).await;
    assert_eq!(cache_header(&first), Some("miss"));
    let again = call_url(&found.url, "slow", r#"{"n":3}"#).await;
    assert_eq!(cache_header(&again), Some("hit"));
    assert_eq!(served(&node.url).await - before, 1, "the guest ran once");

    let dir = tempfile::tempdir().unwrap();
    let v2 = support::build_into(dir.path(), "cache_v2.js");
    let other = Process::node(&v2, &[]);
    let mixed = Process::gateway(&["--node", &node.url, "--node", &other.url]);
    assert!(
        support::grid::eventually(Duration::from_secs(30), || async {
            let modules = known_modules(&mixed.url).await;
            modules.len() == 2 && modules[0] != modules[1]
        })
        .await,
        "the gateway never learned both modules"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let reply = call_url(&mixed.url, "slow", r#"{"n":2}"#).await;
        assert_eq!(cache_header(&reply), None, "cached across modules");
        seen.insert(result(&reply)["random"].to_string());
    }
    assert_eq!(seen.len(), 4, "a result was reused: {seen:?}");
}
