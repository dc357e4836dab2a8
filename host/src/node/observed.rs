//! What a node's calls are observed by: its name in metrics, its call log,
//! and whether it drains. Every way a call reaches the node (JSON-RPC, the
//! gateway's HTTP call route, the call channel) runs it through here, so
//! each is logged and counted once.

use super::pool::WorkerPool;
use crate::rpc::{CallBudget, RpcError};
use crate::telemetry::{CallLog, CallRecord, RequestId};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What the node's observability reads: its name, its calls, and whether
/// it drains.
#[derive(Clone)]
pub(super) struct Observed {
    /// The URL the node announces; the `node` label of its gauges.
    pub(super) url: String,
    /// The node's call log and statistics.
    pub(super) log: Arc<CallLog>,
    /// Set when the node starts draining.
    pub(super) draining: Arc<AtomicBool>,
}

impl Observed {
    /// Runs a call on `pool`, logging and counting it.
    pub(super) async fn run(
        &self,
        pool: &Arc<WorkerPool>,
        method: String,
        params: Bytes,
        budget: CallBudget,
    ) -> Result<Bytes, RpcError> {
        let started = std::time::Instant::now();
        // Any version's function counts as known: a call pinned to the
        // previous version is no stranger than one on the current.
        let label = if pool.versions().serves_anywhere(&method) {
            method.clone()
        } else {
            "unknown".to_owned()
        };
        let outcome = pool.execute(method, params, budget).await;
        let error = outcome.as_ref().err();
        self.log.finish(&CallRecord {
            method: &label,
            kind: error.map_or("ok", |e| e.kind().unwrap_or("error")),
            message: error.map(|e| e.message.as_str()),
            node: Some(&self.url),
            key: budget.key.map(crate::rpc::KeyName::as_str),
            request_id: budget.request_id.as_ref().map(RequestId::as_str),
            elapsed: started.elapsed(),
        });
        outcome
    }
}
