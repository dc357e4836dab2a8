//! The HTTP client the gateway, the nodes and the `call` command share:
//! keep-alive connection pools, no Nagle delay, bounded waits, and
//! `https://` with the process's trust roots ([`crate::trust`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A pooled HTTP/1.1 client for `http://` and `https://` URLs.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No connection, or it broke before a response arrived. Nothing can
    /// have been answered, so the request is safe to send elsewhere.
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// The address tried.
        url: String,
        /// What the connection reported.
        detail: String,
    },
    /// No response within the time allowed.
    #[error("{url} did not answer within {} ms", .timeout.as_millis())]
    Timeout {
        /// The address tried.
        url: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The URL is not a valid `http://` or `https://` URL.
    #[error("invalid URL {url}: {detail}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// A new client with a keep-alive pool.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*crate::trust::client_tls()).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// POSTs `body` as JSON to `url` and returns the status and whole body.
pub async fn post_json(
    client: &HttpClient,
    url: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), HttpError> {
    post_json_with(client, url, body, timeout, &[]).await
}

/// [`post_json`] with extra request headers.
pub async fn post_json_with(
    client: &HttpClient,
    url: &str,
    body: Bytes,
    timeout: Duration,
    headers: &[(&str, String)],
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), HttpError> {
    post_with(client, url, "application/json", body, timeout, headers).await
}

/// POSTs `body` of `content_type` to `url` with extra request headers.
pub async fn post_with(
    client: &HttpClient,
    url: &str,
    content_type: &str,
    body: Bytes,
    timeout: Duration,
    headers: &[(&str, String)],
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), HttpError> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(header::CONTENT_TYPE, content_type);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| HttpError::BadUrl {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    exchange(client, url, request, timeout).await
}

/// GETs `url` and returns the status and whole body.
pub async fn get(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), HttpError> {
    get_with(client, url, timeout, &[]).await
}

/// [`get`] with extra request headers.
pub async fn get_with(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
    headers: &[(&str, String)],
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), HttpError> {
    let mut request = Request::builder().method(Method::GET).uri(url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| HttpError::BadUrl {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    exchange(client, url, request, timeout).await
}

async fn exchange(
    client: &HttpClient,
    url: &str,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), HttpError> {
    let unreachable = |detail: String| HttpError::Unreachable {
        url: url.to_owned(),
        detail,
    };
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| unreachable(describe(&e)))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| unreachable(format!("the response broke off: {e}")))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout {
            url: url.to_owned(),
            timeout,
        })?
}

/// The innermost cause of a client error (for example "Connection refused").
pub(crate) fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}
