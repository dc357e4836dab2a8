//! Who may call, and how often: the layer in front of the JSON-RPC route of
//! `serve` and the gateway. It finds the caller's [`Principal`] (an API
//! key, a member node of the cluster, or an anonymous address), refuses
//! what the policy does not allow with 401 or 429, and holds the caller's
//! concurrency permits while the request runs.

use super::keys::KeysFile;
use super::limit::{IpLimits, KeyLimits, Refusal};
use crate::cluster::{ClusterToken, bearer};
use crate::rpc::{RpcError, codes};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Header an API key may come in instead of `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A client that presented the API key of this name.
    Key(Arc<str>),
    /// A node of this cluster (it presented the join token): sub-calls of
    /// a call already admitted, acting for the named key if any. Never
    /// rate-limited: the call tree's own budgets bound them.
    Member(Option<Arc<str>>),
    /// No keys are required here.
    Anonymous,
}

impl Principal {
    /// The key name calls are attributed to.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Principal::Key(name) | Principal::Member(Some(name)) => Some(name),
            _ => None,
        }
    }
}

/// The keys and their limit state, swapped whole on reload.
struct KeyTable {
    file: KeysFile,
    limits: HashMap<String, Arc<KeyLimits>>,
}

impl KeyTable {
    fn new(file: KeysFile, previous: Option<&KeyTable>) -> Self {
        let limits = file
            .keys
            .iter()
            .map(|key| {
                // A key whose limits did not change keeps its buckets.
                let kept = previous.and_then(|p| {
                    let old = p.file.keys.iter().find(|k| k.name == key.name)?;
                    let same = old.rate == key.rate
                        && old.burst == key.burst
                        && old.concurrency == key.concurrency;
                    same.then(|| p.limits.get(&key.name).cloned()).flatten()
                });
                let limits = kept.unwrap_or_else(|| {
                    Arc::new(KeyLimits::new(key.rate, key.burst, key.concurrency))
                });
                (key.name.clone(), limits)
            })
            .collect();
        Self { file, limits }
    }
}

/// The admission policy of one listener.
pub struct Policy {
    keys: Option<(PathBuf, RwLock<Arc<KeyTable>>)>,
    per_ip: Option<Arc<IpLimits>>,
    max_body: usize,
}

/// The policy and the cluster token it recognizes member nodes by: the
/// state of the [`admit`] layer.
pub struct Guard {
    /// Keys and limits.
    pub policy: Arc<Policy>,
    /// The cluster's join token (reloadable).
    pub cluster: Arc<ClusterToken>,
}

impl Policy {
    /// A policy: API keys from `keys` when given (else anyone may call),
    /// and per-IP limits for callers without keys.
    pub fn new(
        keys: Option<PathBuf>,
        per_ip: Option<Arc<IpLimits>>,
        max_body: usize,
    ) -> Result<Self, super::keys::KeysError> {
        let keys = match keys {
            None => None,
            Some(path) => {
                let file = KeysFile::read(&path)?;
                if file.keys.is_empty() {
                    tracing::warn!(file = %path.display(), "the keys file has no key: every call will be refused until one is added (`madrpc keys new`) and the file reloaded (SIGHUP)");
                }
                let table = KeyTable::new(file, None);
                Some((path, RwLock::new(Arc::new(table))))
            }
        };
        Ok(Self {
            keys,
            per_ip,
            max_body,
        })
    }

    /// Reads the keys file again. Calls in flight keep running; a key
    /// removed from the file is refused from its next call on. On error
    /// the old keys stay.
    pub fn reload_keys(&self) -> Result<usize, super::keys::KeysError> {
        let Some((path, table)) = &self.keys else {
            return Ok(0);
        };
        let file = KeysFile::read(path)?;
        let count = file.keys.len();
        let mut current = table.write().unwrap_or_else(|p| p.into_inner());
        let next = KeyTable::new(file, Some(&current));
        *current = Arc::new(next);
        Ok(count)
    }

    /// Whether API keys are required.
    pub fn requires_keys(&self) -> bool {
        self.keys.is_some()
    }

    fn identify(
        &self,
        cluster: &ClusterToken,
        headers: &HeaderMap,
    ) -> Result<(Principal, Option<Arc<KeyLimits>>), RpcError> {
        let presented = bearer(headers).or_else(|| {
            headers
                .get(API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        });
        if cluster.presented_in(headers) {
            let on_behalf = headers
                .get(crate::rpc::KEY_NAME_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(Arc::from);
            return Ok((Principal::Member(on_behalf), None));
        }
        let Some((_, table)) = &self.keys else {
            return Ok((Principal::Anonymous, None));
        };
        let Some(secret) = presented.filter(|s| !s.is_empty()) else {
            return Err(unauthorized(
                "Unauthorized: this grid requires an API key; send it as `Authorization: Bearer KEY` or `X-API-Key: KEY` (madrpc call: --key or MADRPC_KEY)",
            ));
        };
        let table = table.read().unwrap_or_else(|p| p.into_inner()).clone();
        match table.file.find(secret) {
            Some(key) => Ok((
                Principal::Key(Arc::from(key.name.as_str())),
                table.limits.get(&key.name).cloned(),
            )),
            None => Err(unauthorized(
                "Unauthorized: the API key is not valid (revoked or mistyped); ask the grid's operator for a key (`madrpc keys new NAME --file keys.toml`)",
            )),
        }
    }
}

fn unauthorized(message: &str) -> RpcError {
    RpcError::new(codes::UNAUTHORIZED, "unauthorized", message)
}

/// The middleware: identifies the caller, applies its limits, and passes
/// the request on with its [`Principal`] attached.
pub async fn admit(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let policy = &guard.policy;
    let (principal, key_limits) = match policy.identify(&guard.cluster, request.headers()) {
        Ok(found) => found,
        Err(error) => {
            crate::telemetry::metrics::record_refusal(false, None);
            let mut response = crate::rpc::error_response(StatusCode::UNAUTHORIZED, error);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"madrpc\""),
            );
            return response;
        }
    };
    let peer_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let ip_limits = match (&principal, &policy.per_ip, peer_ip) {
        (Principal::Anonymous, Some(limits), Some(ip)) => Some((limits.clone(), ip)),
        _ => None,
    };
    let (mut request, calls) = if key_limits.is_some() || ip_limits.is_some() {
        match count_calls(request, policy.max_body).await {
            Ok(counted) => counted,
            Err(response) => return *response,
        }
    } else {
        (request, 1)
    };
    let refusal = |refusal: Refusal| rate_limited(&principal, refusal);
    let _permits = match &key_limits {
        Some(limits) => match limits.admit(calls) {
            Ok(permits) => permits,
            Err(refused) => return refusal(refused),
        },
        None => None,
    };
    if let Some((limits, ip)) = &ip_limits
        && let Err(refused) = limits.admit(*ip, calls)
    {
        return refusal(refused);
    }
    if let Some(key) = principal.key_name().and_then(crate::rpc::KeyName::intern) {
        request.extensions_mut().insert(crate::rpc::CallerKey(key));
    }
    if matches!(principal, Principal::Member(_)) || !guard.cluster.is_set() {
        request.extensions_mut().insert(crate::rpc::TreeMember);
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Reads the body to count a batch's entries (each is one call), and puts
/// it back for the endpoint.
async fn count_calls(request: Request, max_body: usize) -> Result<(Request, u32), Box<Response>> {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body).await {
        Ok(bytes) => bytes,
        Err(error) => return Err(Box::new(crate::rpc::body_error(&error, max_body))),
    };
    let calls = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&bytes)
            .map_or(1, |entries| {
                u32::try_from(entries.len()).unwrap_or(u32::MAX)
            }),
        _ => 1,
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), calls))
}

fn rate_limited(principal: &Principal, refusal: Refusal) -> Response {
    let who = match principal.key_name() {
        Some(name) => format!("the key '{name}'"),
        None => "this address".to_owned(),
    };
    tracing::debug!(key = principal.key_name().unwrap_or("-"), reason = %refusal.reason, "rate limited");
    crate::telemetry::metrics::record_refusal(true, principal.key_name());
    let error = RpcError::new(
        codes::RATE_LIMITED,
        "rate_limited",
        format!(
            "Rate limited: {who} is {}; retry in {} s",
            refusal.reason, refusal.retry_after_secs
        ),
    )
    .with("retry_after_secs", refusal.retry_after_secs);
    let mut response = crate::rpc::error_response(StatusCode::TOO_MANY_REQUESTS, error);
    if let Ok(value) = HeaderValue::from_str(&refusal.retry_after_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
