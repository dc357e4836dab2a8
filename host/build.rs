//! Builds the guest plugin (`guest-sdk/`, QuickJS for `wasm32-wasip1`) so the
//! `madrpc` binary can embed it: `cargo build` is the whole build.

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
