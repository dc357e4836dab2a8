//! The sandboxed runtime through its library API, with a real Wasmtime and
//! modules built by the real build pipeline.

mod support;

use madrpc::runtime::{CallError, CallReport, ConsoleStream, Limits, LoadedModule};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{load_script, load_source, runtime};

fn sandbox() -> &'static LoadedModule {
    static MODULE: OnceLock<LoadedModule> = OnceLock::new();
    MODULE.get_or_init(|| load_script("sandbox.js"))
}

fn call(method: &str, params: &str) -> CallReport {
    runtime().call(sandbox(), method, params.as_bytes())
}

fn call_limited(method: &str, params: &str, limits: &Limits) -> CallReport {
    runtime().call_with_limits(sandbox(), method, params.as_bytes(), limits)
}

fn ok(method: &str, params: &str) -> Value {
    let report = call(method, params);
    let bytes = report
        .result
        .unwrap_or_else(|e| panic!("{method}({params}) failed: {e}"));
    serde_json::from_slice(&bytes).expect("results are JSON")
}

fn err(method: &str, params: &str) -> CallError {
    match call(method, params).result {
        Ok(bytes) => panic!(
            "{method}({params}) returned {} instead of failing",
            String::from_utf8_lossy(&bytes)
        ),
        Err(error) => error,
    }
}

/// After any failure the runtime still serves calls normally.
fn assert_still_serving() {
    assert_eq!(ok("add", "[40, 2]"), json!(42));
}

fn small_limits() -> Limits {
    Limits {
        fuel: 200_000_000,
        memory_bytes: 48 << 20,
        deadline: Duration::from_secs(30),
        ..Limits::default()
    }
}

#[test]
fn params_map_onto_arguments() {
    assert_eq!(ok("add", "[1, 2]"), json!(3));
    assert_eq!(
        ok("echo", r#"{"a": [1, {"b": null}]}"#),
        json!({"a": [1, {"b": null}]})
    );
    assert_eq!(ok("argument_count", ""), json!(0));
    assert_eq!(ok("argument_count", "[1, 2, 3]"), json!(3));
    assert_eq!(ok("argument_count", r#"{"x": 1}"#), json!(1));
    assert_eq!(ok("greet", ""), json!("hello world!"));
    assert_eq!(ok("greet", r#"{"name": "grid"}"#), json!("hello grid!"));
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let first = ok("increment", "");
    let second = ok("increment", "");
    assert_eq!(first, json!({"counter": 1, "leaked": 1}));
    assert_eq!(second, first, "state leaked from one call into the next");
}

#[test]
fn a_thrown_error_keeps_name_message_and_stack() {
    let CallError::Threw(exception) = err("throws", "") else {
        panic!("expected a guest error");
    };
    assert_eq!(exception.name, "RangeError");
    assert_eq!(exception.message, "value out of range");
    let stack = exception.stack.expect("a stack");
    assert!(
        stack.contains("sandbox.js:17:"),
        "stack without script location: {stack}"
    );

    let CallError::Threw(exception) = err("throws_string", "") else {
        panic!("expected a guest error");
    };
    assert_eq!(exception.message, "plain string");

    let CallError::Threw(exception) = err("rejects", "") else {
        panic!("expected a guest error");
    };
    assert_eq!(exception.message, "async failure");
    assert_still_serving();
}

#[test]
fn every_form_of_infinite_loop_runs_out_of_fuel() {
    let limits = small_limits();
    for method in [
        "spin_for",
        "spin_while",
        "spin_do",
        "spin_try",
        "spin_async",
    ] {
        let report = call_limited(method, "", &limits);
        assert!(
            matches!(report.result, Err(CallError::FuelExhausted { limit }) if limit == limits.fuel),
            "{method}: {:?}",
            report.result
        );
        assert!(
            report.fuel_used >= limits.fuel,
            "{method} used {} fuel",
            report.fuel_used
        );
        assert_still_serving();
    }
}

#[test]
fn memory_bombs_hit_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    for method in ["array_bomb", "string_bomb", "caught_bomb"] {
        let report = call_limited(method, "", &limits);
        assert!(
            matches!(report.result, Err(CallError::MemoryExceeded { limit }) if limit == limits.memory_bytes),
            "{method}: {:?}",
            report.result
        );
        assert_still_serving();
    }
}

#[test]
fn the_deadline_interrupts_a_call_with_fuel_to_spare() {
    let limits = Limits {
        fuel: u64::MAX / 2,
        deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    sandbox();
    let started = Instant::now();
    let report = call_limited("spin_for", "", &limits);
    let elapsed = started.elapsed();
    assert!(
        matches!(report.result, Err(CallError::DeadlineExceeded { limit }) if limit == limits.deadline),
        "{:?}",
        report.result
    );
    assert!(
        elapsed >= Duration::from_millis(200),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped late: {elapsed:?}"
    );
    assert_still_serving();
}

#[test]
fn deep_recursion_is_a_clean_stack_overflow() {
    assert_eq!(ok("recurse", "[2000]"), json!(2000));
    assert!(matches!(
        err("recurse_forever", ""),
        CallError::StackOverflow
    ));
    assert_still_serving();
}

#[test]
fn stack_overflow_is_clean_on_a_small_thread_too() {
    let outcome = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| matches!(err("recurse_forever", ""), CallError::StackOverflow))
        .unwrap()
        .join()
        .unwrap();
    assert!(outcome);
}

#[test]
fn bad_params_and_unknown_methods_are_reported() {
    assert!(
        matches!(err("echo", "{not json"), CallError::InvalidParams(m) if m.contains("not valid JSON"))
    );
    let CallError::MethodNotFound { method, available } = err("no_such_method", "") else {
        panic!("expected method not found");
    };
    assert_eq!(method, "no_such_method");
    assert!(available.contains(&"add".to_owned()) && available.contains(&"echo".to_owned()));
    assert_still_serving();
}

#[test]
fn every_registered_name_finds_its_own_function() {
    // Names out of order, prefixes of one another, non-ASCII, and more than
    // a handful, so the lookup cannot get away with the first match.
    let names: Vec<String> = ["zeta", "alpha", "al", "alphabet", "π", "a.b", "A"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..300).rev().map(|i| format!("m{i}")))
        .collect();
    let source: String = names
        .iter()
        .map(|name| format!("madrpc.register({name:?}, () => {name:?});\n"))
        .collect();
    let module = load_source("names.js", &source);
    for name in &names {
        let result = runtime()
            .call(&module, name, b"")
            .result
            .expect("call succeeds");
        assert_eq!(
            serde_json::from_slice::<Value>(&result).unwrap(),
            json!(name)
        );
    }
    let Err(CallError::MethodNotFound { available, .. }) =
        runtime().call(&module, "alph", b"").result
    else {
        panic!("'alph' is not registered");
    };
    assert_eq!(available, names, "listed in registration order");
}

/// The time the memory reset took after a `count` call, checked.
fn count_reset(runtime: &madrpc::runtime::Runtime, module: &LoadedModule) -> Duration {
    let report = runtime.call(module, "count", b"");
    assert_eq!(
        report.result.expect("count succeeds"),
        b"1",
        "a fresh instance per call"
    );
    report.reset
}

#[test]
fn calls_move_to_clean_slots_after_an_allocation_heavy_call() {
    let built = madrpc::build::build_file(&support::script("heavy.js")).expect("builds");
    let module = runtime().load(&built.wasm).expect("loads");
    let before = module.slot_refreshes();
    let report = runtime().call(&module, "allocate", b"[8]");
    assert_eq!(report.result.expect("allocation succeeds"), b"8000");
    // The heavy call's own reset is slow; so is every call in its slot
    // until the module moves (at most one move per quarter second).
    let started = Instant::now();
    while module.slot_refreshes() == before {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "calls never moved to clean slots"
        );
        count_reset(runtime(), &module);
    }

    // The same module and heavy call in a runtime that never moves calls:
    // they stay in the heavy call's slot and pay for its pages.
    let stuck_runtime = madrpc::runtime::Runtime::new(madrpc::runtime::RuntimeConfig {
        move_slow_slots: false,
        ..madrpc::runtime::RuntimeConfig::default()
    })
    .expect("a runtime that never moves calls");
    let stuck = stuck_runtime.load(&built.wasm).expect("loads");
    let report = stuck_runtime.call(&stuck, "allocate", b"[8]");
    assert_eq!(report.result.expect("allocation succeeds"), b"8000");

    // Interleaved, so that load on the machine weighs on both alike.
    let (mut moved, mut unmoved): (Vec<Duration>, Vec<Duration>) = (0..1001)
        .map(|_| {
            (
                count_reset(runtime(), &module),
                count_reset(&stuck_runtime, &stuck),
            )
        })
        .unzip();
    moved.sort();
    unmoved.sort();
    let (moved, unmoved) = (moved[500], unmoved[500]);
    assert_eq!(stuck.slot_refreshes(), 0);
    assert!(
        unmoved > moved * 2,
        "median reset after the move {moved:?}, never moving {unmoved:?}"
    );
}

#[test]
fn simple_results_keep_their_json_form() {
    let source = "madrpc.register('values', (kind) => ({ t: true, f: false, n: null, i: -7, \
                  big: 2 ** 40, neg0: -0, half: 0.5 })[kind]);";
    let module = load_source("values.js", source);
    for (kind, expected) in [
        ("t", "true"),
        ("f", "false"),
        ("n", "null"),
        ("i", "-7"),
        ("big", "1099511627776"),
        ("neg0", "0"),
        ("half", "0.5"),
        ("missing", "null"),
    ] {
        let params = format!("[{kind:?}]");
        let result = runtime()
            .call(&module, "values", params.as_bytes())
            .result
            .expect("call succeeds");
        assert_eq!(String::from_utf8_lossy(&result), expected, "{kind}");
    }
}

#[test]
fn results_json_cannot_carry_are_errors_and_undefined_is_null() {
    for method in ["returns_function", "returns_bigint", "returns_cycle"] {
        assert!(
            matches!(err(method, ""), CallError::NotSerializable(_)),
            "{method} should not serialize"
        );
    }
    assert_eq!(ok("returns_undefined", ""), Value::Null);
    assert!(matches!(err("never_settles", ""), CallError::NeverSettled));
    assert_still_serving();
}

#[test]
fn params_and_results_are_size_limited() {
    let limits = Limits {
        max_params_bytes: 64,
        max_result_bytes: 1000,
        ..Limits::default()
    };
    let big = format!("[\"{}\"]", "z".repeat(100));
    assert!(matches!(
        call_limited("echo", &big, &limits).result,
        Err(CallError::ParamsTooLarge { size, limit: 64 }) if size == big.len()
    ));
    let fits = call_limited("big_result", "[900]", &limits)
        .result
        .expect("a result under the limit");
    assert_eq!(fits, format!("\"{}\"", "y".repeat(900)).into_bytes());
    assert!(matches!(
        call_limited("big_result", "[5000]", &limits).result,
        Err(CallError::ResultTooLarge {
            size: 5002,
            limit: 1000
        })
    ));
}

#[test]
fn console_output_is_captured_per_call_and_bounded() {
    let report = call("chatty", "[2]");
    let lines: Vec<_> = report
        .console
        .lines
        .iter()
        .map(|l| (l.stream, l.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (ConsoleStream::Log, r#"line 0 {"i":0}"#),
            (ConsoleStream::Log, r#"line 1 {"i":1}"#),
            (ConsoleStream::Error, "a warning"),
        ]
    );
    let limits = Limits {
        max_console_bytes: 100,
        ..Limits::default()
    };
    let report = call_limited("chatty", "[1000]", &limits);
    assert_eq!(report.result.expect("chatty succeeds"), b"1000");
    let kept: usize = report.console.lines.iter().map(|l| l.text.len() + 1).sum();
    assert!(kept <= 101, "kept {kept} bytes");
    assert!(report.console.dropped_bytes > 10_000);
}

#[test]
fn clocks_and_randomness_are_live_per_call() {
    let first = ok("clock_and_dice", "");
    let second = ok("clock_and_dice", "");
    assert_ne!(
        first["dice"], second["dice"],
        "Math.random replays across calls"
    );
    assert_ne!(first["dice"][0], first["dice"][1]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let guest_now = first["now"].as_f64().unwrap();
    assert!(
        (guest_now - now_ms).abs() < 60_000.0,
        "Date.now() is {guest_now}, host {now_ms}"
    );
    // Top-level values are computed once, at build time, by design.
    assert_eq!(ok("top_level_values", ""), ok("top_level_values", ""));
}

#[test]
fn the_guest_has_no_ambient_capabilities() {
    assert_eq!(
        ok("capabilities", ""),
        json!({"javy_io": false, "require": "undefined", "process": "undefined", "std": "undefined", "os": "undefined"})
    );
}

#[test]
fn scripts_written_for_the_original_madrpc_run_unchanged() {
    let module = load_script("classic.js");
    let call = |method: &str, params: &str| -> Value {
        let report = runtime().call(&module, method, params.as_bytes());
        serde_json::from_slice(&report.result.expect("classic call succeeds")).unwrap()
    };
    assert_eq!(
        call(
            "word_count",
            r#"{"text": "the cat and the hat", "min_length": 3}"#
        ),
        json!({"unique": 4, "counts": {"the": 2, "and": 1, "cat": 1, "hat": 1}})
    );
    assert_eq!(call("sum", "[1, 2, 3.5]"), json!(6.5));
    assert_eq!(
        call("parallel_squares", r#"{"values": [1, 2, 3]}"#),
        json!({"squares": [1, 4, 9], "first": 1, "rest": [2, 3]})
    );
}

#[test]
fn foreign_and_corrupt_modules_are_refused() {
    let plain = b"\0asm\x01\0\0\0";
    let error = runtime()
        .load(plain)
        .err()
        .expect("a plain module is refused");
    assert!(error.to_string().contains("not a madrpc module"), "{error}");

    let error = runtime().load(b"{}").err().expect("JSON is refused");
    assert!(
        error.to_string().contains("not a WebAssembly module"),
        "{error}"
    );

    let built = madrpc::build::build_file(&support::script("classic.js")).unwrap();
    let mut corrupt = built.wasm.clone();
    let middle = corrupt.len() / 2;
    corrupt.truncate(middle);
    let error = runtime()
        .load(&corrupt)
        .err()
        .expect("a truncated module is refused");
    assert!(
        error.to_string().contains("unexpected end-of-file"),
        "{error}"
    );
}

#[test]
fn a_thrown_error_is_bounded_like_a_result() {
    let module = load_source(
        "throw_big.js",
        "madrpc.register('throw_big', (n) => { throw new Error('x'.repeat(n)); });",
    );
    let limits = Limits {
        max_result_bytes: 1024,
        ..small_limits()
    };
    let call = |n: u32| {
        runtime()
            .call_with_limits(&module, "throw_big", format!("[{n}]").as_bytes(), &limits)
            .result
    };
    match call(100) {
        Err(CallError::Threw(e)) => assert_eq!(e.message, "x".repeat(100)),
        other => panic!("{other:?}"),
    }
    match call(100_000) {
        Err(CallError::Threw(e)) => {
            assert!(
                e.message
                    .contains("larger than the result limit of 1024 bytes"),
                "{}",
                e.message
            );
            assert!(e.message.len() < 300);
            assert!(e.stack.is_none());
        }
        other => panic!("{other:?}"),
    }
}
