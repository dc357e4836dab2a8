//! The cluster credential: the join token. Nodes present it to the gateway
//! to join, leave and send sub-calls; the gateway presents it to nodes on
//! every request it makes to them, so a node takes calls only from its
//! cluster. It lives here, below both, because both sides check it.

use axum::http::{HeaderMap, HeaderValue, header};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// The header a node sets on every reply of its own routes (`1`), so the
/// gateway can tell a node from whatever else answers HTTP at an address.
pub const NODE_REPLY_HEADER: &str = "x-madrpc-node-reply";

/// The current cluster token, shared by everything that presents or checks
/// it. Replaceable at runtime (the gateway re-reads its token file on
/// SIGHUP), so a leaked token can be revoked without a restart.
#[derive(Debug, Default)]
pub struct ClusterToken {
    current: RwLock<Option<Token>>,
}

#[derive(Debug, Clone)]
struct Token {
    secret: Arc<str>,
    authorization: HeaderValue,
}

impl ClusterToken {
    /// A token cell holding `token`; `None` means no credential is
    /// required or presented (open membership, public nodes).
    pub fn new(token: Option<String>) -> Self {
        let cell = Self::default();
        cell.set(token);
        cell
    }

    /// Replaces the token. Requests checked from now on need the new one.
    pub fn set(&self, token: Option<String>) {
        let token = token.and_then(|secret| {
            let mut authorization = HeaderValue::from_str(&format!("Bearer {secret}")).ok()?;
            authorization.set_sensitive(true);
            Some(Token {
                secret: secret.into(),
                authorization,
            })
        });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = token;
    }

    fn token(&self) -> Option<Token> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a token is set.
    pub fn is_set(&self) -> bool {
        self.token().is_some()
    }

    /// The `Authorization` header to present, if a token is set.
    pub fn authorization(&self) -> Option<HeaderValue> {
        self.token().map(|token| token.authorization)
    }

    /// Whether `headers` carry this token as `Authorization: Bearer`.
    /// False when no token is set: nothing can match a missing credential.
    pub fn presented_in(&self, headers: &HeaderMap) -> bool {
        match (self.token(), bearer(headers)) {
            (Some(token), Some(presented)) => same_secret(&token.secret, presented),
            _ => false,
        }
    }

    /// Whether a request may pass: the token is presented, or none is set.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        !self.is_set() || self.presented_in(headers)
    }
}

/// The credential of an `Authorization: Bearer <credential>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

/// Compares two secrets in time that depends only on their lengths, so a
/// caller cannot find a token byte by byte from response times.
pub fn same_secret(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// A fresh random token: 32 bytes from the operating system's generator,
/// in hex.
pub fn random_token() -> String {
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn admits_only_the_current_token() {
        let token = ClusterToken::new(Some("s3cret".into()));
        assert!(token.admits(&headers("Bearer s3cret")));
        assert!(token.admits(&headers("bearer s3cret")));
        assert!(!token.admits(&headers("Bearer s3cre")));
        assert!(!token.admits(&headers("Bearer s3cret2")));
        assert!(!token.admits(&headers("Basic s3cret")));
        assert!(!token.admits(&HeaderMap::new()));
        token.set(Some("next".into()));
        assert!(!token.admits(&headers("Bearer s3cret")));
        assert!(token.admits(&headers("Bearer next")));
    }

    #[test]
    fn without_a_token_everything_is_admitted_and_nothing_presented() {
        let token = ClusterToken::new(None);
        assert!(token.admits(&HeaderMap::new()));
        assert!(!token.presented_in(&headers("Bearer anything")));
        assert!(token.authorization().is_none());
    }

    #[test]
    fn random_tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
