//! Idle keep-alive connections held open while the load runs
//! (`--idle-connections N`): each sends one request, reads the reply and
//! then stays silent, as a crowd of parked browser or pool connections
//! does. The run reports how many the server kept open.

use anyhow::Context as _;
use hyper::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Connections opened at once while setting up.
const OPEN_AT_ONCE: usize = 256;

/// The idle connections of a run.
pub struct IdleConnections {
    streams: Vec<TcpStream>,
}

impl IdleConnections {
    /// Opens `count` connections to `url`'s server, each after one
    /// successful `GET /health`.
    pub async fn open(url: &Uri, count: usize) -> anyhow::Result<Self> {
        raise_fd_limit();
        let authority = url.authority().context("the URL has no host")?.clone();
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let mut streams = Vec::with_capacity(count);
        while streams.len() < count {
            let batch = OPEN_AT_ONCE.min(count - streams.len());
            let mut opening = JoinSet::new();
            for _ in 0..batch {
                let addr = addr.clone();
                let host = authority.as_str().to_owned();
                opening.spawn(async move { open_one(&addr, &host).await });
            }
            while let Some(opened) = opening.join_next().await {
                streams.push(opened.context("a connecting task failed")??);
            }
        }
        Ok(Self { streams })
    }

    /// How many connections the server has not closed.
    pub fn still_open(&self) -> usize {
        let mut buf = [0u8; 1];
        self.streams
            .iter()
            .filter(|stream| {
                matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    }

    /// How many were opened.
    pub fn len(&self) -> usize {
        self.streams.len()
    }
}

async fn open_one(addr: &str, host: &str) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream
        .write_all(format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the server closed an idle connection during setup");
        reply.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&reply, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&reply[..end]).to_ascii_lowercase();
            anyhow::ensure!(
                head.starts_with("http/1.1 200"),
                "GET /health answered: {head}"
            );
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if reply.len() >= end + 4 + length {
                return Ok(stream);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Lifts the open-file limit to its hard limit: thousands of connections
/// need thousands of descriptors.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
