//! A `madrpc` process whose stdout and stderr (its log) the test reads, to
//! check what it logged, not only what it answered.

use super::madrpc;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Every line a process printed so far, on either stream.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    added: Condvar,
}

/// A child process that is killed when dropped.
pub struct Logged {
    pub child: Child,
    pub url: String,
    lines: Arc<Lines>,
    /// The process's own default data folder (see `grid::Process`).
    _data: tempfile::TempDir,
}

fn collect(stream: impl Read + Send + 'static, lines: Arc<Lines>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            lines
                .lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line);
            lines.added.notify_all();
        }
    });
}

impl Logged {
    /// Starts `madrpc args...` with `RUST_LOG=info` plus the environment
    /// given, and waits for the stdout line that starts with `ready_prefix`,
    /// taking the URL that follows it.
    pub fn start(args: &[&str], env: &[(&str, &str)], ready_prefix: &str) -> Logged {
        let mut process = Logged::spawn(args, env);
        let line = process
            .wait_for(|l| l.starts_with(ready_prefix), Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "madrpc {args:?} never printed '{ready_prefix}'; it printed:\n{}",
                    process.output()
                )
            });
        process.url = line[ready_prefix.len()..]
            .split_whitespace()
            .next()
            .expect("a URL after the prefix")
            .trim_end_matches('/')
            .to_owned();
        process
    }

    /// Starts `madrpc args...` like [`Logged::start`] without waiting for
    /// anything; `url` stays empty.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Logged {
        let data = tempfile::tempdir().expect("a data folder");
        let mut command = madrpc();
        command
            .args(args)
            .env("XDG_DATA_HOME", data.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("madrpc starts");
        let lines = Arc::new(Lines::default());
        collect(child.stdout.take().expect("piped stdout"), lines.clone());
        collect(child.stderr.take().expect("piped stderr"), lines.clone());
        Logged {
            child,
            url: String::new(),
            lines,
            _data: data,
        }
    }

    /// Waits for a line matching `predicate`, printed before or after now.
    pub fn wait_for(&self, predicate: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(line) = lines.iter().find(|l| predicate(l)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self
                .lines
                .added
                .wait_timeout(lines, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until at least `count` lines match `predicate`, then returns
    /// every match; what matched so far if the timeout passes first.
    pub fn wait_for_count(
        &self,
        predicate: impl Fn(&str) -> bool,
        count: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let found: Vec<String> = lines.iter().filter(|l| predicate(l)).cloned().collect();
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return found;
            };
            if found.len() >= count {
                return found;
            }
            lines = self
                .lines
                .added
                .wait_timeout(lines, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The lines printed so far that match `predicate`.
    pub fn matching(&self, predicate: impl Fn(&str) -> bool) -> Vec<String> {
        let lines = self.lines.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().filter(|l| predicate(l)).cloned().collect()
    }

    /// Everything printed so far, for failure messages.
    pub fn output(&self) -> String {
        self.matching(|_| true).join("\n")
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit, up to `timeout`, and returns its exit
    /// status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
