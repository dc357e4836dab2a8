//! Durable jobs through real processes: `/v1/jobs` on `serve`, kept in the
//! embedded store or in a real PostgreSQL server, surviving `kill -9`,
//! idempotent, cancellable, and the `submit` and `job` commands.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::grid::client;
use support::jobs::{finished, get_job, module, request, submit};
use support::logged::Logged;
use support::postgres::Postgres;

const READY: &str = "madrpc is serving at ";

/// Where a test's jobs are kept.
enum Store {
    Embedded,
    Postgres(Postgres),
}

impl Store {
    fn postgres() -> Store {
        Store::Postgres(Postgres::start())
    }

    /// The `serve` flags that choose this store, with `dir` as data dir.
    fn args(&self, dir: &std::path::Path) -> Vec<String> {
        let mut args = vec!["--data-dir".to_owned(), dir.display().to_string()];
        if let Store::Postgres(server) = self {
            args.extend(["--jobs-store".to_owned(), server.url.clone()]);
        }
        args
    }
}

/// `madrpc serve jobs.wasm` with the store's flags and `extra`.
fn serve(store: &Store, dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Logged {
    let script = module().display().to_string();
    let mut args: Vec<String> = vec![
        "serve".into(),
        script,
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(store.args(dir));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Logged::start(&args, env, READY)
}

/// Lines of the pool's debug log that record a run of `method`, once at
/// least `at_least` are there (a reply can come before its log line).
fn runs_of(process: &Logged, method: &str, at_least: usize) -> usize {
    let needle = format!("method={method} ");
    process
        .wait_for_count(
            |l| l.contains(" call") && l.contains(&needle),
            at_least,
            Duration::from_secs(10),
        )
        .len()
}

/// Runs one test body against the embedded store and against PostgreSQL.
macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn embedded() {
                super::$name(super::Store::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$name(super::Store::postgres()).await;
            }
        }
    };
}

on_both_stores!(a_job_outlasts_the_call_deadline);
on_both_stores!(an_idempotent_resubmit_runs_the_work_once);
on_both_stores!(cancelling_a_running_job_frees_its_worker);
on_both_stores!(guest_errors_are_final_and_finished_jobs_are_purged);

/// A call under `--deadline 1s` fails after a second; the same work as a
/// job runs under the job deadline and succeeds, with its sub-calls
/// balanced over both nodes.
async fn a_job_outlasts_the_call_deadline(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(
        &store,
        dir.path(),
        &["--deadline", "1s", "--nodes", "2"],
        &[],
    );
    let call = support::grid::rpc(
        &client(),
        &format!("{}/", grid.url),
        r#"{"jsonrpc":"2.0","method":"busy","params":[1500],"id":1}"#,
    )
    .await;
    assert_eq!(call.json()["error"]["data"]["kind"], "deadline_exceeded");
    // A client cannot grant itself a job's limits.
    let call = support::grid::post_with(
        &client(),
        &format!("{}/", grid.url),
        "application/json",
        &[("x-madrpc-job-grant", "3600000,1000000000000")],
        r#"{"jsonrpc":"2.0","method":"busy","params":[1500],"id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(call.json()["error"]["data"]["kind"], "deadline_exceeded");

    let id = submit(
        &grid.url,
        json!({"method": "busy", "params": [1500, "long"]}),
    )
    .await;
    let job = finished(&grid.url, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"], "long");
    assert_eq!(job["attempts"], 1);
    for field in ["created", "started", "finished"] {
        assert!(job[field].is_string(), "{field} is missing: {job}");
    }
}

/// The same key and body return the same job and run the work once; the
/// same key with another body is refused; a listing pages.
async fn an_idempotent_resubmit_runs_the_work_once(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(
        &store,
        dir.path(),
        &[],
        &[("RUST_LOG", "info,madrpc::node::pool=debug")],
    );
    let url = format!("{}/v1/jobs", grid.url);
    let body = json!({"method": "busy", "params": [300, "once"]});
    let key = [("idempotency-key", "order-17")];
    let first = request(hyper::Method::POST, &url, &key, Some(body.clone())).await;
    assert_eq!(first.status, 202);
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let job = finished(&grid.url, &id).await;
    assert_eq!(job["result"], "once");

    let again = request(hyper::Method::POST, &url, &key, Some(body)).await;
    assert_eq!(again.status, 200, "a resubmit answers 200 with the job");
    let again = again.json();
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["state"], "succeeded");
    assert_eq!(again["result"], "once");

    let other = json!({"method": "busy", "params": [300, "twice"]});
    let refused = request(hyper::Method::POST, &url, &key, Some(other)).await;
    assert_eq!(refused.status, 422);
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("order-17") && message.contains("different body"),
        "{message}"
    );

    assert_eq!(runs_of(&grid, "busy", 1), 1, "{}", grid.output());

    let second = submit(&grid.url, json!({"method": "add", "params": [1, 2]})).await;
    finished(&grid.url, &second).await;
    let page = request(hyper::Method::GET, &format!("{url}?limit=1"), &[], None)
        .await
        .json();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["id"], id.as_str());
    let next = page["next"].as_str().expect("a next page");
    let rest = request(
        hyper::Method::GET,
        &format!("{url}?limit=1&after={next}&state=succeeded"),
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(rest["jobs"][0]["id"], second.as_str());
}

/// A cancelled job stops in its sandbox: the only worker takes the next
/// call at once.
async fn cancelling_a_running_job_frees_its_worker(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(&store, dir.path(), &["--nodes", "1", "--workers", "1"], &[]);
    let id = submit(&grid.url, json!({"method": "busy", "params": [600_000]})).await;
    grid.wait_for(|l| l.contains("job started"), Duration::from_secs(20))
        .expect("the job starts");
    let cancelled = request(
        hyper::Method::DELETE,
        &format!("{}/v1/jobs/{id}", grid.url),
        &[],
        None,
    )
    .await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.json()["state"], "cancelled");
    grid.wait_for(
        |l| l.contains("its call was stopped"),
        Duration::from_secs(10),
    )
    .expect("the running call stops");

    let started = std::time::Instant::now();
    let call = support::grid::rpc(
        &client(),
        &format!("{}/", grid.url),
        r#"{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}"#,
    )
    .await;
    assert_eq!(call.json()["result"], 5);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the worker was still busy: {:?}",
        started.elapsed()
    );
    let job = get_job(&grid.url, &id, "0s").await.json();
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["error"]["data"]["kind"], "cancelled");
    let again = request(
        hyper::Method::DELETE,
        &format!("{}/v1/jobs/{id}", grid.url),
        &[],
        None,
    )
    .await;
    assert_eq!(again.status, 409, "a finished job cannot be cancelled");
}

/// A guest error fails the job at once, without a retry; past retention the
/// job is gone.
async fn guest_errors_are_final_and_finished_jobs_are_purged(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(&store, dir.path(), &["--job-retention", "1s"], &[]);
    let id = submit(&grid.url, json!({"method": "fail"})).await;
    let job = finished(&grid.url, &id).await;
    assert_eq!(job["state"], "failed");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["error"]["code"], -32000);
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no luck")
    );
    grid.wait_for(|l| l.contains("purged jobs"), Duration::from_secs(10))
        .expect("the job is purged");
    assert_eq!(get_job(&grid.url, &id, "0s").await.status, 404);
}

/// `kill -9` of `serve` in the middle of a job: after a restart on the same
/// data directory the job runs again and its one result is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_outlives_kill_9_of_serve() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Embedded;
    let first = serve(&store, dir.path(), &[], &[]);
    let id = submit(
        &first.url,
        json!({"method": "busy", "params": [1500, "survived"]}),
    )
    .await;
    first
        .wait_for(|l| l.contains("job started"), Duration::from_secs(20))
        .expect("the job starts");
    first.signal(libc::SIGKILL);
    drop(first);

    let second = serve(&store, dir.path(), &[], &[]);
    let job = finished(&second.url, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"], "survived");
    assert_eq!(
        job["attempts"], 2,
        "it ran once before the kill, once after"
    );
    let all = request(
        hyper::Method::GET,
        &format!("{}/v1/jobs", second.url),
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(all["jobs"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(
        second
            .wait_for_count(|l| l.contains("job finished"), 1, Duration::from_secs(10))
            .len(),
        1,
        "one recorded result"
    );
}

/// `submit --wait` prints the result; `submit` prints an id that `job
/// --wait` shows once finished; piped, neither shows progress.
#[tokio::test(flavor = "multi_thread")]
async fn the_submit_and_job_commands() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(&Store::Embedded, dir.path(), &[], &[]);
    let url = grid.url.clone();
    let run = move |args: &[&str]| {
        let mut all = vec![args[0], "--url", &url];
        all.extend_from_slice(&args[1..]);
        support::madrpc().args(&all).output().expect("madrpc runs")
    };
    let out = tokio::task::block_in_place(|| run(&["submit", "add", "[2, 3]", "--wait"]));
    let (stdout, stderr) = support::texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "5");
    assert!(
        !stderr.contains('\r'),
        "progress shown when piped: {stderr:?}"
    );

    let out = tokio::task::block_in_place(|| run(&["submit", "busy", "[300, \"later\"]"]));
    let id = support::texts(&out).0.trim().to_owned();
    assert_eq!(id.len(), 28, "an id: {id}");
    let out = tokio::task::block_in_place(|| run(&["job", &id, "--wait"]));
    let (stdout, stderr) = support::texts(&out);
    assert!(out.status.success(), "{stderr}");
    let job: Value = serde_json::from_str(&stdout).expect("the job as JSON");
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["result"], "later");

    let out = tokio::task::block_in_place(|| run(&["submit", "fail", "--wait"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(support::texts(&out).1.contains("no luck"));

    // A cancelled job exits with status 1 too.
    let out = tokio::task::block_in_place(|| run(&["submit", "busy", "[20000]"]));
    let id = support::texts(&out).0.trim().to_owned();
    let reply = request(
        hyper::Method::DELETE,
        &format!("{}/v1/jobs/{id}", grid.url),
        &[],
        None,
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let out = tokio::task::block_in_place(|| run(&["job", &id, "--wait"]));
    let (stdout, stderr) = support::texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let job: Value = serde_json::from_str(&stdout).expect("the job as JSON");
    assert_eq!(job["state"], "cancelled", "{job}");
}

/// `madrpc keys new NAME --file FILE [limits]`, returning the secret.
fn new_key(file: &std::path::Path, name: &str, limits: &[&str]) -> String {
    let file = file.to_str().expect("UTF-8 path");
    let mut args = vec!["keys", "new", name, "--file", file];
    args.extend_from_slice(limits);
    let output = support::run_cli(std::path::Path::new("."), &args);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// With API keys, the job API wants one; each key sees only its own jobs,
/// idempotency keys are scoped per API key, and a key's rate limit counts
/// its submissions as it counts its calls.
#[tokio::test(flavor = "multi_thread")]
async fn each_api_key_sees_only_its_own_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let alice = format!("Bearer {}", new_key(&keys, "alice", &[]));
    let bob = format!("Bearer {}", new_key(&keys, "bob", &[]));
    let carol = format!(
        "Bearer {}",
        new_key(&keys, "carol", &["--rate", "1/min", "--burst", "2"])
    );
    let dave = format!("Bearer {}", new_key(&keys, "dave", &["--concurrency", "1"]));
    let grid = serve(
        &Store::Embedded,
        dir.path(),
        &["--keys", keys.to_str().unwrap()],
        &[],
    );
    let url = format!("{}/v1/jobs", grid.url);
    let body = json!({"method": "add", "params": [20, 22]});
    let anonymous = request(hyper::Method::POST, &url, &[], Some(body.clone())).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"]["data"]["kind"], "unauthorized");
    assert!(anonymous.headers.contains_key("www-authenticate"));

    // Past its burst, a key's submissions are refused as its calls are:
    // 429, Retry-After, and the JSON-RPC error calls get; nothing is stored.
    let as_carol = [("authorization", carol.as_str())];
    for _ in 0..2 {
        let accepted = request(hyper::Method::POST, &url, &as_carol, Some(body.clone())).await;
        assert_eq!(accepted.status, 202);
    }
    let limited = request(hyper::Method::POST, &url, &as_carol, Some(body.clone())).await;
    assert_eq!(limited.status, 429);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    let refusal = limited.json();
    assert_eq!(refusal["jsonrpc"], "2.0");
    assert_eq!(refusal["error"]["code"], -32031);
    assert_eq!(refusal["error"]["data"]["kind"], "rate_limited");
    assert_eq!(refusal["error"]["data"]["retry_after_secs"], retry_after);
    let call = support::grid::post_with(
        &client(),
        &format!("{}/", grid.url),
        "application/json",
        &as_carol,
        r#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        call.status, 429,
        "submissions and calls share the key's rate"
    );

    // A long poll holds one of the key's concurrency slots while it waits.
    let as_dave = [("authorization", dave.as_str())];
    let reply = request(
        hyper::Method::POST,
        &url,
        &as_dave,
        Some(json!({"method": "busy", "params": [1500, "polled"]})),
    )
    .await;
    let polled = reply.json()["id"].as_str().unwrap().to_owned();
    let poll = tokio::spawn({
        let (url, dave) = (format!("{url}/{polled}?wait=30s"), dave.clone());
        async move { request(hyper::Method::GET, &url, &[("authorization", &dave)], None).await }
    });
    let unknown = json!({"method": "nope"});
    assert!(
        support::grid::eventually(Duration::from_secs(10), || async {
            let reply = request(hyper::Method::POST, &url, &as_dave, Some(unknown.clone())).await;
            reply.status == 429
                && reply.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("at once"))
        })
        .await,
        "the long poll did not hold the key's only slot"
    );
    assert_eq!(poll.await.unwrap().json()["result"], "polled");
    let after = request(hyper::Method::POST, &url, &as_dave, Some(unknown)).await;
    assert_eq!(
        after.status, 422,
        "the slot is free again once the poll answered"
    );

    let submit_as = |who: &str| {
        let headers = [
            ("authorization", who.to_owned()),
            ("idempotency-key", "same".to_owned()),
        ];
        let (url, body) = (url.clone(), body.clone());
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = request(hyper::Method::POST, &url, &headers, Some(body)).await;
            assert_eq!(
                reply.status,
                202,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            reply.json()["id"].as_str().unwrap().to_owned()
        }
    };
    let alices = submit_as(&alice).await;
    let bobs = submit_as(&bob).await;
    assert_ne!(
        alices, bobs,
        "the same idempotency key of two API keys names two jobs"
    );

    let as_bob = [("authorization", bob.as_str())];
    let peek = request(
        hyper::Method::GET,
        &format!("{url}/{alices}"),
        &as_bob,
        None,
    )
    .await;
    assert_eq!(peek.status, 404);
    let stop = request(
        hyper::Method::DELETE,
        &format!("{url}/{alices}"),
        &as_bob,
        None,
    )
    .await;
    assert_eq!(stop.status, 404);
    let listed = request(hyper::Method::GET, &url, &as_bob, None)
        .await
        .json();
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bobs.as_str()]);

    let as_alice = [("authorization", alice.as_str())];
    let own = request(
        hyper::Method::GET,
        &format!("{url}/{alices}?wait=30s"),
        &as_alice,
        None,
    )
    .await
    .json();
    assert_eq!(own["result"], 42, "{own}");
}

/// A gateway with two node processes whose calls get one second: a job
/// that fans out in rounds for longer runs on a node under its granted
/// deadline, and its sub-calls are balanced over both nodes.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_fans_out_across_the_nodes_of_a_gateway() {
    use support::grid::Process;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let gateway = Process::gateway(&["--data-dir", &data]);
    let node_args = [
        "--join",
        gateway.url.as_str(),
        "--deadline",
        "1s",
        "--workers",
        "2",
    ];
    let nodes: Vec<Process> = (0..2)
        .map(|_| Process::node(module(), &node_args))
        .collect();
    let http = client();
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 2, Duration::from_secs(30))
            .await,
        "the nodes never became available"
    );
    let call = support::grid::rpc(
        &http,
        &format!("{}/", gateway.url),
        r#"{"jsonrpc":"2.0","method":"relay","params":[3,3,450],"id":1}"#,
    )
    .await;
    assert_eq!(call.json()["error"]["data"]["kind"], "deadline_exceeded");

    let served = |url: String| {
        let http = http.clone();
        async move {
            support::grid::get_json(&http, &format!("{url}/health")).await["served"]
                .as_u64()
                .unwrap()
        }
    };
    let before = [
        served(nodes[0].url.clone()).await,
        served(nodes[1].url.clone()).await,
    ];
    let id = submit(
        &gateway.url,
        json!({"method": "relay", "params": [3, 3, 450]}),
    )
    .await;
    let job = finished(&gateway.url, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"], 9);
    let after = [
        served(nodes[0].url.clone()).await,
        served(nodes[1].url.clone()).await,
    ];
    let runs: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(
        runs.iter().sum::<u64>(),
        10,
        "the job's call and its nine sub-calls: {runs:?}"
    );
    assert!(
        runs.iter().all(|&n| n >= 3),
        "sub-calls were not spread: {runs:?}"
    );
}

/// A job submitted while the gateway's only node is stopped fails in the
/// grid, not in the guest: it waits out a backoff and runs again, and
/// succeeds once the node is back. With one attempt allowed, the same
/// failure is final.
#[tokio::test(flavor = "multi_thread")]
async fn grid_failures_are_retried_with_backoff() {
    use support::grid::Process;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let gateway = Process::gateway(&["--data-dir", &data]);
    let node = Process::node(module(), &["--join", gateway.url.as_str()]);
    let http = client();
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 1, Duration::from_secs(30))
            .await
    );
    node.signal(libc::SIGSTOP);
    assert!(
        support::grid::nodes_become_available(&http, &gateway.url, 0, Duration::from_secs(10))
            .await,
        "the stopped node stays in rotation"
    );
    let id = submit(&gateway.url, json!({"method": "add", "params": [40, 2]})).await;
    let waiting = support::grid::eventually(Duration::from_secs(20), || async {
        let job = get_job(&gateway.url, &id, "0s").await.json();
        job["state"] == "queued" && job["last_error"]["data"]["kind"] == "no_healthy_node"
    })
    .await;
    node.signal(libc::SIGCONT);
    assert!(waiting, "the job did not wait for a retry");
    let job = finished(&gateway.url, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"], 42);
    assert!(job["attempts"].as_u64().unwrap() >= 2, "{job}");

    let strict_dir = tempfile::tempdir().unwrap();
    let strict_data = strict_dir.path().display().to_string();
    let strict = Process::gateway(&["--data-dir", &strict_data, "--job-attempts", "1"]);
    let id = submit(&strict.url, json!({"method": "add", "params": [1, 1]})).await;
    let job = finished(&strict.url, &id).await;
    assert_eq!(job["state"], "failed");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["error"]["data"]["kind"], "no_healthy_node");
}

/// The PostgreSQL server restarts under a running `serve`: the store
/// connects again, and jobs go on.
#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_store_reconnects_after_a_server_restart() {
    let mut store = Store::postgres();
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(&store, dir.path(), &[], &[]);
    let id = submit(&grid.url, json!({"method": "add", "params": [1, 2]})).await;
    assert_eq!(finished(&grid.url, &id).await["result"], 3);
    if let Store::Postgres(server) = &mut store {
        tokio::task::block_in_place(|| server.restart());
    }
    grid.wait_for(
        |l| l.contains("connection to the PostgreSQL job store broke"),
        Duration::from_secs(10),
    )
    .expect("the broken connection is noticed");
    let url = format!("{}/v1/jobs", grid.url);
    let body = json!({"method": "add", "params": [2, 3]});
    let mut id = None;
    for _ in 0..50 {
        let reply = request(hyper::Method::POST, &url, &[], Some(body.clone())).await;
        if reply.status == 202 {
            id = reply.json()["id"].as_str().map(str::to_owned);
            break;
        }
        assert_eq!(
            reply.status,
            503,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = id.expect("the store took jobs again");
    assert_eq!(finished(&grid.url, &id).await["result"], 5);
}

/// On a terminal, `job --wait` shows the state and the time waited as it
/// goes (`script` gives it a pseudo-terminal).
#[tokio::test(flavor = "multi_thread")]
async fn waiting_on_a_terminal_shows_progress() {
    let dir = tempfile::tempdir().unwrap();
    let grid = serve(&Store::Embedded, dir.path(), &[], &[]);
    let id = submit(
        &grid.url,
        json!({"method": "busy", "params": [2500, "shown"]}),
    )
    .await;
    let command = format!(
        "{} job {id} --wait --url {}",
        env!("CARGO_BIN_EXE_madrpc"),
        grid.url
    );
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .output()
            .expect("script runs")
    });
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(
        transcript.contains(&format!("\r\x1b[2K{id}: running, ")),
        "no progress shown: {transcript:?}"
    );
    assert!(
        transcript.contains(&format!("{id}: succeeded, ")),
        "{transcript:?}"
    );
    assert!(transcript.contains("\"shown\""), "{transcript:?}");
}

/// A public node (no cluster token asked) still grants a job's limits only
/// to a request that carries the token: a client's grant header is ignored.
#[tokio::test(flavor = "multi_thread")]
async fn a_public_node_grants_job_limits_only_with_the_cluster_token() {
    use support::grid::{Process, TEST_TOKEN};
    let module = module().to_str().unwrap();
    let node = Process::start_with_env(
        &[
            "node",
            "--module",
            module,
            "--listen",
            "127.0.0.1:0",
            "--deadline",
            "1s",
            "--insecure-public-calls",
        ],
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc node listening on ",
    );
    let url = format!("{}/v1/call/busy", node.url);
    let grant = ("x-madrpc-job-grant", "10000,1000000000000");
    let token = format!("Bearer {TEST_TOKEN}");
    let as_client =
        support::grid::post_with(&client(), &url, "application/json", &[grant], "[1500]")
            .await
            .unwrap();
    assert_eq!(
        as_client.status,
        422,
        "{}",
        String::from_utf8_lossy(&as_client.body)
    );
    assert_eq!(as_client.json()["data"]["kind"], "deadline_exceeded");
    let as_gateway = support::grid::post_with(
        &client(),
        &url,
        "application/json",
        &[grant, ("authorization", &token)],
        "[1500]",
    )
    .await
    .unwrap();
    assert_eq!(
        as_gateway.status,
        200,
        "{}",
        String::from_utf8_lossy(&as_gateway.body)
    );
    assert_eq!(as_gateway.json(), 1500);
}

/// Two `serve`s on the default data directory: the first keeps jobs, the
/// second serves calls with the job API off and says why; one that names
/// the taken directory does not start.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_default_store_turns_the_job_api_off() {
    let home = tempfile::tempdir().unwrap();
    let data_home = home.path().display().to_string();
    let env = [("XDG_DATA_HOME", data_home.as_str())];
    let start = || {
        let module = module().display().to_string();
        Logged::start(&["serve", &module, "--listen", "127.0.0.1:0"], &env, READY)
    };
    let first = start();
    let second = start();
    submit(&first.url, json!({"method": "add", "params": [1, 1]})).await;
    let refused = request(
        hyper::Method::POST,
        &format!("{}/v1/jobs", second.url),
        &[],
        Some(json!({"method": "add", "params": [1, 1]})),
    )
    .await;
    assert_eq!(refused.status, 503);
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("in use by another madrpc"), "{message}");
    let call = support::grid::rpc(
        &client(),
        &format!("{}/", second.url),
        r#"{"jsonrpc":"2.0","method":"add","params":[1,1],"id":1}"#,
    )
    .await;
    assert_eq!(call.json()["result"], 2);

    let taken = home.path().join("madrpc").display().to_string();
    let module = module().display().to_string();
    let output = support::run_cli(
        home.path(),
        &[
            "serve",
            &module,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &taken,
        ],
    );
    let stderr = support::texts(&output).1;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another madrpc"), "{stderr}");
}
