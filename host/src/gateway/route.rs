//! Choosing a node for one call and sending it there: the method must
//! exist (in the version the call is pinned to, when it is), the node is
//! picked by power-of-two-choices among those that can take it, and a call
//! whose node failed before replying is sent once more elsewhere, out of
//! the retry budget.

use super::Balancer;
use super::balance;
use super::forward::{self, ForwardError};
use crate::http::HttpError;
use crate::rpc::{CallRequest, RpcError, codes};
use crate::telemetry;
use bytes::Bytes;

impl Balancer {
    /// Sends a call to a node, and once more to another when the first
    /// failed before replying; `served_by` is the last node tried.
    pub(super) async fn route(
        &self,
        request: CallRequest,
        served_by: &mut Option<String>,
    ) -> Result<Bytes, RpcError> {
        let nodes = self.registry.nodes();
        let version = request.budget.module;
        match version.and_then(|id| self.deployments.version(id)) {
            Some(pinned) => {
                let methods = &pinned.manifest.methods;
                if !methods.contains(&request.method) {
                    return Err(RpcError::method_not_found(&request.method, methods));
                }
            }
            None => {
                let methods = self.registry.methods();
                if !methods.is_empty() && methods.binary_search(&request.method).is_err() {
                    return Err(RpcError::method_not_found(&request.method, &methods));
                }
            }
        }
        let mut tried = Vec::new();
        let mut last_error = None;
        // One try, and one retry on another node only when the first node
        // failed before replying (it cannot have answered, and a call has no
        // effects outside its sandbox) or no longer held the call's module
        // version (nothing ran). Everything else is final: a guest
        // error or a limit breach would fail the same way elsewhere, an
        // overloaded node's `Retry-After` reaches the client, and a call
        // that timed out may still be running, so it is neither sent again
        // nor held against its node.
        for attempt in 0..2 {
            let Some(node) = balance::pick(&nodes, &request.method, version, &tried) else {
                break;
            };
            *served_by = Some(node.url.clone());
            if attempt == 0 {
                self.retries.deposit();
            } else if !self.retries.withdraw() {
                telemetry::metrics::record_retry(false);
                // Re-sends are spent: many nodes are failing at once, and
                // sending every call twice would only double the load.
                tracing::warn!(failed = %tried[0].url, method = %request.method, "not retrying: the retry budget is spent");
                break;
            } else {
                telemetry::metrics::record_retry(true);
                tracing::warn!(node = %node.url, failed = %tried[0].url, method = %request.method, "retrying the call on another node");
            }
            let _in_flight = node.begin_call();
            match forward::forward(
                &self.client,
                &node,
                &request.method,
                request.params.clone(),
                request.budget,
                self.call_timeout,
            )
            .await
            {
                Ok(result) => {
                    node.record_success();
                    return Ok(result);
                }
                Err(ForwardError::Call(error) | ForwardError::Overloaded(error)) => {
                    return Err(error);
                }
                Err(ForwardError::VersionGone(error)) => {
                    // Nothing ran and the node is sound: another node that
                    // holds the version takes the call.
                    tracing::warn!(node = %node.url, method = %request.method, "the node no longer held the call's module version; trying another");
                    last_error = Some(error);
                }
                Err(ForwardError::Unreachable(HttpError::Timeout { timeout, .. })) => {
                    return Err(RpcError::new(
                        codes::DEADLINE_EXCEEDED,
                        "deadline_exceeded",
                        format!(
                            "node {} did not answer within the gateway's call timeout of {} ms; raise --call-timeout or do less work per call",
                            node.url,
                            timeout.as_millis()
                        ),
                    )
                    .with("limit_ms", timeout.as_millis() as u64));
                }
                Err(ForwardError::Unreachable(error)) => {
                    node.eject();
                    last_error = Some(RpcError::new(
                        codes::NODE_FAILED,
                        "node_failed",
                        format!(
                            "the node running the call failed before replying ({error}), and no other node could take it"
                        ),
                    ));
                }
            }
            tried.push(node);
        }
        Err(last_error.unwrap_or_else(|| match version {
            Some(id) if nodes.iter().any(|n| n.is_available(std::time::Instant::now())) => RpcError::new(
                codes::NO_HEALTHY_NODE,
                "no_healthy_node",
                format!(
                    "No healthy node holds module version {} that this call runs on; retry the call, or check the nodes' logs for a failed load",
                    id.short()
                ),
            ),
            _ => RpcError::new(
                codes::NO_HEALTHY_NODE,
                "no_healthy_node",
                "No healthy node: the gateway has no node that can take calls; start one with `madrpc node --join <gateway url>` or check the nodes' health",
            ),
        }))
    }
}
