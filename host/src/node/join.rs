//! Registering with a gateway and staying registered. Every heartbeat says
//! which module versions the node holds; the gateway's answer says which
//! it should hold and which is current, and [`super::follow`] fetches and
//! loads the missing ones.

use super::follow::{Follower, Versions};
use super::pool::WorkerPool;
use crate::http::{self, HttpClient};
use crate::modules::ModuleId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a node tells the gateway on every heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announcement {
    /// Where the gateway reaches the node.
    pub url: String,
    /// The functions the node serves.
    pub methods: Vec<String>,
    /// The node's module, for the gateway's result cache; absent from
    /// older nodes, whose results are then not cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<crate::manifest::ModuleSummary>,
    /// Every module version the node holds (the current one included), so
    /// the gateway can send a call pinned to a version to a node that has
    /// it; absent from older nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loaded: Vec<crate::manifest::ModuleSummary>,
    /// Versions the gateway wanted that the node could not load, with
    /// why, so a deploy fails at once rather than at its timeout.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<ModuleId, String>,
}

impl Announcement {
    /// The announced module, when its hash is one (64 lowercase hex digits).
    pub fn checked_module(&self) -> Option<crate::manifest::ModuleSummary> {
        self.module
            .clone()
            .filter(crate::manifest::ModuleSummary::is_well_formed)
    }

    /// What `pool` serves, announced at `url`, and the versions that
    /// failed to load.
    pub(super) fn of(url: &str, pool: &WorkerPool, failed: BTreeMap<ModuleId, String>) -> Self {
        Self {
            url: url.to_owned(),
            methods: pool.versions().methods(),
            module: Some((*pool.versions().summary()).clone()),
            loaded: pool
                .versions()
                .loaded()
                .iter()
                .map(|m| (**m).clone())
                .collect(),
            failed,
        }
    }
}

/// Heartbeats `gateway` every `interval` until `stop` turns true, then
/// tells the gateway the node is leaving. A new version the gateway wants
/// is fetched and loaded beside the heartbeats (a compile can take longer
/// than the gateway waits for a heartbeat), and the node heartbeats again
/// as soon as it holds it.
pub(super) async fn heartbeat(
    client: HttpClient,
    gateway: String,
    url: String,
    pool: Arc<WorkerPool>,
    join_token: Option<String>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let headers: Vec<(&str, String)> = join_token
        .map(|token| vec![("authorization", format!("Bearer {token}"))])
        .unwrap_or_default();
    let gateway = gateway.trim_end_matches('/').to_owned();
    let join_url = format!("{gateway}/v1/nodes");
    let follower = Follower::new(pool.clone(), client.clone(), &gateway, headers.clone());
    let timeout = interval.max(Duration::from_secs(1));
    let mut registered = None;
    loop {
        let announcement = Announcement::of(&url, &pool, follower.failed());
        let body = Bytes::from(serde_json::to_vec(&announcement).unwrap_or_default());
        let outcome = http::post_json_with(&client, &join_url, body, timeout, &headers).await;
        let ok = matches!(&outcome, Ok((status, _, _)) if status.is_success());
        if registered != Some(ok) {
            match &outcome {
                Ok(_) if ok => tracing::info!(gateway = %gateway, "registered with the gateway"),
                Ok((status, _, body)) => tracing::warn!(
                    gateway = %gateway,
                    %status,
                    body = %String::from_utf8_lossy(body),
                    "the gateway refused this node; retrying"
                ),
                Err(error) => tracing::warn!(%error, "cannot reach the gateway; retrying"),
            }
            registered = Some(ok);
        }
        if let Ok((status, _, body)) = &outcome
            && status.is_success()
            && let Ok(versions) = serde_json::from_slice::<Versions>(body)
        {
            follower.follow(&versions);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = follower.loaded() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    let leave_url = format!("{gateway}/v1/nodes/leave");
    let announcement = Announcement::of(&url, &pool, BTreeMap::new());
    let body = Bytes::from(serde_json::to_vec(&announcement).unwrap_or_default());
    if let Err(error) = http::post_json_with(&client, &leave_url, body, timeout, &headers).await {
        tracing::debug!(%error, "could not tell the gateway this node is leaving");
    }
}
