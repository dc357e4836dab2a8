//! Browsers as clients: a page on another origin calls the grid with
//! `fetch` in headless Chromium (Debian's `chromium`, installed by
//! `scripts/setup`), with an API key in `Authorization`; a page on an
//! origin that is not allowed is refused by the browser.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::grid::Process;

fn serve_one(mut stream: TcpStream, page: &str, reports: &mpsc::Sender<String>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let (status, content) = if request_line.starts_with("POST /report") {
        let _ = reports.send(String::from_utf8_lossy(&body).into_owned());
        ("204 No Content", String::new())
    } else if request_line.starts_with("GET / ") {
        ("200 OK", page.to_owned())
    } else {
        ("404 Not Found", String::new())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{content}",
        content.len()
    );
}

/// A page that calls `grid` twice (with `key`, then without) and reports
/// what it could read.
fn page(grid: &str, key: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const call = async (headers) => {{
  try {{
    const response = await fetch({grid:?}, {{
      method: 'POST',
      headers: Object.assign({{'Content-Type': 'application/json'}}, headers),
      body: JSON.stringify({{jsonrpc: '2.0', method: 'add', params: [40, 2], id: 1}}),
    }});
    const body = await response.json();
    return response.status + ':' + JSON.stringify(body.result ?? body.error.data.kind);
  }} catch (error) {{
    return 'refused:' + error.name;
  }}
}};
(async () => {{
  const text = [await call({{'Authorization': 'Bearer {key}'}}), await call({{}})].join(' ');
  document.getElementById('out').textContent = text;
  await fetch('/report', {{method: 'POST', body: text}});
}})();
</script></body></html>"#
    )
}

/// Headless Chromium showing `url`, in its own process group so that all
/// its helper processes go with it.
struct Browser(Child);

impl Browser {
    fn open(url: &str, profile: &Path) -> Browser {
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromium runs (scripts/setup installs Debian's chromium)");
        Browser(child)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: signalling the process group of our own child.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn a_page_on_an_allowed_origin_calls_the_grid_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let output = support::run_cli(
        dir.path(),
        &["keys", "new", "web", "--file", keys.to_str().unwrap()],
    );
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();

    // Two page origins; only the first is allowed. The page servers start
    // first (the grid needs the allowed origin), and get their pages once
    // the grid's URL is known.
    let module = support::build_into(dir.path(), "grid.js");
    let (allowed_origin, allowed_reports, set_allowed) = page_server();
    let (other_origin, other_reports, set_other) = page_server();
    let grid = Process::start(
        &support::grid::serve_args(
            &module,
            &[
                "--nodes",
                "1",
                "--keys",
                keys.to_str().unwrap(),
                "--allow-origin",
                &allowed_origin,
            ],
        ),
        "madrpc is serving at ",
    );
    let grid_url = format!("{}/", grid.url);
    set_allowed(page(&grid_url, &key));
    set_other(page(&grid_url, &key));

    let profile = dir.path().join("profile-allowed");
    let browser = Browser::open(&format!("{allowed_origin}/"), &profile);
    let report = allowed_reports
        .recv_timeout(Duration::from_secs(60))
        .expect("the allowed page reported");
    drop(browser);
    assert_eq!(report, "200:42 401:\"unauthorized\"");

    let profile = dir.path().join("profile-other");
    let browser = Browser::open(&format!("{other_origin}/"), &profile);
    let report = other_reports
        .recv_timeout(Duration::from_secs(60))
        .expect("the other page reported");
    drop(browser);
    assert_eq!(report, "refused:TypeError refused:TypeError");
}

/// A tiny web server for one page: it serves the page (set later through
/// the returned function) at `/` and sends the body of every
/// `POST /report` to the returned channel.
fn page_server() -> (String, mpsc::Receiver<String>, impl FnOnce(String)) {
    let slot = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (reports, received) = mpsc::channel();
    let served = slot.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let page = served.lock().unwrap().clone();
            let reports = reports.clone();
            std::thread::spawn(move || serve_one(stream, &page, &reports));
        }
    });
    let set = move |page: String| *slot.lock().unwrap() = page;
    (origin, received, set)
}
