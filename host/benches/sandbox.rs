//! Figures of the sandbox call path: sizes, build and load times, the cost
//! of a fresh instance, trivial-call throughput on one core, script-size
//! independence and a CPU-bound Monte Carlo run against the same function
//! under `node --jitless`.
//!
//! `cargo bench -p madrpc --bench sandbox` (or `scripts/bench`) prints a
//! table for people to read; it asserts only that the replies are right.

use madrpc::build::build_source;
use madrpc::plugin::PLUGIN_WASM;
use madrpc::runtime::{LoadedModule, ModuleCache, Runtime, RuntimeConfig};
use std::time::{Duration, Instant};

const TRIVIAL: &str =
    "madrpc.register('noop', () => null);\nmadrpc.register('add', (a, b) => a + b);\n";

const HEAVY: &str = "madrpc.register('noop', () => null);\n\
    madrpc.register('allocate', (mb) => { const parts = []; \
    for (let i = 0; i < mb * 1000; i++) parts.push('x'.repeat(1000) + i); return parts.length; });\n";

fn main() {
    // Builds cache the compiled plugin like modules; an empty cache of the
    // bench's own shows the first build on a machine as well as later ones.
    let build_cache = tempfile::tempdir().expect("temp dir");
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("MADRPC_CACHE_DIR", build_cache.path()) };
    // Runs on a thread sized for calls, like a node's workers.
    std::thread::Builder::new()
        .stack_size(madrpc::runtime::CALL_THREAD_STACK_BYTES)
        .spawn(run)
        .expect("bench thread")
        .join()
        .expect("bench succeeded");
}

fn run() {
    let cache_dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(RuntimeConfig {
        cache: Some(ModuleCache::new(cache_dir.path())),
        ..RuntimeConfig::default()
    })
    .expect("runtime");

    println!("madrpc sandbox benchmark");
    println!("{:<52} {}", "plugin size", mib(PLUGIN_WASM.len()));

    let (_, first_build) = timed(|| build_source("small.js", TRIVIAL).expect("build"));
    let (small, small_build) = timed(|| build_source("small.js", TRIVIAL).expect("build"));
    println!(
        "{:<52} {}",
        "module size (trivial script)",
        mib(small.wasm.len())
    );
    println!(
        "{:<52} {}",
        "build time, first on the machine (compiles plugin)",
        ms(first_build)
    );
    println!("{:<52} {}", "build time (trivial script)", ms(small_build));

    let large_source = format!("{TRIVIAL}{}", filler_code(1 << 20));
    let (large, large_build) = timed(|| build_source("large.js", &large_source).expect("build"));
    println!(
        "{:<52} {}",
        "module size (script + 1 MB of code)",
        mib(large.wasm.len())
    );
    println!(
        "{:<52} {}",
        "build time (script + 1 MB of code)",
        ms(large_build)
    );

    let (_, cold) = timed(|| runtime.load(&small.wasm).expect("load"));
    println!(
        "{:<52} {}",
        "load from .wasm (Cranelift compile, then cached)",
        ms(cold)
    );
    let (small_module, warm) = timed(|| runtime.load(&small.wasm).expect("load"));
    println!("{:<52} {}", "load from cached .cwasm", ms(warm));
    let large_module = runtime.load(&large.wasm).expect("load");

    for (name, module) in [
        ("trivial script", &small_module),
        ("script + 1 MB of code", &large_module),
    ] {
        let instantiation = median_of(5_000, || {
            runtime.measure_instantiation(module).expect("instantiate")
        });
        println!(
            "{:<52} {}",
            format!("instantiation + drop, median ({name})"),
            us(instantiation)
        );
    }
    for (name, module) in [
        ("trivial script", &small_module),
        ("script + 1 MB of code", &large_module),
    ] {
        let (median, p99) = call_latency(&runtime, module, "noop", "", 20_000);
        println!(
            "{:<52} {} / {}",
            format!("noop call, median / p99 ({name})"),
            us(median),
            us(p99)
        );
        let (median, p99) = call_latency(&runtime, module, "add", "[1, 2]", 20_000);
        println!(
            "{:<52} {} / {}",
            format!("add call, median / p99 ({name})"),
            us(median),
            us(p99)
        );
    }

    println!(
        "{:<52} {}",
        "slot refreshes during the calls above",
        small_module.slot_refreshes() + large_module.slot_refreshes()
    );

    // A call that allocates a few megabytes leaves its memory slot with
    // many written pages; the runtime moves later calls to clean slots
    // (at most four times a second). Every call is timed from the heavy
    // call on: the slow ones before the move, then the cheap ones after.
    let heavy_wasm = build_source("heavy.js", HEAVY).expect("build").wasm;
    let heavy = runtime.load(&heavy_wasm).expect("load");
    let (before, _) = call_latency(&runtime, &heavy, "noop", "", 5_000);
    let refreshes = heavy.slot_refreshes();
    allocate(&runtime, &heavy);
    let mut until_move = Vec::new();
    let started = Instant::now();
    while heavy.slot_refreshes() == refreshes && started.elapsed() < Duration::from_secs(5) {
        until_move.push(timed(|| noop(&runtime, &heavy)).1);
    }
    let moved_after = started.elapsed();
    until_move.sort();
    let (after, _) = call_latency(&runtime, &heavy, "noop", "", 5_000);
    println!(
        "{:<52} {}",
        "noop before a call allocating 4 MB, median",
        us(before)
    );
    if heavy.slot_refreshes() == refreshes {
        println!(
            "{:<52} none within 5 s",
            "move to clean slots after that call"
        );
    } else {
        println!(
            "{:<52} {} calls in {}, median {}",
            "noop after it, until calls move to clean slots",
            until_move.len(),
            ms(moved_after),
            us(until_move[until_move.len() / 2])
        );
    }
    println!(
        "{:<52} {}",
        "noop after the move to clean slots, median",
        us(after)
    );
    // Without the move: every later call stays in the heavy call's slot.
    let unmoved = Runtime::new(RuntimeConfig {
        cache: Some(ModuleCache::new(cache_dir.path())),
        move_slow_slots: false,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let stuck = unmoved.load(&heavy_wasm).expect("load");
    allocate(&unmoved, &stuck);
    let (stuck_median, _) = call_latency(&unmoved, &stuck, "noop", "", 5_000);
    println!(
        "{:<52} {} ({} moves)",
        "noop after it, never moving to clean slots, median",
        us(stuck_median),
        stuck.slot_refreshes()
    );

    let per_second = throughput(&runtime, &small_module, Duration::from_secs(3));
    println!(
        "{:<52} {per_second:.0}",
        "trivial calls per second, one core"
    );

    monte_carlo_against_node(&runtime);
}

/// The Monte Carlo function of `examples/monte_carlo.js`, a million samples:
/// madrpc's call against the same function under `node --jitless` in the
/// same run (a Node process timing it in-process, and the whole process as
/// `node --jitless` on the command line takes), wall-clock and CPU time.
fn monte_carlo_against_node(runtime: &Runtime) {
    const PARAMS: &str = r#"{"samples": 1000000}"#;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/monte_carlo.js");
    let built = build_source(
        "monte_carlo.js",
        include_str!("../../examples/monte_carlo.js"),
    )
    .expect("build");
    let module = runtime.load(&built.wasm).expect("load");
    let mut result = String::new();
    let (mut wall, mut cpu): (Vec<Duration>, Vec<Duration>) = (0..5)
        .map(|_| {
            let report = runtime.call(&module, "estimate_single", PARAMS.as_bytes());
            result =
                String::from_utf8(report.result.expect("monte carlo succeeds")).expect("UTF-8");
            (
                report.elapsed,
                madrpc::runtime::fuel_to_duration(report.fuel_used),
            )
        })
        .unzip();
    wall.sort();
    cpu.sort();
    let (wall, cpu) = (wall[2], cpu[2]);
    println!(
        "{:<52} {} wall, {} CPU",
        "Monte Carlo pi, 1,000,000 samples, madrpc call",
        ms(wall),
        ms(cpu)
    );
    let timer = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/bench/node_time.js");
    let node = |runs: &str| {
        std::process::Command::new("node")
            .args(["--jitless", timer, script, "estimate_single", PARAMS, runs])
            .output()
    };
    let in_process = match node("5") {
        Ok(output) if output.status.success() => output.stdout,
        Ok(output) => {
            println!(
                "node --jitless failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        Err(error) => {
            println!("node --jitless not run ({error}): install Node.js to compare");
            return;
        }
    };
    let timed: serde_json::Value = serde_json::from_slice(&in_process).expect("node prints JSON");
    let expected: serde_json::Value = serde_json::from_str(&result).expect("JSON result");
    assert_eq!(
        timed["result"], expected,
        "node and madrpc compute the same"
    );
    let node_wall = Duration::from_secs_f64(timed["median_ms"].as_f64().expect("ms") / 1e3);
    let node_cpu = Duration::from_secs_f64(timed["median_cpu_ms"].as_f64().expect("ms") / 1e3);
    let mut process: Vec<Duration> = (0..5).map(|_| timed_process(|| node("1"))).collect();
    process.sort();
    println!(
        "{:<52} {} wall, {} CPU",
        "same function, node --jitless, in-process",
        ms(node_wall),
        ms(node_cpu)
    );
    println!(
        "{:<52} {}",
        "same, the whole `node --jitless` process",
        ms(process[2])
    );
    println!(
        "{:<52} {:.2}x wall, {:.2}x CPU; {:.2}x the whole node process",
        "madrpc against node --jitless",
        wall.as_secs_f64() / node_wall.as_secs_f64(),
        cpu.as_secs_f64() / node_cpu.as_secs_f64(),
        wall.as_secs_f64() / process[2].as_secs_f64()
    );
}

/// Wall-clock time of a process run to its end.
fn timed_process(run: impl FnOnce() -> std::io::Result<std::process::Output>) -> Duration {
    let started = Instant::now();
    let output = run().expect("node runs");
    assert!(output.status.success(), "node succeeds");
    started.elapsed()
}

fn call_latency(
    runtime: &Runtime,
    module: &LoadedModule,
    method: &str,
    params: &str,
    n: usize,
) -> (Duration, Duration) {
    let expected: &[u8] = match method {
        "noop" => b"null",
        "add" => b"3",
        other => panic!("no expected reply for {other}"),
    };
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            let result = runtime
                .call(module, method, params.as_bytes())
                .result
                .expect("call succeeds");
            let elapsed = started.elapsed();
            assert_eq!(result, expected, "{method}'s reply");
            elapsed
        })
        .collect();
    samples.sort();
    (samples[n / 2], samples[n * 99 / 100])
}

fn allocate(runtime: &Runtime, module: &LoadedModule) {
    let result = runtime
        .call(module, "allocate", b"[4]")
        .result
        .expect("allocation succeeds");
    assert_eq!(result, b"4000", "the allocating call's reply");
}

fn noop(runtime: &Runtime, module: &LoadedModule) {
    let result = runtime
        .call(module, "noop", b"")
        .result
        .expect("call succeeds");
    assert_eq!(result, b"null", "the noop call's reply");
}

fn throughput(runtime: &Runtime, module: &LoadedModule, window: Duration) -> f64 {
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < window {
        noop(runtime, module);
        calls += 1;
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn median_of(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut samples: Vec<Duration> = (0..n).map(|_| f()).collect();
    samples.sort();
    samples[n / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// About `bytes` of ordinary JS functions that the script defines but the
/// benchmarked calls never touch.
fn filler_code(bytes: usize) -> String {
    let mut code = String::with_capacity(bytes + 256);
    let mut i = 0;
    while code.len() < bytes {
        code.push_str(&format!(
            "function filler{i}(a, b) {{ const t = [a, b, {i}].map((v) => v * 2 + {i}); return t.reduce((x, y) => x + y, 0) + 'filler{i}'.length; }}\n"
        ));
        i += 1;
    }
    code.push_str(&format!(
        "madrpc.register('filler', (n) => filler{}(n, n));\n",
        i - 1
    ));
    code
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
