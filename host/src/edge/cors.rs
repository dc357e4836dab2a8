//! CORS for web pages on other origins (`--allow-origin`, off by default):
//! tower-http answers preflights and sets the response headers. Only the
//! listed origins are allowed; API keys travel in `Authorization`, so no
//! cookies are involved and credentials mode stays off.

use axum::http::{HeaderName, HeaderValue, Method, header};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// An `--allow-origin` value that is not an origin.
#[derive(Debug, thiserror::Error)]
#[error(
    "--allow-origin '{0}' is not an origin: give scheme, host and optional port, e.g. https://app.example.com or http://localhost:5173"
)]
pub struct CorsError(pub String);

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `origins`, or `None` when the list is empty.
pub fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, CorsError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let mut allowed = Vec::with_capacity(origins.len());
    for origin in origins {
        allowed.push(parse_origin(origin)?);
    }
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static(super::API_KEY_HEADER),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static(crate::rpc::DEADLINE_HEADER),
            ])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
            .max_age(PREFLIGHT_MAX_AGE),
    ))
}

/// `scheme://host[:port]` with nothing after it, as browsers send it.
fn parse_origin(text: &str) -> Result<HeaderValue, CorsError> {
    let bad = || CorsError(text.to_owned());
    let trimmed = text.trim_end_matches('/');
    let uri: axum::http::Uri = trimmed.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri
        .path_and_query()
        .is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty());
    if !scheme_ok || uri.host().is_none() || !bare || trimmed.contains('@') {
        return Err(bad());
    }
    HeaderValue::from_str(trimmed).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        assert!(parse_origin("https://app.example.com").is_ok());
        assert_eq!(
            parse_origin("http://localhost:5173/").unwrap(),
            "http://localhost:5173"
        );
        for bad in [
            "*",
            "example.com",
            "ftp://x",
            "https://x/path",
            "https://u@x",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        assert!(cors_layer(&[]).unwrap().is_none());
    }
}
