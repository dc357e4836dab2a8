//! Registering with a gateway and staying registered.

use crate::http::{self, HttpClient};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
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
}

impl Announcement {
    /// The announced module, when its hash is one (64 lowercase hex digits).
    pub fn checked_module(&self) -> Option<crate::manifest::ModuleSummary> {
        self.module
            .clone()
            .filter(crate::manifest::ModuleSummary::is_well_formed)
    }
}

/// Heartbeats `gateway` every `interval` until `stop` turns true, then
/// tells the gateway the node is leaving.
pub(super) async fn heartbeat(
    client: HttpClient,
    gateway: String,
    announcement: Announcement,
    join_token: Option<String>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let headers: Vec<(&str, String)> = join_token
        .map(|token| vec![("authorization", format!("Bearer {token}"))])
        .unwrap_or_default();
    let gateway = gateway.trim_end_matches('/').to_owned();
    let join_url = format!("{gateway}/v1/nodes");
    let body = Bytes::from(serde_json::to_vec(&announcement).unwrap_or_default());
    let timeout = interval.max(Duration::from_secs(1));
    let mut registered = None;
    loop {
        let outcome =
            http::post_json_with(&client, &join_url, body.clone(), timeout, &headers).await;
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
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    let leave_url = format!("{gateway}/v1/nodes/leave");
    if let Err(error) = http::post_json_with(&client, &leave_url, body, timeout, &headers).await {
        tracing::debug!(%error, "could not tell the gateway this node is leaving");
    }
}
