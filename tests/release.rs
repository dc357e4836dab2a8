//! What a release carries besides the grid: `madrpc --version`, shell
//! completions, and progress on a terminal that stays out of pipes. Real
//! processes; a pseudo-terminal from util-linux's `script` stands in for a
//! person at a terminal.

mod support;

use std::process::Command;
use support::{build_into, madrpc, texts};

#[test]
fn version_names_the_release_the_commit_and_wasmtime() {
    let output = madrpc().arg("--version").output().expect("madrpc runs");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .expect("the lock file");
    let wasmtime = lock
        .split("[[package]]")
        .find(|package| package.contains("name = \"wasmtime\"\n"))
        .and_then(|package| package.split("version = \"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("wasmtime in the lock file");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |out| String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        );
    let expected = format!(
        "madrpc {} (commit {commit}, wasmtime {wasmtime})",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(stdout.trim(), expected);
}

#[test]
fn completions_cover_every_subcommand_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _madrpc"),
        ("zsh", "#compdef madrpc"),
        ("fish", "complete -c madrpc"),
    ] {
        let output = madrpc()
            .args(["completions", shell])
            .output()
            .expect("madrpc runs");
        let (script, stderr) = texts(&output);
        assert!(output.status.success(), "{shell}: {stderr}");
        assert!(script.contains(marker), "{shell}: no '{marker}'");
        for word in ["gateway", "join-token", "completions", "discover"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let file = dir.path().join("madrpc.bash");
            std::fs::write(&file, &script).expect("written");
            let check = Command::new("bash")
                .arg("-n")
                .arg(&file)
                .output()
                .expect("bash runs");
            assert!(check.status.success(), "{}", texts(&check).1);
        }
    }
    let output = madrpc()
        .args(["completions", "tcsh"])
        .output()
        .expect("madrpc runs");
    let (_, stderr) = texts(&output);
    // A usage error: clap's status 2.
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bash, zsh, fish"), "{stderr}");
}

#[test]
fn a_first_compile_shows_progress_on_a_terminal_and_nothing_in_a_pipe() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let module = build_into(dir.path(), "grid.js");
    let module = module.to_str().expect("UTF-8 path");
    let progress = "compiling the module";

    // Piped: the compile happens (fresh cache), and stderr has no trace of it.
    let piped_cache = dir.path().join("piped-cache");
    let output = madrpc()
        .args(["run", module, "add", "[3, 4]"])
        .env("MADRPC_CACHE_DIR", &piped_cache)
        .env("RUST_LOG", "warn")
        .output()
        .expect("madrpc runs");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "7");
    assert!(!stderr.contains(progress), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    assert!(
        std::fs::read_dir(&piped_cache)
            .expect("the cache was written")
            .count()
            > 0,
        "the piped run compiled nothing, so it proves nothing"
    );

    // On a terminal: the same first compile draws its progress line.
    let command = format!("{} run {module} add '[3,4]'", env!("CARGO_BIN_EXE_madrpc"));
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("MADRPC_CACHE_DIR", dir.path().join("terminal-cache"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("util-linux script runs (scripts/setup installs it)");
    let (screen, stderr) = texts(&output);
    assert!(output.status.success(), "{screen} {stderr}");
    assert!(screen.contains(progress), "{screen:?}");
    assert!(screen.contains("7"), "{screen:?}");
}
