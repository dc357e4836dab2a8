//! Jobs that outlive their process, through real processes: two
//! `madrpc gateway`s in front of a node share one PostgreSQL queue and one
//! survives the other's `kill -9`; a graceful shutdown finishes or hands
//! back its running jobs (to another process, or to itself restarted); the
//! PostgreSQL store is reached over TLS.

mod support;

use serde_json::json;
use std::time::Duration;
use support::grid::{Process, TEST_TOKEN, client};
use support::jobs::{finished, module, request, submit};
use support::logged::Logged;
use support::postgres::Postgres;

/// A gateway in front of the node at `node`, keeping jobs in `store`, with
/// its log read by the test.
fn gateway(node: &str, store: &str, data: &tempfile::TempDir, extra: &[&str]) -> Logged {
    let data = data.path().display().to_string();
    let mut args =
        support::grid::gateway_args(&["--node", node, "--jobs-store", store, "--data-dir", &data]);
    args.extend_from_slice(extra);
    Logged::start(
        &args,
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc gateway listening on ",
    )
}

fn started(process: &Logged) -> usize {
    process.matching(|l| l.contains("job started")).len()
}

/// Two gateway processes in front of one node process share a PostgreSQL
/// queue. Gateway A is killed with SIGKILL while its job runs on the node;
/// gateway B takes the job over once A's lease runs out and records its one
/// result.
#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_share_postgres_and_one_finishes_the_others_job() {
    let store = Postgres::start();
    let node = Process::node(module(), &[]);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lease = ["--job-lease", "1s"];
    let mut a = gateway(&node.url, &store.url, &dir_a, &lease);
    let http = client();
    assert!(support::grid::nodes_become_available(&http, &a.url, 1, Duration::from_secs(30)).await);
    let id = submit(
        &a.url,
        json!({"method": "busy", "params": [2500, "taken over"]}),
    )
    .await;
    a.wait_for(|l| l.contains("job started"), Duration::from_secs(20))
        .expect("gateway A starts the job");
    // B starts once A holds the lease, so the job cannot go to B first.
    let b = gateway(&node.url, &store.url, &dir_b, &lease);
    assert!(support::grid::nodes_become_available(&http, &b.url, 1, Duration::from_secs(30)).await);
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10))
        .expect("gateway A is gone");
    assert!(
        a.matching(|l| l.contains("job finished")).is_empty(),
        "A finished the job before it was killed: {}",
        a.output()
    );

    let job = finished(&b.url, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"], "taken over");
    assert_eq!(job["attempts"], 2, "one run on A, one on B: {job}");
    assert_eq!(started(&b), 1);
    assert_eq!(
        b.wait_for_count(|l| l.contains("job finished"), 1, Duration::from_secs(10))
            .len(),
        1,
        "one recorded result"
    );
    let all = request(hyper::Method::GET, &format!("{}/v1/jobs", b.url), &[], None)
        .await
        .json();
    assert_eq!(all["jobs"].as_array().unwrap().len(), 1, "{all}");
}

/// SIGINT to `serve` while two jobs run: the short one finishes within the
/// drain time and is recorded by the stopping process; the long one is
/// handed back, so another `serve` on the same store runs it at once
/// rather than after its lease of a minute, and the handed-back run does
/// not count as an attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_shutdown_finishes_or_hands_back_its_running_jobs() {
    let store = Postgres::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let script = module().display().to_string();
    let serve = |dir: &tempfile::TempDir| {
        let data = dir.path().display().to_string();
        Logged::start(
            &[
                "serve",
                &script,
                "--listen",
                "127.0.0.1:0",
                "--nodes",
                "2",
                "--job-workers",
                "2",
                "--job-lease",
                "60s",
                "--drain-timeout",
                "3s",
                "--jobs-store",
                &store.url,
                "--data-dir",
                &data,
            ],
            &[],
            "madrpc is serving at ",
        )
    };
    let mut a = serve(&dir_a);
    let short = submit(
        &a.url,
        json!({"method": "busy", "params": [800, "finished while draining"]}),
    )
    .await;
    let long = submit(
        &a.url,
        json!({"method": "busy", "params": [5000, "handed back"]}),
    )
    .await;
    a.wait_for_count(|l| l.contains("job started"), 2, Duration::from_secs(20));
    assert_eq!(started(&a), 2, "{}", a.output());

    a.signal(libc::SIGINT);
    let status = a.wait_exit(Duration::from_secs(10)).expect("A exits");
    assert!(status.success(), "{status:?}: {}", a.output());
    let handed_back = a.matching(|l| l.contains("job handed back"));
    assert_eq!(handed_back.len(), 1, "{}", a.output());
    assert!(handed_back[0].contains(&long), "{}", handed_back[0]);

    let b = serve(&dir_b);
    let job = finished(&b.url, &short).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"], "finished while draining");
    assert_eq!(job["attempts"], 1);
    let job = finished(&b.url, &long).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"], "handed back");
    assert_eq!(
        job["attempts"], 1,
        "the handed-back run is not counted: {job}"
    );
    assert_eq!(started(&b), 1, "B ran only the handed-back job");
}

/// SIGINT to `serve` on the embedded store while a job runs past the
/// drain time: the job is handed back, and the restarted `serve` runs it
/// to its one result, the interrupted run not counted as an attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_interrupted_by_a_graceful_shutdown_runs_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let script = module().display().to_string();
    let serve = || {
        Logged::start(
            &[
                "serve",
                &script,
                "--listen",
                "127.0.0.1:0",
                "--drain-timeout",
                "1s",
                "--data-dir",
                &data,
            ],
            &[],
            "madrpc is serving at ",
        )
    };
    let mut first = serve();
    let id = submit(
        &first.url,
        json!({"method": "busy", "params": [2500, "after a restart"]}),
    )
    .await;
    first
        .wait_for(|l| l.contains("job started"), Duration::from_secs(20))
        .expect("the job starts");
    first.signal(libc::SIGINT);
    let status = first.wait_exit(Duration::from_secs(10)).expect("it exits");
    assert!(status.success(), "{status:?}: {}", first.output());
    assert_eq!(
        first.matching(|l| l.contains("job handed back")).len(),
        1,
        "{}",
        first.output()
    );
    assert!(first.matching(|l| l.contains("job finished")).is_empty());

    let second = serve();
    let job = finished(&second.url, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"], "after a restart");
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(
        second
            .wait_for_count(|l| l.contains("job finished"), 1, Duration::from_secs(10))
            .len(),
        1
    );
}

/// A PostgreSQL server that takes only TLS connections: a job round-trips
/// over `sslmode=require` with the server's CA given as `sslrootcert`;
/// `sslmode=disable`, or TLS without the CA, stops `serve` at start with
/// what to do.
#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_store_over_tls() {
    let server = Postgres::start_tls();
    let ca = server.ca.clone().expect("the server's CA");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let script = module().display().to_string();
    let with_store = |store: &str| {
        vec![
            "serve".to_owned(),
            script.clone(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            data.clone(),
            "--jobs-store".to_owned(),
            store.to_owned(),
        ]
    };

    let refused = |store: String| {
        let args = with_store(&store);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = support::run_cli(dir.path(), &args);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        support::texts(&output).1
    };
    let plain = refused(format!("{}?sslmode=disable", server.url));
    assert!(
        plain.contains("only TLS connections") && plain.contains("sslmode=require"),
        "{plain}"
    );
    let untrusted = refused(format!("{}?sslmode=require", server.url));
    assert!(
        untrusted.contains("certificate") && untrusted.contains("sslrootcert="),
        "{untrusted}"
    );

    let url = format!(
        "{}?sslmode=require&sslrootcert={}",
        server.url,
        ca.display()
    );
    let args = with_store(&url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let grid = Logged::start(&args, &[], "madrpc is serving at ");
    let id = submit(&grid.url, json!({"method": "add", "params": [20, 22]})).await;
    let job = finished(&grid.url, &id).await;
    assert_eq!(job["result"], 42, "{job}");
    let listed = request(
        hyper::Method::GET,
        &format!("{}/v1/jobs", grid.url),
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
}
