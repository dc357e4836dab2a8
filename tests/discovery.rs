//! Past one machine: `madrpc call` over several gateways, gateways that
//! find their nodes by DNS, and two gateways sharing the nodes while one
//! of them dies. The DNS tests resolve through the system resolver: each
//! gateway runs in a network namespace of its own, where `ip netns exec`
//! lays `/etc/netns/NAME/hosts` over `/etc/hosts`, and the nodes run in
//! other namespaces on one bridge. Addresses are 10.213.9.0/24 and
//! 10.213.10.0/24, inside the test's own namespaces only.

mod support;

use madrpc::client::RpcClient;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use support::grid::{Process, TEST_TOKEN, client, eventually, get_json};
use support::netns::{Network, NsProcess, enter};
use support::{build_into, madrpc, texts};

const NAME: &str = "nodes.madrpc.test";

#[test]
fn call_fails_over_to_the_next_url_when_a_gateway_is_down() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let module = build_into(dir.path(), "grid.js");
    let serve = Process::start(
        &support::grid::serve_args(&module, &["--nodes", "1"]),
        "madrpc is serving at ",
    );
    // A port nothing listens on: connections are refused.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
    };
    let live = format!("{}/", serve.url);

    let output = madrpc()
        .args(["call", "--url", &dead, "--url", &live, "add", "[3, 4]"])
        .output()
        .expect("madrpc runs");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "7");
    assert!(
        stderr.contains("trying the next --url") && stderr.contains(&dead),
        "{stderr}"
    );

    // The same through MADRPC_URL, a comma-separated list.
    let output = madrpc()
        .args(["call", "add", "[5, 6]"])
        .env("MADRPC_URL", format!("{dead},{live}"))
        .output()
        .expect("madrpc runs");
    assert_eq!(texts(&output).0.trim(), "11", "{}", texts(&output).1);

    // A gateway with no node answers no_healthy_node: the next one may
    // have nodes.
    let empty = Process::gateway(&[]);
    let empty = format!("{}/", empty.url);
    let output = madrpc()
        .args(["call", "--url", &empty, "--url", &live, "add", "[1, 1]"])
        .output()
        .expect("madrpc runs");
    let (stdout, stderr) = texts(&output);
    assert_eq!(stdout.trim(), "2", "{stderr}");
    assert!(
        stderr.contains("-32011") || stderr.contains("no node"),
        "{stderr}"
    );

    // A guest error is the call's answer, not a reason to try elsewhere.
    let output = madrpc()
        .args(["call", "--url", &live, "--url", &dead, "fail"])
        .output()
        .expect("madrpc runs");
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error -32000") && !stderr.contains("next --url"),
        "{stderr}"
    );

    // Every gateway down: the last one's error, and exit status 1.
    let output = madrpc()
        .args(["call", "--url", &dead, "--url", &dead, "add", "[1, 2]"])
        .output()
        .expect("madrpc runs");
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// One client calling until `stop` through `urls` (first that can take
/// each call), checking every answer.
async fn client_loop(urls: Vec<String>, seed: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let rpc = RpcClient::with_failover(urls, Duration::from_secs(20));
    let mut id = seed * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let (method, params, expected) = if id.is_multiple_of(2) {
            let n = 1 + id % 10;
            (
                "sum_squares",
                json!([n]),
                json!(n * (n + 1) * (2 * n + 1) / 6),
            )
        } else {
            ("hold", json!([40, id]), json!(id))
        };
        match rpc.call(method, Some(&params.to_string())).await {
            Ok(result) if result == expected => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(result) => tally
                .failures
                .lock()
                .unwrap()
                .push(format!("{method} {params}: {result}, expected {expected}")),
            Err(error) => tally
                .failures
                .lock()
                .unwrap()
                .push(format!("{method} {params}: {error}")),
        }
    }
}

/// Starts `count` client loops; odd ones list the gateways in reverse, so
/// the calls spread over all of them.
fn start_load(
    gateways: &[String],
    count: u64,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|seed| {
            let mut urls: Vec<String> = gateways.iter().map(|g| format!("{g}/")).collect();
            if seed % 2 == 1 {
                urls.reverse();
            }
            tokio::spawn(client_loop(urls, seed + 1, stop.clone(), tally.clone()))
        })
        .collect()
}

/// Stops the load and asserts it lost nothing.
async fn finish_load(stop: &AtomicBool, clients: Vec<tokio::task::JoinHandle<()>>, tally: &Tally) {
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let failures = tally.failures.lock().unwrap();
    let ok = tally.ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} calls failed or were answered wrongly: {:?}",
        failures.len(),
        failures.len() + ok,
        &failures[..failures.len().min(5)]
    );
    eprintln!("{ok} calls, all correct");
}

/// Waits until the load has made `more` successful calls.
async fn progress(tally: &Tally, more: usize) -> bool {
    let before = tally.ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(20), || async {
        tally.ok.load(Ordering::Relaxed) >= before + more
    })
    .await
}

/// The gateway's nodes, as (url, origin, available).
async fn nodes(gateway: &str) -> Vec<(String, String, bool)> {
    let listed = get_json(&client(), &format!("{gateway}/v1/nodes")).await;
    listed["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    (
                        n["url"].as_str().unwrap_or_default().to_owned(),
                        n["origin"].as_str().unwrap_or_default().to_owned(),
                        n["available"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the gateway's available discovered nodes are exactly
/// `wanted`.
async fn available_are(gateway: &str, wanted: &[&str]) -> bool {
    eventually(Duration::from_secs(20), || async {
        let mut up: Vec<String> = nodes(gateway)
            .await
            .into_iter()
            .filter(|(_, origin, available)| origin == "discovered" && *available)
            .map(|(url, _, _)| url)
            .collect();
        up.sort();
        up == wanted
    })
    .await
}

/// Calls a node has served, from its `/health`.
async fn served(node: &str) -> u64 {
    get_json(&client(), &format!("{node}/health")).await["served"]
        .as_u64()
        .unwrap_or(0)
}

fn needs_netns() {
    let output = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output();
    match output {
        Ok(output) if output.status.success() => {}
        other => panic!(
            "this test needs `ip netns` (iproute2) and root to build its network; got {other:?}. Install iproute2 (scripts/setup does) and run the tests as root"
        ),
    }
}

fn start_node(ns: &str, module: &str, addr: &str) -> NsProcess {
    let listen = format!("{addr}:9000");
    NsProcess::start(
        ns,
        &[
            "node",
            "--module",
            module,
            "--listen",
            &listen,
            "--workers",
            "2",
        ],
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc node listening on ",
    )
}

fn start_gateway(ns: &str) -> NsProcess {
    let discover = format!("dns:{NAME}:9000");
    NsProcess::start(
        ns,
        &[
            "gateway",
            "--listen",
            "0.0.0.0:8080",
            "--health-interval",
            "200ms",
            "--discover",
            &discover,
            "--discover-interval",
            "200ms",
        ],
        &[("MADRPC_JOIN_TOKEN", TEST_TOKEN)],
        "madrpc gateway listening on ",
    )
}

/// Runs `load` on a thread inside namespace `ns` while this thread carries
/// out the steps it asks for with `step`, then re-raises its panic.
fn drive(
    ns: &str,
    load: impl FnOnce(mpsc::Sender<&'static str>) + Send + 'static,
    mut step: impl FnMut(&str),
) {
    let ns = ns.to_owned();
    let (steps_tx, steps_rx) = mpsc::channel::<&'static str>();
    let driver = std::thread::spawn(move || {
        enter(&ns);
        load(steps_tx);
    });
    // The sender lives in the driver: this loop ends when it finishes.
    for asked in steps_rx {
        step(asked);
    }
    if let Err(panic) = driver.join() {
        std::panic::resume_unwind(panic);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn nodes_join_and_leave_as_dns_says_with_no_failed_call() {
    needs_netns();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let module = build_into(dir.path(), "drain.js");
    let module = module.to_str().unwrap().to_owned();
    let mut network = Network::new("d");
    let gateway_ns = network.host("gw", "10.213.9.1");
    let addrs = ["10.213.9.11", "10.213.9.12", "10.213.9.13"];
    let nodes_up: Vec<NsProcess> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| start_node(&network.host(&format!("n{i}"), addr), &module, addr))
        .collect();
    // An address with nothing behind it: discovered, never healthy, never
    // given a call.
    let nobody = "10.213.9.99";
    network.hosts(
        &gateway_ns,
        &[(addrs[0], NAME), (addrs[1], NAME), (nobody, NAME)],
    );
    let _gateway = start_gateway(&gateway_ns);
    let url = |addr: &str| format!("http://{addr}:9000");
    let [n0, n1, n2] = addrs.map(url);

    let (n0c, n1c, n2c) = (n0.clone(), n1.clone(), n2.clone());
    let load = move |steps: mpsc::Sender<&'static str>| {
        runtime().block_on(async move {
            let gateway = "http://127.0.0.1:8080".to_owned();
            assert!(
                available_are(&gateway, &[&n0c, &n1c]).await,
                "the first two nodes never became available: {:?}",
                nodes(&gateway).await
            );
            let listed = nodes(&gateway).await;
            assert!(
                listed.iter().any(|(u, _, up)| *u == url(nobody) && !up),
                "the empty address is listed and not available: {listed:?}"
            );
            let stop = Arc::new(AtomicBool::new(false));
            let tally = Arc::new(Tally::default());
            let clients = start_load(std::slice::from_ref(&gateway), 4, &stop, &tally);
            assert!(progress(&tally, 40).await, "the load never got going");

            // A third address appears: the node joins and takes calls.
            steps.send("add").unwrap();
            let changed = std::time::Instant::now();
            assert!(
                available_are(&gateway, &[&n0c, &n1c, &n2c]).await,
                "the new node never joined: {:?}",
                nodes(&gateway).await
            );
            eprintln!(
                "a new address took calls {:?} after the hosts file named it",
                changed.elapsed()
            );
            let before = served(&n2c).await;
            assert!(progress(&tally, 40).await);
            assert!(served(&n2c).await > before, "the new node got no call");

            // The first address vanishes: the node drains out.
            steps.send("remove").unwrap();
            let changed = std::time::Instant::now();
            assert!(
                eventually(Duration::from_secs(10), || async {
                    !nodes(&gateway).await.iter().any(|(u, _, _)| *u == n0c)
                })
                .await,
                "the vanished node stayed listed"
            );
            eprintln!(
                "a vanished address left {:?} after the hosts file dropped it",
                changed.elapsed()
            );
            // The calls in flight on it finish (none fails: see the end),
            // and no new call reaches it.
            let drained = eventually(Duration::from_secs(10), || async {
                get_json(&client(), &format!("{n0c}/health")).await["in_flight"] == 0
            })
            .await;
            assert!(
                drained,
                "the vanished node's calls in flight never finished"
            );
            let before = served(&n0c).await;
            assert!(
                progress(&tally, 60).await,
                "the load stalled after a node left"
            );
            assert_eq!(
                served(&n0c).await,
                before,
                "the vanished node still got calls"
            );
            finish_load(&stop, clients, &tally).await;
        });
    };
    drive(&gateway_ns, load, |step| match step {
        "add" => network.hosts(
            &gateway_ns,
            &[
                (addrs[0], NAME),
                (addrs[1], NAME),
                (nobody, NAME),
                (addrs[2], NAME),
            ],
        ),
        "remove" => network.hosts(
            &gateway_ns,
            &[(addrs[1], NAME), (addrs[2], NAME), (nobody, NAME)],
        ),
        other => panic!("unknown step {other}"),
    });
    drop(nodes_up);
}

#[test]
fn two_gateways_share_the_nodes_and_one_killed_loses_no_call() {
    needs_netns();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let module = build_into(dir.path(), "drain.js");
    let module = module.to_str().unwrap().to_owned();
    let mut network = Network::new("g");
    let gateway_addrs = ["10.213.10.1", "10.213.10.2"];
    let node_addrs = ["10.213.10.11", "10.213.10.12"];
    let clients_ns = network.host("cl", "10.213.10.3");
    let _nodes: Vec<NsProcess> = node_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| start_node(&network.host(&format!("n{i}"), addr), &module, addr))
        .collect();
    let mut gateways: Vec<NsProcess> = gateway_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let ns = network.host(&format!("g{i}"), addr);
            network.hosts(&ns, &[(node_addrs[0], NAME), (node_addrs[1], NAME)]);
            start_gateway(&ns)
        })
        .collect();
    let gateway_urls: Vec<String> = gateway_addrs
        .iter()
        .map(|a| format!("http://{a}:8080"))
        .collect();
    let node_urls: Vec<String> = node_addrs
        .iter()
        .map(|a| format!("http://{a}:9000"))
        .collect();

    let load = move |steps: mpsc::Sender<&'static str>| {
        runtime().block_on(async move {
            let wanted: Vec<&str> = node_urls.iter().map(String::as_str).collect();
            for gateway in &gateway_urls {
                assert!(
                    available_are(gateway, &wanted).await,
                    "{gateway} never found both nodes: {:?}",
                    nodes(gateway).await
                );
            }
            let stop = Arc::new(AtomicBool::new(false));
            let tally = Arc::new(Tally::default());
            let clients = start_load(&gateway_urls, 6, &stop, &tally);
            assert!(progress(&tally, 60).await, "the load never got going");
            steps.send("kill").unwrap();
            // Calls go on through the other gateway.
            assert!(
                progress(&tally, 100).await,
                "the load stalled after a gateway died"
            );
            finish_load(&stop, clients, &tally).await;
        });
    };
    drive(&clients_ns, load, |step| match step {
        "kill" => {
            gateways[0].child.kill().expect("SIGKILL the first gateway");
            gateways[0].child.wait().expect("it exits");
        }
        other => panic!("unknown step {other}"),
    });
    drop(gateways);
}
