//! Builds the guest plugin (`guest-sdk/`, QuickJS for `wasm32-wasip1`) so the
//! `madrpc` binary can embed it: `cargo build` is the whole build. Also
//! records what `madrpc --version` reports: the git commit and the Wasmtime
//! version.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let guest_dir = manifest_dir.join("../guest-sdk");
    for watched in ["src", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            guest_dir.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=MADRPC_PLUGIN_WASM");
    version_info(&manifest_dir);

    // A prebuilt plugin can be supplied (for example by a packager).
    if let Some(prebuilt) = env::var_os("MADRPC_PLUGIN_WASM") {
        println!(
            "cargo:rustc-env=MADRPC_PLUGIN_WASM={}",
            Path::new(&prebuilt).display()
        );
        return;
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    // Share one guest build across profiles: OUT_DIR is
    // <target>/<profile>/build/<pkg>-<hash>/out.
    let target_root = out_dir.ancestors().nth(4).unwrap_or(&out_dir).to_path_buf();
    let guest_target = target_root.join("madrpc-guest");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&guest_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip1",
        ])
        .env("CARGO_TARGET_DIR", &guest_target)
        // QuickJS (rquickjs-sys) is C: build it with Debian's clang and
        // wasi-libc. Clang 14 knows the WASI headers by the old triple.
        .env("RQUICKJS_SYS_NO_WASI_SDK", "1")
        .env("CC_wasm32_wasip1", "clang-14")
        .env("AR_wasm32_wasip1", "llvm-ar-14")
        .env("CFLAGS_wasm32_wasip1", "--target=wasm32-wasi")
        .env(
            "BINDGEN_EXTRA_CLANG_ARGS_wasm32_wasip1",
            "--target=wasm32-wasi",
        );
    // Settings meant for the host build must not leak into the guest build.
    for leaked in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(leaked);
    }
    let status = command.status().unwrap_or_else(|e| {
        panic!("could not run cargo to build the guest plugin: {e}");
    });
    if !status.success() {
        panic!(
            "building the guest plugin failed; run `scripts/setup` once to install \
             clang, llvm, wasi-libc and the wasm32-wasip1 target"
        );
    }
    let wasm = guest_target.join("wasm32-wasip1/release/madrpc_guest.wasm");
    println!("cargo:rustc-env=MADRPC_PLUGIN_WASM={}", wasm.display());
}

/// Sets `MADRPC_GIT_COMMIT` (from `$MADRPC_GIT_COMMIT`, else `git`, else
/// `unknown`: a source tarball has no history) and `MADRPC_WASMTIME_VERSION`
/// (from the lock file).
fn version_info(manifest_dir: &Path) {
    println!("cargo:rerun-if-env-changed=MADRPC_GIT_COMMIT");
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .current_dir(manifest_dir)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = env::var("MADRPC_GIT_COMMIT").ok().or_else(|| {
        // Rebuild when the checked-out commit moves.
        for path in ["HEAD", "packed-refs"] {
            if let Some(file) = git(&["rev-parse", "--git-path", path]) {
                println!(
                    "cargo:rerun-if-changed={}",
                    manifest_dir.join(file).display()
                );
            }
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(file) = git(&["rev-parse", "--git-path", &branch])
        {
            println!(
                "cargo:rerun-if-changed={}",
                manifest_dir.join(file).display()
            );
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo:rustc-env=MADRPC_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );

    let lock = manifest_dir.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let wasmtime = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| locked_version(&text, "wasmtime"))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MADRPC_WASMTIME_VERSION={wasmtime}");
}

/// The version of package `name` in a `Cargo.lock`.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = ")?;
            return Some(version.trim_matches('"').to_owned());
        }
    }
    None
}
