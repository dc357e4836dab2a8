//! `madrpc build` and `madrpc run` as a user runs them: real processes,
//! real files.

mod support;

use std::fs;
use support::{example, run_cli, script, texts};
use tempfile::TempDir;

fn workdir() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn write_script(dir: &TempDir, name: &str, source: &str) {
    fs::write(dir.path().join(name), source).expect("the script is written");
}

#[test]
fn build_writes_a_module_and_reports_path_size_and_methods() {
    let dir = workdir();
    fs::copy(example("hello.js"), dir.path().join("hello.js")).unwrap();
    let output = run_cli(dir.path(), &["build", "hello.js"]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("hello.wasm"), "{stdout}");
    assert!(stdout.contains("MiB") || stdout.contains("KiB"), "{stdout}");
    assert!(stdout.contains("methods: hello, add, noop"), "{stdout}");
    let module = fs::read(dir.path().join("hello.wasm")).unwrap();
    assert_eq!(&module[..4], b"\0asm");

    let output = run_cli(
        dir.path(),
        &["run", "hello.wasm", "hello", r#"{"name": "cli"}"#],
    );
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), r#"{"greeting":"hello, cli"}"#);
}

#[test]
fn the_same_script_builds_to_identical_bytes() {
    let dir = workdir();
    let source = script("sandbox.js");
    let source = source.to_str().unwrap();
    for output in ["a.wasm", "b.wasm"] {
        let result = run_cli(dir.path(), &["build", source, "-o", output]);
        assert!(result.status.success(), "{}", texts(&result).1);
    }
    let a = fs::read(dir.path().join("a.wasm")).unwrap();
    let b = fs::read(dir.path().join("b.wasm")).unwrap();
    assert!(a == b, "two builds of one script differ");
}

#[test]
fn syntax_errors_and_top_level_throws_name_file_line_and_column() {
    let dir = workdir();
    write_script(
        &dir,
        "syntax.js",
        "madrpc.register('a', () => 1);\n\nconst = 5;\n",
    );
    write_script(
        &dir,
        "throws.js",
        "madrpc.register('a', () => 1);\nconst x = null;\n  x.field;\n",
    );
    let cases = [
        ("syntax.js", "syntax.js:3:", "SyntaxError"),
        ("throws.js", "throws.js:3:3", "TypeError"),
    ];
    for (file, location, name) in cases {
        let output = run_cli(dir.path(), &["build", file]);
        let (_, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr.contains(location),
            "{file}: no {location} in {stderr}"
        );
        assert!(stderr.contains(name), "{file}: no {name} in {stderr}");
        assert!(!dir.path().join(file.replace(".js", ".wasm")).exists());
    }
}

#[test]
fn scripts_that_register_nothing_or_twice_do_not_build() {
    let dir = workdir();
    write_script(&dir, "empty.js", "");
    write_script(&dir, "nothing.js", "const unused = 1;\n");
    write_script(
        &dir,
        "twice.js",
        "madrpc.register('a', () => 1);\nmadrpc.register('a', () => 2);\n",
    );
    write_script(
        &dir,
        "reserved.js",
        "madrpc.register('rpc.discover', () => 1);\n",
    );
    let cases = [
        ("empty.js", "registers no function"),
        ("nothing.js", "registers no function"),
        ("twice.js", "'a' is already registered"),
        ("reserved.js", "reserved"),
    ];
    for (file, expected) in cases {
        let output = run_cli(dir.path(), &["build", file]);
        let (_, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        assert!(!stderr.contains("panicked"), "{file}: {stderr}");
    }
}

#[test]
fn a_missing_or_binary_script_is_a_clear_error() {
    let dir = workdir();
    fs::write(dir.path().join("binary.js"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let output = run_cli(dir.path(), &["build", "missing.js"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(texts(&output).1.contains("cannot read missing.js"));
    let output = run_cli(dir.path(), &["build", "binary.js"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(texts(&output).1.contains("not UTF-8"));
}

#[test]
fn run_builds_a_script_first_and_prints_the_result() {
    let dir = workdir();
    let monte_carlo = example("monte_carlo.js");
    let output = run_cli(
        dir.path(),
        &[
            "run",
            monte_carlo.to_str().unwrap(),
            "estimate_single",
            r#"{"samples": 10000}"#,
        ],
    );
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let pi = result["pi"].as_f64().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.1, "pi = {pi}");
    assert_eq!(result["total"], 10000);
}

#[test]
fn run_reports_call_errors_and_exits_non_zero() {
    let dir = workdir();
    let sandbox = script("sandbox.js");
    let sandbox = sandbox.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["nope"],
            "no function is registered as 'nope'; available: increment, add",
        ),
        (&["echo", "{not json"], "invalid params"),
        (&["throws"], "RangeError: value out of range"),
        (&["spin_for", "--fuel", "1000000"], "used up its fuel"),
        (
            &[
                "spin_for",
                "--deadline",
                "100ms",
                "--fuel",
                "100000000000000",
            ],
            "deadline of 100 ms",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["run", sandbox];
        full.extend_from_slice(args);
        let output = run_cli(dir.path(), &full);
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed a result: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let output = run_cli(dir.path(), &["run", sandbox, "throws"]);
    assert!(
        texts(&output).1.contains("sandbox.js:17:"),
        "no stack in run's error"
    );
}

#[test]
fn run_refuses_corrupt_and_foreign_modules() {
    let dir = workdir();
    fs::write(dir.path().join("text.wasm"), "not wasm at all").unwrap();
    fs::write(dir.path().join("plain.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let cases = [
        ("text.wasm", "not a WebAssembly module"),
        ("plain.wasm", "not a madrpc module"),
        ("absent.wasm", "cannot read absent.wasm"),
    ];
    for (file, expected) in cases {
        let output = run_cli(dir.path(), &["run", file, "hello"]);
        let (_, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        assert!(!stderr.contains("panicked"), "{file}: {stderr}");
    }
}

#[test]
fn console_output_reaches_the_log_tagged_with_the_call() {
    let dir = workdir();
    let sandbox = script("sandbox.js");
    let output = run_cli(
        dir.path(),
        &["run", sandbox.to_str().unwrap(), "chatty", "[1]"],
    );
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "1");
    assert!(
        stderr.contains(r#"line 0 {"i":0}"#) && stderr.contains("method=\"chatty\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARN") && stderr.contains("a warning"),
        "{stderr}"
    );

    // Every console method: log, info and debug at INFO; warn and error at
    // WARN; objects as JSON.
    let claims = script("claims.js");
    let output = run_cli(
        dir.path(),
        &["run", claims.to_str().unwrap(), "console_levels"],
    );
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for (text, level) in [
        (r#"via log {"n":1}"#, " INFO "),
        ("via info", " INFO "),
        ("via debug", " INFO "),
        ("via warn", " WARN "),
        ("via error", " WARN "),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("{text} is missing:\n{stderr}"));
        assert!(
            line.contains(level) && line.contains("method=\"console_levels\""),
            "{line}"
        );
    }
}

#[test]
fn the_module_cache_keeps_within_its_size_limit() {
    // Each compiled module is several MiB: with a 1 MiB limit only the
    // entry just written stays.
    let dir = workdir();
    let cache = dir.path().join("cache");
    write_script(&dir, "one.js", "madrpc.register('f', () => 1);");
    write_script(&dir, "two.js", "madrpc.register('f', () => 2);");
    let entries = || {
        std::fs::read_dir(&cache)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .count()
    };
    for (script, expected) in [("one.js", "1"), ("two.js", "2")] {
        let output = support::madrpc()
            .current_dir(dir.path())
            .args(["run", script, "f"])
            .env("MADRPC_CACHE_DIR", &cache)
            .env("MADRPC_CACHE_MAX_MB", "1")
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&output);
        assert!(output.status.success(), "{stderr}");
        assert_eq!(stdout.trim(), expected);
        assert_eq!(entries(), 1, "entries after running {script}");
    }
}

/// `-v` (debug), `-vv` (trace), `RUST_LOG` over both, and `--log-format
/// json` or `MADRPC_LOG_FORMAT=json`: one JSON object per log line.
#[test]
fn verbosity_and_log_format_flags_shape_the_log() {
    let dir = workdir();
    let module = support::build_into(dir.path(), "claims.js");
    let module = module.to_str().unwrap();
    let run = |flags: &[&str], env: &[(&str, &str)]| {
        let mut command = support::madrpc();
        command
            .env_remove("RUST_LOG")
            .env_remove("MADRPC_LOG_FORMAT");
        command.envs(env.iter().copied());
        let output = command
            .args(flags)
            .args(["run", module, "add", "[1, 2]"])
            .output()
            .expect("madrpc runs");
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert_eq!(stdout.trim(), "3");
        stderr
    };
    let quiet = run(&[], &[]);
    assert!(!quiet.contains(" DEBUG "), "{quiet}");
    let debug = run(&["-v"], &[]);
    assert!(debug.contains(" DEBUG "), "{debug}");
    assert!(!debug.contains(" TRACE "), "{debug}");
    let trace = run(&["-vv"], &[]);
    assert!(trace.contains(" TRACE "), "-vv logs at trace level");
    let overridden = run(&["-vv"], &[("RUST_LOG", "warn")]);
    assert!(
        !overridden.contains(" DEBUG ") && !overridden.contains(" TRACE "),
        "{overridden}"
    );
    for (flags, env) in [
        (&["-v", "--log-format", "json"][..], &[][..]),
        (&["-v"][..], &[("MADRPC_LOG_FORMAT", "json")][..]),
    ] {
        let json = run(flags, env);
        assert!(json.lines().count() > 0);
        for line in json.lines() {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{flags:?} {env:?}: not JSON ({e}): {line}"));
            assert!(value["level"].is_string(), "{line}");
        }
    }
}

/// Without `MADRPC_CACHE_DIR`, compiled modules go to
/// `$HOME/.cache/madrpc/modules`.
#[test]
fn compiled_modules_are_cached_under_home_by_default() {
    let dir = workdir();
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    // Built beforehand, so that the run compiles the module alone.
    let module = support::build_into(dir.path(), "claims.js");
    let output = support::madrpc()
        .current_dir(dir.path())
        .args(["run", module.to_str().unwrap(), "add", "[0, 1]"])
        .env_remove("MADRPC_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", &home)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "1");
    let cached = fs::read_dir(home.join(".cache/madrpc/modules"))
        .expect("the default cache folder")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert!(cached >= 1, "no compiled module cached");
}
