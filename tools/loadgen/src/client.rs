//! HTTP transport: POSTs request bodies over one keep-alive HTTP/1.1
//! connection and hands back the status and the whole body, or why the
//! exchange failed below HTTP.
//!
//! Each load client owns exactly one connection, driven with hyper's
//! connection-level API rather than a pooled client: a pool races a fresh
//! connect against the return of the previous connection to the pool, so a
//! client sending back-to-back requests would open many more connections
//! than it uses and the benchmark would measure connection setup.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longest time one request (connect, send and read the whole body) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A completed HTTP exchange.
#[derive(Debug)]
pub struct HttpReply {
    /// Response status.
    pub status: StatusCode,
    /// The whole response body.
    pub body: Bytes,
    /// The `Retry-After` header in whole seconds, when present.
    pub retry_after: Option<u64>,
}

/// Why an exchange produced no HTTP reply: connection failure, protocol
/// error or timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError(String);

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

/// One client's keep-alive connection to the server: opened on the first
/// request, reused for every following one, reopened after a failure.
#[derive(Debug)]
pub struct HttpClient {
    /// Host name or address to connect to (without IPv6 brackets).
    host: String,
    /// TCP port to connect to.
    port: u16,
    /// `Host` header value.
    authority: HeaderValue,
    /// Request target in origin form (`/path?query`).
    target: Uri,
    /// The open connection, if any.
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl HttpClient {
    /// A client POSTing to `url`, an absolute `http://` URL; it connects
    /// lazily on the first request.
    pub fn new(url: &Uri) -> Result<Self, TransportError> {
        let authority = url
            .authority()
            .ok_or_else(|| TransportError(format!("URL {url} has no host")))?;
        let target = url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| TransportError(format!("bad request target in {url}: {e}")))?;
        Ok(Self {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|e| TransportError(format!("bad host in {url}: {e}")))?,
            target,
            connection: None,
        })
    }

    /// POSTs `body` as `application/json` and reads the whole reply, within
    /// [`REQUEST_TIMEOUT`]. After any failure the connection is dropped and
    /// the next request opens a new one.
    pub async fn post(&mut self, body: Bytes) -> Result<HttpReply, TransportError> {
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(body)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError(format!(
                "timed out after {}s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        };
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn exchange(&mut self, body: Bytes) -> Result<HttpReply, TransportError> {
        let json = HeaderValue::from_static("application/json");
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.target.clone())
            .header(HOST, self.authority.clone())
            .header(CONTENT_TYPE, json.clone())
            .header(ACCEPT, json)
            .body(Full::new(body))
            .map_err(|e| TransportError(format!("cannot build request: {e}")))?;

        let connection = self.ready_connection().await?;
        let response = connection
            .send_request(request)
            .await
            .map_err(|e| TransportError(describe(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| TransportError(format!("reading body: {}", describe(&e))))?
            .to_bytes();
        Ok(HttpReply {
            status,
            body,
            retry_after,
        })
    }

    /// The open connection, ready for a request; reopened when the server
    /// closed it since the last request.
    async fn ready_connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, TransportError> {
        if let Some(mut connection) = self.connection.take()
            && connection.ready().await.is_ok()
        {
            return Ok(self.connection.insert(connection));
        }
        let connection = self.connect().await?;
        Ok(self.connection.insert(connection))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| TransportError(format!("connect to {}:{}: {e}", self.host, self.port)))?;
        stream
            .set_nodelay(true)
            .map_err(|e| TransportError(format!("set TCP_NODELAY: {e}")))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TransportError(format!("HTTP handshake: {}", describe(&e))))?;
        // The connection task ends when `sender` is dropped or the server
        // closes the connection; its error, if any, surfaces on `sender`.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// An error with its chain of causes, which hyper keeps out of `Display`.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
