//! Module loading: arbitrary and damaged modules fail with an error.

use crate::json::string;
use crate::{Tape, support};
use madrpc::runtime::{Limits, Runtime, RuntimeConfig};
use serde::de::IgnoredAny;
use std::sync::OnceLock;
use std::time::Duration;

const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// A runtime that compiles every module afresh (no cache to fill).
fn fuzz_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            limits: Limits {
                fuel: 50_000_000,
                memory_bytes: 32 << 20,
                deadline: Duration::from_secs(2),
                ..Limits::default()
            },
            max_instances: 8,
            cache: None,
            ..RuntimeConfig::default()
        })
        .expect("the runtime starts")
    })
}

/// A real module, built once.
fn real_module() -> &'static [u8] {
    static MODULE: OnceLock<Vec<u8>> = OnceLock::new();
    MODULE.get_or_init(|| {
        madrpc::build::build_source("fuzz.js", "madrpc.register('add', (a, b) => a + b);")
            .expect("the script builds")
            .wasm
    })
}

fn with_custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut wasm = EMPTY_MODULE.to_vec();
    wasm.push(0);
    let mut section = Vec::new();
    wasm_encoder::Encode::encode(&name, &mut section);
    section.extend_from_slice(payload);
    wasm_encoder::Encode::encode(&(section.len() as u32), &mut wasm);
    wasm.extend_from_slice(&section);
    wasm
}

/// Module bytes made from the tape: raw bytes, a damaged real module, or a
/// module whose madrpc manifest says anything.
fn damaged_module(tape: &mut Tape) -> Vec<u8> {
    // Damage that leaves the code section to Cranelift costs seconds per
    // input, so it is drawn rarely; the rest fails in microseconds.
    match tape.below(32) {
        0..=4 => tape.take(4096).to_vec(),
        5..=9 => [EMPTY_MODULE, tape.take(4096)].concat(),
        10..=15 => {
            let real = real_module();
            real[..tape.below(real.len() + 1)].to_vec()
        }
        16 => {
            // A few bytes overwritten in the first 64 KiB.
            let mut wasm = real_module().to_vec();
            for _ in 0..tape.below(4) + 1 {
                let at = tape.below(wasm.len());
                wasm[at] = tape.byte();
            }
            wasm
        }
        17..=21 => with_custom_section(madrpc::manifest::SECTION_NAME, tape.take(512)),
        22..=26 => {
            let manifest = format!(
                r#"{{"abi":{},"script":{},"methods":[{}]}}"#,
                tape.pick(&["1", "0", "2", "-1", "4294967296", "1.5", "null"]),
                string(tape),
                (0..tape.below(3))
                    .map(|_| string(tape))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            with_custom_section(madrpc::manifest::SECTION_NAME, manifest.as_bytes())
        }
        // Trailing bytes that end in a section id no module may have.
        _ => [real_module(), tape.take(256), &[0xff]].concat(),
    }
}

#[test]
fn module_loading_refuses_damaged_modules_without_crashing() {
    bolero::check!().for_each(|input: &[u8]| {
        let runtime = fuzz_runtime();
        let wasm = damaged_module(&mut Tape::new(input));
        // Loading either fails with an error or gives a module that runs
        // calls under the limits; it never panics or aborts.
        if let Ok(module) = runtime.load(&wasm) {
            let report = runtime.call(&module, "add", b"[1, 2]");
            if let Ok(result) = &report.result {
                serde_json::from_slice::<IgnoredAny>(result).expect("a result is JSON");
            }
        }
    });
}

#[test]
fn a_node_given_a_broken_module_exits_with_an_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let real = real_module();
    for (name, bytes) in [
        ("text.wasm", b"console.log(1)".to_vec()),
        ("truncated.wasm", real[..real.len() / 2].to_vec()),
        ("bare.wasm", EMPTY_MODULE.to_vec()),
        (
            "manifest.wasm",
            with_custom_section(madrpc::manifest::SECTION_NAME, b"{\"abi\":"),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("the module is written");
        let output = support::run_cli(
            dir.path(),
            &[
                "node",
                "--module",
                path.to_str().expect("UTF-8"),
                "--listen",
                "127.0.0.1:0",
                "--insecure-public-calls",
            ],
        );
        let (_, stderr) = support::texts(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(stderr.contains("module"), "{name}: {stderr}");
    }
}
