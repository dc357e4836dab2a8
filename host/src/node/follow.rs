//! A joined node following its gateway's deploys: it fetches the versions
//! the gateway wants it to hold (`GET /v1/modules/{id}` with the cluster
//! token), checks each against its id, loads it beside the versions it
//! serves, makes the gateway's current version its own, and drops the
//! versions nobody wants any more.

use super::pool::WorkerPool;
use crate::http::{self, HttpClient};
use crate::modules::ModuleId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The gateway's answer to a heartbeat once a version is deployed: the
/// versions a node should hold, and the current one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Versions {
    /// The version calls start on.
    pub current: Option<ModuleId>,
    /// Every version a node should hold: the current one, the previous
    /// one, one being deployed, and any that calls in flight still use.
    pub wanted: Vec<ModuleId>,
}

/// Longest a module download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Fetches and loads versions for one pool.
pub(super) struct Follower {
    pool: Arc<WorkerPool>,
    client: HttpClient,
    modules_url: String,
    headers: Vec<(&'static str, String)>,
    /// Versions being fetched or loaded now, so a heartbeat does not start
    /// a second load of the same one.
    loading: Arc<Mutex<HashSet<ModuleId>>>,
    /// Versions that failed to load, and why: not tried again, since the
    /// same bytes fail the same way. A failed download is tried again.
    failed: Arc<Mutex<BTreeMap<ModuleId, String>>>,
    done: Arc<Notify>,
}

impl Follower {
    pub(super) fn new(
        pool: Arc<WorkerPool>,
        client: HttpClient,
        gateway: &str,
        headers: Vec<(&'static str, String)>,
    ) -> Self {
        Self {
            pool,
            client,
            modules_url: format!("{gateway}/v1/modules"),
            headers,
            loading: Arc::default(),
            failed: Arc::default(),
            done: Arc::default(),
        }
    }

    /// Completes when a version finished loading.
    pub(super) async fn loaded(&self) {
        self.done.notified().await;
    }

    /// Starts loading what `versions` wants and the pool lacks; switches
    /// to the current version once held and drops the unwanted ones.
    pub(super) fn follow(&self, versions: &Versions) {
        for id in versions.wanted.iter().chain(&versions.current) {
            if self.pool.versions().holds(*id) || self.failed_before(*id) {
                continue;
            }
            if !self.loading_lock().insert(*id) {
                continue;
            }
            let task = Load {
                pool: self.pool.clone(),
                client: self.client.clone(),
                url: format!("{}/{id}", self.modules_url),
                headers: self.headers.clone(),
                id: *id,
            };
            let loading = self.loading.clone();
            let failed = self.failed.clone();
            let done = self.done.clone();
            tokio::spawn(async move {
                let id = task.id;
                match task.run().await {
                    Ok(()) => {}
                    Err(Failure::Fetch(error)) => {
                        tracing::warn!(module = %id.short(), "{error}; trying again at the next heartbeat");
                    }
                    Err(Failure::Load(error)) => {
                        tracing::error!(module = %id.short(), "{error}");
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, error);
                    }
                }
                loading
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                done.notify_one();
            });
        }
        if let Some(current) = versions.current
            && self.pool.versions().holds(current)
            && self.pool.versions().summary().hash != current.to_string()
        {
            self.pool.versions().set_current(current);
            tracing::info!(module = %current.short(), methods = ?self.pool.versions().methods(), "serving the deployed module version");
        }
        if versions.current.is_some() {
            let mut keep = versions.wanted.clone();
            keep.extend(versions.current);
            self.pool.versions().retain(&keep);
        }
    }

    fn loading_lock(&self) -> std::sync::MutexGuard<'_, HashSet<ModuleId>> {
        self.loading.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed_before(&self, id: ModuleId) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id)
    }

    /// The versions that failed to load, and why.
    pub(super) fn failed(&self) -> BTreeMap<ModuleId, String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One version to fetch and load.
struct Load {
    pool: Arc<WorkerPool>,
    client: HttpClient,
    url: String,
    headers: Vec<(&'static str, String)>,
    id: ModuleId,
}

/// Why a version is not loaded.
enum Failure {
    /// It could not be downloaded (worth another try).
    Fetch(String),
    /// It downloaded but does not load here.
    Load(String),
}

impl Load {
    async fn run(self) -> Result<(), Failure> {
        let wasm = fetch(&self.client, &self.url, &self.headers, Some(self.id))
            .await
            .map_err(Failure::Fetch)?;
        let runtime = self.pool.runtime().clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&wasm))
            .await
            .map_err(|e| Failure::Load(format!("loading the module version failed: {e}")))?
            .map_err(|e| Failure::Load(format!("cannot load the deployed module version: {e}")))?;
        self.pool.versions().install(loaded);
        Ok(())
    }
}

/// Fetches a module from the gateway and checks it is the version asked
/// for: `expected`, or the id the gateway names in its reply.
pub(super) async fn fetch(
    client: &HttpClient,
    url: &str,
    headers: &[(&'static str, String)],
    expected: Option<ModuleId>,
) -> Result<Bytes, String> {
    let reply = http::get_with(client, url, FETCH_TIMEOUT, headers)
        .await
        .map_err(|e| format!("cannot fetch the module from the gateway: {e}"))?;
    checked(reply, expected)
}

/// The module in a download reply, when the reply is one and the bytes
/// match the id.
fn checked(
    (status, headers, body): (hyper::StatusCode, hyper::HeaderMap, Bytes),
    expected: Option<ModuleId>,
) -> Result<Bytes, String> {
    if !status.is_success() {
        return Err(format!(
            "the gateway refused the module download ({status}): {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let named = headers
        .get(crate::modules::MODULE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ModuleId::parse);
    match expected.or(named) {
        Some(id) if ModuleId::of(&body) == id => Ok(body),
        _ => Err("the module the gateway sent does not match its id; not loading it".into()),
    }
}

/// Why a node could not get its module from the gateway at start.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The gateway refused the token: waiting will not help.
    #[error(
        "the gateway at {0} refused this node's join token; start the node with the gateway's token (MADRPC_JOIN_TOKEN)"
    )]
    Refused(String),
}

/// The gateway's current module, for a node started without `--module`:
/// waits (logging why) while the gateway cannot be reached or has no
/// deployed module yet.
pub async fn fetch_current(
    client: &HttpClient,
    gateway: &str,
    join_token: Option<&str>,
) -> Result<Bytes, FetchError> {
    let gateway = gateway.trim_end_matches('/');
    let url = format!("{gateway}/v1/modules/current");
    let headers: Vec<(&'static str, String)> = join_token
        .map(|token| vec![("authorization", format!("Bearer {token}"))])
        .unwrap_or_default();
    let mut last_reason = String::new();
    loop {
        let reason = match http::get_with(client, &url, FETCH_TIMEOUT, &headers).await {
            Ok((status, _, _)) if status == hyper::StatusCode::UNAUTHORIZED => {
                return Err(FetchError::Refused(gateway.to_owned()));
            }
            Ok((status, _, _)) if status == hyper::StatusCode::NOT_FOUND => {
                "the gateway has no deployed module yet (deploy one with `madrpc deploy app.js --url GATEWAY`)".to_owned()
            }
            Ok(reply) if reply.0.is_success() => match checked(reply, None) {
                Ok(wasm) => return Ok(wasm),
                Err(error) => error,
            },
            Ok((status, _, body)) => format!(
                "the gateway answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
            Err(error) => format!("cannot reach the gateway: {error}"),
        };
        if reason != last_reason {
            tracing::warn!("{reason}; waiting for the module to serve");
            last_reason = reason;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
