//! The README's promises that no other test file covers, each through the
//! interface a user has: the JavaScript API in a real sandbox, the `madrpc`
//! command, and HTTP to real processes on 127.0.0.1. The commands that run
//! a grid have theirs in `tests/commands.rs`.

mod support;

use madrpc::runtime::{CallError, ConsoleStream};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::grid::{Grid, Process, client, get_json, rpc, spawn_rpc};
use support::logged::Logged;
use support::{load_script, run_cli, runtime, texts};

fn request(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string()
}

async fn call(url: &str, method: &str, params: Value) -> Value {
    rpc(&client(), &format!("{url}/"), &request(method, params))
        .await
        .json()
}

fn ok(module: &madrpc::runtime::LoadedModule, method: &str) -> Value {
    let report = runtime().call(module, method, b"");
    let result = report.result.unwrap_or_else(|e| panic!("{method}: {e}"));
    serde_json::from_slice(&result).expect("JSON")
}

#[test]
fn functions_nested_in_results_are_left_out() {
    let module = load_script("claims.js");
    assert_eq!(
        ok(&module, "nested_functions"),
        json!({"a": 1, "list": [1, null], "inner": {"b": "kept"}})
    );
}

#[test]
fn there_are_no_timers_and_waiting_on_one_is_an_error() {
    let module = load_script("claims.js");
    assert_eq!(
        ok(&module, "timers"),
        json!({"setTimeout": "undefined", "setInterval": "undefined", "setImmediate": "undefined"})
    );
    let report = runtime().call(&module, "wait_for_timer", b"");
    assert!(
        matches!(report.result, Err(CallError::NeverSettled)),
        "{:?}",
        report.result
    );
}

#[test]
fn every_console_method_is_captured() {
    let module = load_script("claims.js");
    let report = runtime().call(&module, "console_levels", b"");
    assert_eq!(
        report.result.expect("console_levels succeeds"),
        br#""logged""#
    );
    let lines: Vec<_> = report
        .console
        .lines
        .iter()
        .map(|l| (l.stream, l.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (ConsoleStream::Log, r#"via log {"n":1}"#),
            (ConsoleStream::Log, "via info"),
            (ConsoleStream::Log, "via debug"),
            (ConsoleStream::Error, "via warn"),
            (ConsoleStream::Error, "via error"),
        ]
    );
}

#[test]
fn builds_are_bounded_by_fuel_and_memory_flags() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, source: &str| std::fs::write(dir.path().join(name), source).unwrap();
    write("loop.js", "for (;;) {}\nmadrpc.register('a', () => 1);\n");
    write(
        "hoard.js",
        "const h = [];\nfor (;;) h.push(new Array(1 << 16).fill(1.5));\nmadrpc.register('a', () => 1);\n",
    );
    write(
        "table.js",
        "const t = Array.from({ length: 1000 }, (_, i) => i * i);\nmadrpc.register('a', (i) => t[i]);\n",
    );

    let output = run_cli(dir.path(), &["build", "loop.js", "--fuel", "100000000"]);
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("loop.js: its top level used up the build's fuel (100000000 units)"),
        "{stderr}"
    );
    assert!(stderr.contains("madrpc build --fuel"), "{stderr}");
    assert!(!dir.path().join("loop.wasm").exists());

    let output = run_cli(dir.path(), &["build", "hoard.js", "--memory", "32MiB"]);
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("memory limit of 33554432 bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("madrpc build --memory"), "{stderr}");

    let output = run_cli(
        dir.path(),
        &[
            "build",
            "table.js",
            "--fuel",
            "1000000000",
            "--memory",
            "64MiB",
        ],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("methods: a"), "{stdout}");
    let output = run_cli(dir.path(), &["run", "table.wasm", "a", "[30]"]);
    assert_eq!(texts(&output).0.trim(), "900");
}

#[test]
fn the_console_limit_flag_drops_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = support::script("sandbox.js");
    let output = run_cli(
        dir.path(),
        &[
            "run",
            sandbox.to_str().unwrap(),
            "chatty",
            "[500]",
            "--max-console",
            "100",
        ],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "500");
    let kept = stderr.lines().filter(|l| l.contains("line ")).count();
    assert!((1..=10).contains(&kept), "kept {kept} lines:\n{stderr}");
    let dropped = stderr
        .split("dropped_bytes=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count of dropped bytes:\n{stderr}"));
    assert!(dropped > 5_000, "{dropped}");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_run_64_entries_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::build_into(dir.path(), "claims.js");
    let node = Process::node(
        &module,
        &[
            "--workers",
            "2",
            "--queue",
            "512",
            "--insecure-public-calls",
        ],
    );
    let http = client();
    let batch: Vec<Value> = (0..150)
        .map(|id| json!({"jsonrpc": "2.0", "method": "busy", "params": [20], "id": id}))
        .collect();
    let reply = spawn_rpc(
        &http,
        &format!("{}/", node.url),
        &Value::Array(batch).to_string(),
    );
    // The node admits every call it is given; the endpoint gives it 64.
    let mut most = 0;
    let started = Instant::now();
    while !reply.is_finished() && started.elapsed() < Duration::from_secs(30) {
        let in_flight = get_json(&http, &format!("{}/health", node.url)).await["in_flight"]
            .as_u64()
            .unwrap();
        most = most.max(in_flight);
    }
    let replies = reply.await.unwrap().json();
    assert_eq!(replies.as_array().unwrap().len(), 150);
    assert!(
        replies
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["result"] == 20)
    );
    assert_eq!(most, 64, "calls in flight at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_calls_never_awaited_are_dropped() {
    let grid = Grid::start("claims.js", 1, &[]).await;
    assert_eq!(
        call(&grid.gateway.url, "fire_and_forget", json!([])).await["result"],
        "returned"
    );
    assert_eq!(
        call(&grid.gateway.url, "add", json!([1, 1])).await["result"],
        2
    );
    // Two calls ran, not three: the queued sub-call was never sent.
    let health = get_json(&client(), &format!("{}/health", grid.nodes[0].url)).await;
    assert_eq!(health["served"], 2, "{health}");
}

/// The 4 KiB pages of linear memory a call of each of `methods` writes,
/// each in a fresh instance of `wasm`, found by comparing the memory before
/// and after the call. The instances are made with plain Wasmtime and the
/// guest ABI, so that the count does not depend on how madrpc's runtime
/// resets memory.
fn pages_written(wasm: &[u8], methods: &[&str]) -> Vec<Vec<usize>> {
    use wasmtime::{Engine, Linker, Module, Store};
    use wasmtime_wasi::{WasiCtxBuilder, p1::WasiP1Ctx};
    let engine = Engine::default();
    let module = Module::new(&engine, wasm).expect("the module compiles");
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).expect("WASI links");
    linker
        .define_unknown_imports_as_traps(&module)
        .expect("the madrpc imports link");
    let written = |method: &str| {
        let mut store = Store::new(&engine, WasiCtxBuilder::new().build_p1());
        let instance = linker
            .instantiate(&mut store, &module)
            .expect("the module instantiates");
        let memory = instance.get_memory(&mut store, "memory").expect("a memory");
        let alloc = instance
            .get_typed_func::<u32, u32>(&mut store, "madrpc_alloc")
            .expect("madrpc_alloc");
        let call = instance
            .get_typed_func::<(u32, u32, u32), u32>(&mut store, "madrpc_call")
            .expect("madrpc_call");
        let before = memory.data(&store).to_vec();
        let input = alloc.call(&mut store, method.len() as u32).expect("alloc");
        memory
            .write(&mut store, input as usize, method.as_bytes())
            .expect("the name fits");
        let ret = call
            .call(&mut store, (input, method.len() as u32, 0))
            .expect("the call runs");
        let mut status = [0u8; 4];
        memory
            .read(&store, ret as usize, &mut status)
            .expect("the status word");
        assert_eq!(u32::from_le_bytes(status), 0, "{method} succeeds");
        before
            .chunks(4096)
            .zip(memory.data(&store).chunks(4096))
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(page, _)| page)
            .collect()
    };
    methods.iter().map(|method| written(method)).collect()
}

/// Makes 2,000 small objects: a call whose allocations span about 70 pages.
const OBJECTS: &str = "madrpc.register('objects', () => { const a = []; for (let i = 0; i < 2000; i++) a.push({ i, s: 'k' + i }); return a.length; });\n";

/// The pages a call of `method` writes, split at the first page it writes in
/// the heap (the page `noop` writes there): those below (the stack and the
/// plugin's static data), and those from there up.
fn written_below_and_from_heap(wasm: &[u8], method: &str) -> (Vec<usize>, Vec<usize>) {
    let [noop, call] =
        <[Vec<usize>; 2]>::try_from(pages_written(wasm, &["noop", method])).expect("two calls");
    let heap_page = *noop.last().expect("noop writes a page");
    call.into_iter().partition(|page| *page < heap_page)
}

#[test]
fn a_call_on_a_large_script_writes_its_pages_together_at_the_end_of_the_heap() {
    let small = format!("madrpc.register('noop', () => undefined);\n{OBJECTS}");
    let large: String = (0..20_000)
        .map(|i| format!("function f{i}(x) {{ return x + {i}; }}\n"))
        .chain([
            "madrpc.register('noop', () => f19999(1) && undefined);\n".to_owned(),
            OBJECTS.to_owned(),
        ])
        .collect();
    let small = madrpc::build::build_source("small.js", &small).expect("builds");
    let large = madrpc::build::build_source("large.js", &large).expect("builds");
    assert!(
        large.wasm.len() > small.wasm.len() + (1 << 20),
        "the large script's snapshot holds more than a MiB more"
    );
    let (small_below, small_heap) = written_below_and_from_heap(&small.wasm, "objects");
    let (large_below, large_heap) = written_below_and_from_heap(&large.wasm, "objects");
    // Together: one run of pages from where the call started in the heap.
    let span = large_heap.last().unwrap() - large_heap.first().unwrap() + 1;
    assert_eq!(
        span,
        large_heap.len(),
        "the call's heap pages are scattered: {large_heap:?}"
    );
    // And no more of them, nor more pages below, than on a small script.
    assert!(
        large_heap.len() <= small_heap.len() + 2,
        "{} heap pages on the large script, {} on the small one",
        large_heap.len(),
        small_heap.len()
    );
    assert!(
        large_below.len() <= small_below.len() + 2,
        "below the heap run: {large_below:?} on the large script, {small_below:?} on the small one"
    );
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_does_not_grow_as_calls_move_to_clean_slots() {
    let script = support::script("heavy.js");
    let serve = Logged::start(
        &support::grid::serve_args(&script, &["--nodes", "1", "--workers", "1"]),
        &[("RUST_LOG", "info,madrpc::runtime=debug")],
        "madrpc is serving at ",
    );
    let moves = || {
        serve
            .matching(|l| l.contains("moved calls to clean memory slots"))
            .len()
    };
    let mut samples = Vec::new();
    for cycle in 0..24 {
        let before = moves();
        assert_eq!(
            call(&serve.url, "allocate", json!([8])).await["result"],
            8000
        );
        let started = Instant::now();
        while moves() == before {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "cycle {cycle}: calls never moved"
            );
            assert_eq!(call(&serve.url, "count", json!([])).await["result"], 1);
        }
        samples.push(rss(serve.child.id()));
    }
    // Each move leaves the heavy call's pages (about 7 MiB) in a slot that
    // stays warm; once eight unused slots are warm, a move takes one of them
    // over and lets its memory go. Growing with every move would add about
    // 84 MiB over the last twelve.
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let (settled, last) = (samples[11], samples[23]);
    assert!(
        last <= settled + (24 << 20),
        "RSS kept growing, from {:.1} MiB after 12 moves to {:.1} MiB after 24: {:?}",
        mib(settled),
        mib(last),
        samples
            .iter()
            .map(|b| format!("{:.1}", mib(*b)))
            .collect::<Vec<_>>()
    );
}
