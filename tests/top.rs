//! `madrpc top` as a person uses it: in a terminal (tmux, installed by
//! `scripts/setup`), against a running `serve` and against a gateway with
//! a joined node, it shows the nodes and the methods with their calls, and
//! quits on `q`.

mod support;

use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::grid::{Grid, Process, client, rpc};

/// A tmux session of its own (its own server socket), killed when dropped.
struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs (scripts/setup installs it)")
    }

    /// Starts `command` in a 160×40 terminal.
    fn start(name: &str, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("madrpc-top-{name}-{}", std::process::id()),
            session: "top",
        };
        let output = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "40",
            "-s",
            tmux.session,
            command,
        ]);
        assert!(output.status.success(), "{output:?}");
        tmux
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", self.session]).stdout)
            .into_owned()
    }

    /// Waits until the screen shows every one of `texts`; returns it.
    fn wait_for(&self, texts: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {texts:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the session (and so `top`) is still running.
    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", self.session])
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Runs `top` against `url` and checks what it shows, then quits it.
fn watch(name: &str, url: &str, expected: &[&str]) -> String {
    let binary = env!("CARGO_BIN_EXE_madrpc");
    // `remain-on-exit` is off: the session ends when `top` exits.
    let tmux = Tmux::start(name, &format!("{binary} top --url {url} --interval 300ms"));
    let screen = tmux.wait_for(expected, Duration::from_secs(30));
    let output = tmux.run(&["send-keys", "-t", tmux.session, "q"]);
    assert!(output.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.alive() {
        assert!(Instant::now() < deadline, "top did not quit on q");
        std::thread::sleep(Duration::from_millis(50));
    }
    screen
}

#[tokio::test(flavor = "multi_thread")]
async fn top_shows_nodes_and_methods_of_serve_and_of_a_gateway_and_quits_on_q() {
    let script = support::script("telemetry.js");
    let serve = Process::start(
        &support::grid::serve_args(&script, &["--nodes", "2"]),
        "madrpc is serving at ",
    );
    let http = client();
    for i in 0..7 {
        let body = json!({"jsonrpc": "2.0", "method": "add", "params": [i, 1], "id": i});
        let reply = rpc(&http, &format!("{}/", serve.url), &body.to_string()).await;
        assert_eq!(reply.json()["result"], i + 1);
    }
    let url = serve.url.clone();
    let screen = tokio::task::spawn_blocking(move || {
        watch(
            "serve",
            &url,
            &[
                "local:0", "local:1", "parent", "child", "busy", " 7 calls", "ready",
            ],
        )
    })
    .await
    .unwrap();
    // The `add` row counts the seven calls.
    let add = screen
        .lines()
        .find(|l| l.contains("│add ") || l.contains(" add "))
        .unwrap_or_else(|| panic!("no row for add:\n{screen}"));
    assert!(add.contains(" 7 "), "{add}");

    // A gateway knows its joined node's module from its announcements.
    let grid = Grid::start("telemetry.js", 1, &[]).await;
    let node = grid.nodes[0].url.clone();
    let url = grid.gateway.url.clone();
    let wasm = std::fs::read(&grid.module).unwrap();
    let hash = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&wasm));
    tokio::task::spawn_blocking(move || {
        watch(
            "gateway",
            &url,
            &[
                &node,
                "add",
                "parent",
                "1/1",
                &format!("module {}", &hash[..12]),
            ],
        )
    })
    .await
    .unwrap();
}
