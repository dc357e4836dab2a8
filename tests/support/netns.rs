//! Real network hosts for tests: network namespaces joined by veth pairs
//! to a bridge in one more namespace (the switch), processes started in
//! them, and `/etc/netns/NAME/hosts`, which `ip netns exec` lays over
//! `/etc/hosts`, so a name resolves differently in each namespace.
//! Everything is removed on drop, also when a test fails. Needs root and
//! iproute2.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `ip args...`, panicking with its output when it fails.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` ({e}); this test needs iproute2 and root"));
    assert!(
        output.status.success(),
        "`ip {}` failed: {}; this test needs root and network namespaces (`ip netns`)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// A switch and the host namespaces plugged into it, removed on drop.
pub struct Network {
    prefix: String,
    names: Vec<String>,
    switch: String,
}

impl Network {
    /// An empty switch; `tag` keeps concurrent tests' names apart.
    pub fn new(tag: &str) -> Self {
        let mut network = Self {
            prefix: format!("mr{tag}{}", std::process::id()),
            names: Vec::new(),
            switch: String::new(),
        };
        network.switch = network.namespace("sw");
        ip(&[
            "-n",
            &network.switch,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
        ]);
        ip(&["-n", &network.switch, "link", "set", "br0", "up"]);
        network
    }

    fn namespace(&mut self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.prefix);
        ip(&["netns", "add", &name]);
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A host namespace with `address`/24 on its `eth0`, plugged into the
    /// switch; returns its name.
    pub fn host(&mut self, name: &str, address: &str) -> String {
        let ns = self.namespace(name);
        let port = format!("p{name}");
        let switch = self.switch.clone();
        ip(&[
            "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    /// Takes a host's switch port down or up: a cut cable, not a closed
    /// socket, so peers see silence rather than a refusal.
    pub fn port(&self, name: &str, up: bool) {
        let port = format!("p{name}");
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.switch, "link", "set", &port, state]);
    }

    /// Writes the `/etc/hosts` processes started in `ns` see: `entries`
    /// are (address, name) lines. Written in place, never replaced, so
    /// processes already running there read the new content at their
    /// next lookup.
    pub fn hosts(&self, ns: &str, entries: &[(&str, &str)]) {
        let dir = hosts_dir(ns);
        std::fs::create_dir_all(&dir).expect("/etc/netns is writable (root)");
        let mut text = String::from("127.0.0.1 localhost\n");
        for (address, name) in entries {
            text.push_str(&format!("{address} {name}\n"));
        }
        std::fs::write(dir.join("hosts"), text).expect("the hosts file is written");
    }
}

fn hosts_dir(ns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(ns)
}

impl Drop for Network {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            let _ = std::fs::remove_dir_all(hosts_dir(name));
        }
    }
}

/// `madrpc` running inside a namespace, killed when dropped.
pub struct NsProcess {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl NsProcess {
    /// Starts `madrpc args...` in `ns` with `env`, and waits for the stdout
    /// line starting with `ready`.
    pub fn start(ns: &str, args: &[&str], env: &[(&str, &str)], ready: &str) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_madrpc")])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ip netns exec starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let process = Self { child, lines };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("madrpc {args:?} in {ns} never printed '{ready}'"));
            match process.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(ready) => return process,
                Ok(_) => continue,
                Err(_) => panic!("madrpc {args:?} in {ns} never printed '{ready}'"),
            }
        }
    }

    /// Sends `signal` to the process (`ip netns exec` execs madrpc).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        // A process a test froze with SIGSTOP is woken to die cleanly.
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Moves the calling thread into namespace `ns`: sockets it opens from
/// then on live there.
pub fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace descriptor; only this thread moves.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns({ns}) failed: {}",
        std::io::Error::last_os_error()
    );
}
