//! Active health checks: every interval, probe each node's `/health` and
//! drop joined nodes whose heartbeats stopped. A probe passes only on the
//! node protocol's reply: a JSON object marked as a node's.

use super::node_client::{NodeClient, SendError, is_node_reply};
use super::registry::{CheckOutcome, Checked, Registry};
use crate::manifest::ModuleSummary;
use hyper::Method;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest `/health` reply read (it lists the node's methods).
const MAX_HEALTH_BYTES: usize = 1 << 20;

/// Probes nodes every `interval` until the task is aborted.
pub async fn run(registry: Arc<Registry>, client: NodeClient, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        registry.expire();
        let now = Instant::now();
        let probes = registry
            .nodes()
            .into_iter()
            .filter(|node| node.due_for_check(now))
            .map(|node| {
                let client = client.clone();
                async move {
                    let url = format!("{}/health", node.url);
                    let timeout = interval.max(Duration::from_millis(500));
                    let outcome = match client
                        .send(Method::GET, &url, Default::default(), &[], MAX_HEALTH_BYTES, timeout)
                        .await
                    {
                        Ok((parts, body)) if parts.status.is_success() && is_node_reply(&parts) => {
                            serde_json::from_slice::<serde_json::Value>(&body)
                                .ok()
                                .filter(serde_json::Value::is_object)
                                .map_or(CheckOutcome::Failed, |health| {
                                    CheckOutcome::Passed(checked(&health))
                                })
                        }
                        Ok((parts, body)) if is_draining(&parts, &body) => CheckOutcome::Draining,
                        Ok((parts, _)) => {
                            tracing::debug!(node = %node.url, status = %parts.status, "health check refused");
                            CheckOutcome::Failed
                        }
                        Err(SendError::Http(error)) => {
                            tracing::debug!(node = %node.url, %error, "health check failed");
                            CheckOutcome::Failed
                        }
                        Err(SendError::TooLarge(_)) => CheckOutcome::Failed,
                    };
                    node.record_check(outcome);
                }
            });
        futures::future::join_all(probes).await;
        registry.refresh_methods();
    }
}

/// Whether a reply is a node's 503 saying it drains.
fn is_draining(parts: &hyper::http::response::Parts, body: &[u8]) -> bool {
    parts.status == hyper::StatusCode::SERVICE_UNAVAILABLE
        && is_node_reply(parts)
        && serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|health| health["status"] == "draining")
}

/// The methods and module a node's `/health` reply reports; a module
/// that is missing or malformed counts as unknown.
fn checked(health: &serde_json::Value) -> Checked {
    let methods = health["methods"]
        .as_array()
        .map(|methods| {
            methods
                .iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let module = ModuleSummary::deserialize(&health["module"])
        .ok()
        .filter(ModuleSummary::is_well_formed);
    Checked { methods, module }
}
