//! Active health checks: every interval, probe each node's `/health` and
//! drop joined nodes whose heartbeats stopped.

use super::registry::Registry;
use crate::http::{self, HttpClient};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Probes nodes every `interval` until the task is aborted.
pub async fn run(registry: Arc<Registry>, client: HttpClient, interval: Duration) {
    let expiry = interval * 3;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        registry.expire(expiry);
        let now = Instant::now();
        let probes = registry
            .nodes()
            .into_iter()
            .filter(|node| node.due_for_check(now))
            .map(|node| {
                let client = client.clone();
                async move {
                    let url = format!("{}/health", node.url);
                    let outcome =
                        match http::get(&client, &url, interval.max(Duration::from_millis(500)))
                            .await
                        {
                            Ok((status, _, body)) if status.is_success() => {
                                serde_json::from_slice::<serde_json::Value>(&body)
                                    .ok()
                                    .map(|health| methods_of(&health))
                            }
                            _ => None,
                        };
                    node.record_check(outcome);
                }
            });
        futures::future::join_all(probes).await;
        registry.refresh_methods();
    }
}

fn methods_of(health: &serde_json::Value) -> Vec<String> {
    health["methods"]
        .as_array()
        .map(|methods| {
            methods
                .iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
