//! Running a call's `madrpc.call`s from a node: through the gateway when the
//! node joined one (so sub-calls are balanced across the grid like any
//! call), straight into the gateway's balancer when the node runs in the
//! gateway's process (`madrpc serve`), else on the node's own pool.

use super::gate::{Gate, Priority, Slot};
use crate::http::{self, HttpClient};
use crate::rpc::{CallBudget, KeyName, RpcError, codes};
use crate::runtime::{Budget, Subcall, SubcallHandler};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::runtime::Handle;

/// Most sub-calls sent to the gateway in one batch.
const GATEWAY_BATCH: usize = 250;

/// Most sub-calls of one call in flight at once in this process: enough
/// to keep every local worker busy, fewer than a pool's queue holds.
const IN_PROCESS_WINDOW: usize = 128;

/// Where a node sends sub-calls.
#[derive(Clone)]
pub enum SubcallRoute {
    /// A gateway's JSON-RPC endpoint, e.g. `http://127.0.0.1:8080/`.
    Gateway {
        /// The endpoint URL.
        url: String,
        /// A pooled client.
        client: HttpClient,
        /// The cluster token, presented as `Authorization: Bearer`: it
        /// tells the gateway the batch is a member node's sub-calls.
        token: Option<String>,
    },
    /// The balancer of a gateway in this process: sub-calls are routed like
    /// client calls, without a socket, so the listener's drain and
    /// connection limits never touch them.
    InProcess(Arc<dyn SubcallDispatch>),
    /// This node's own pool.
    Local,
}

/// Runs one sub-call in this process the way a client call is run. The
/// gateway implements it with its balancer; the trait keeps the node from
/// depending on the gateway.
pub trait SubcallDispatch: Send + Sync {
    /// Runs `method(params)` within `budget`.
    fn call(
        &self,
        method: String,
        params: Bytes,
        budget: CallBudget,
    ) -> BoxFuture<'static, Result<Bytes, RpcError>>;
}

/// The node's own pool, as a handler runs sub-calls on it when the node
/// stands alone; the pool implements it, so this file needs no pool.
pub(super) trait OwnPool: Send + Sync {
    /// Runs `method(params)` on the pool within `budget`.
    fn run(
        self: Arc<Self>,
        method: String,
        params: Bytes,
        budget: CallBudget,
    ) -> BoxFuture<'static, Result<Bytes, RpcError>>;
}

/// The sub-call handler of one running call. It holds the call's worker
/// slot and gives it back while the call waits.
pub(super) struct NodeSubcalls {
    pool: Weak<dyn OwnPool>,
    route: SubcallRoute,
    handle: Handle,
    gate: Arc<Gate>,
    permit: Mutex<Option<Slot>>,
    /// The API key the call is attributed to; its sub-calls are too.
    key: Option<KeyName>,
    /// The budget the call arrived with: its sub-calls carry its request
    /// id and trace context.
    origin: CallBudget,
}

impl NodeSubcalls {
    pub(super) fn new(
        pool: Weak<dyn OwnPool>,
        route: SubcallRoute,
        handle: Handle,
        gate: Arc<Gate>,
        permit: Slot,
        key: Option<KeyName>,
        origin: CallBudget,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            route,
            handle,
            gate,
            permit: Mutex::new(Some(permit)),
            key,
            origin,
        })
    }
}

impl SubcallHandler for NodeSubcalls {
    fn run(&self, calls: Vec<Subcall>, budget: Budget) -> Vec<Result<Bytes, RpcError>> {
        let count = calls.len();
        // Give the worker slot back while waiting: the sub-calls may need it.
        drop(self.permit.lock().unwrap_or_else(|p| p.into_inner()).take());
        let outcomes = self.handle.block_on(async {
            let remaining = budget.remaining();
            match tokio::time::timeout(remaining, self.dispatch(calls, budget)).await {
                Ok(outcomes) => outcomes,
                Err(_) => (0..count).map(|_| Err(deadline_error())).collect(),
            }
        });
        // Taking the worker back is work of an admitted tree: it goes
        // before client calls that have not started.
        let permit = self.handle.block_on(self.gate.acquire(Priority::Admitted));
        *self.permit.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
        outcomes
    }
}

impl NodeSubcalls {
    async fn dispatch(&self, calls: Vec<Subcall>, budget: Budget) -> Vec<Result<Bytes, RpcError>> {
        let budget = CallBudget {
            depth: budget.depth,
            deadline: Some(budget.deadline),
            key: self.key,
            tree: budget.tree,
            request_id: self.origin.request_id,
            trace: self.origin.trace,
            grant: None,
            module: self.origin.module,
        };
        match &self.route {
            SubcallRoute::Gateway { url, client, token } => {
                let authorization = token.as_ref().map(|t| format!("Bearer {t}"));
                // Batches stay well under a gateway's batch limit.
                let mut chunks = Vec::new();
                let mut calls = calls.into_iter().peekable();
                while calls.peek().is_some() {
                    chunks.push(calls.by_ref().take(GATEWAY_BATCH).collect::<Vec<_>>());
                }
                futures::future::join_all(
                    chunks.into_iter().map(|chunk| {
                        via_gateway(client, url, authorization.as_deref(), chunk, budget)
                    }),
                )
                .await
                .into_iter()
                .flatten()
                .collect()
            }
            SubcallRoute::InProcess(dispatch) => {
                // A window rather than all at once: a 1,000-way fan-out
                // would otherwise overflow the pools' queues and spend its
                // time in overload pauses.
                futures::stream::iter(calls)
                    .map(|call| {
                        retry_overloaded(budget, move || {
                            dispatch.call(call.method.clone(), call.params.clone(), budget)
                        })
                    })
                    .buffered(IN_PROCESS_WINDOW)
                    .collect()
                    .await
            }
            SubcallRoute::Local => {
                let Some(pool) = self.pool.upgrade() else {
                    return calls
                        .iter()
                        .map(|_| Err(RpcError::internal("the node is shutting down")))
                        .collect();
                };
                let runs = calls.into_iter().map(|call| {
                    let pool = pool.clone();
                    async move {
                        retry_overloaded(budget, || {
                            pool.clone()
                                .run(call.method.clone(), call.params.clone(), budget)
                        })
                        .await
                    }
                });
                futures::future::join_all(runs).await
            }
        }
    }
}

/// Sends the sub-calls as one JSON-RPC batch to the gateway, which spreads
/// them across nodes; entries refused as overloaded are sent again after a
/// short pause until the deadline.
async fn via_gateway(
    client: &HttpClient,
    url: &str,
    authorization: Option<&str>,
    calls: Vec<Subcall>,
    budget: CallBudget,
) -> Vec<Result<Bytes, RpcError>> {
    let mut outcomes: Vec<Option<Result<Bytes, RpcError>>> = calls.iter().map(|_| None).collect();
    let mut pause = Duration::from_millis(1);
    loop {
        let waiting: Vec<usize> = (0..calls.len())
            .filter(|&i| !matches!(outcomes[i], Some(Ok(_)) | Some(Err(_))))
            .collect();
        if waiting.is_empty() {
            break;
        }
        let mut body = Vec::with_capacity(64 * waiting.len());
        body.push(b'[');
        for (n, &i) in waiting.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
            body.extend_from_slice(i.to_string().as_bytes());
            body.extend_from_slice(br#","method":"#);
            let _ = serde_json::to_writer(&mut body, &calls[i].method);
            if !calls[i].params.is_empty() {
                body.extend_from_slice(br#","params":"#);
                body.extend_from_slice(&calls[i].params);
            }
            body.push(b'}');
        }
        body.push(b']');
        let timeout = budget.remaining().unwrap_or(Duration::from_secs(60));
        let mut headers = budget.to_headers();
        if let Some(authorization) = authorization {
            headers.push(("authorization", authorization.to_owned()));
        }
        let reply = http::post_json_with(client, url, Bytes::from(body), timeout, &headers).await;
        let mut overloaded = false;
        match reply {
            Err(error) => {
                let error = RpcError::new(
                    codes::NODE_FAILED,
                    "gateway_unreachable",
                    format!("sub-calls could not reach the gateway: {error}"),
                );
                for &i in &waiting {
                    outcomes[i] = Some(Err(error.clone()));
                }
            }
            Ok((status, _, body)) => {
                let replies: Vec<Value> = match serde_json::from_slice::<Value>(&body) {
                    Ok(Value::Array(replies)) => replies,
                    // One error without an id: the gateway refused the whole
                    // batch (this node's token, its size), so every entry
                    // gets that error.
                    Ok(single) if single["id"].is_null() && single.get("error").is_some() => {
                        let error = batch_refusal(status, &single["error"]);
                        if error.code == codes::OVERLOADED {
                            overloaded = true;
                        } else {
                            for &i in &waiting {
                                outcomes[i] = Some(Err(error.clone()));
                            }
                        }
                        Vec::new()
                    }
                    Ok(single) => vec![single],
                    Err(e) => vec![
                        serde_json::json!({"error": {"code": codes::INTERNAL_ERROR, "message": format!("undecodable gateway reply: {e}")}}),
                    ],
                };
                for reply in replies {
                    let Some(i) = reply["id"]
                        .as_u64()
                        .map(|i| i as usize)
                        .filter(|i| *i < calls.len())
                    else {
                        continue;
                    };
                    if let Some(result) = reply.get("result") {
                        outcomes[i] = Some(Ok(Bytes::from(result.to_string())));
                    } else {
                        let error: RpcError = serde_json::from_value(reply["error"].clone())
                            .unwrap_or_else(|_| RpcError::internal("malformed sub-call reply"));
                        if error.code == codes::OVERLOADED {
                            overloaded = true;
                        } else {
                            outcomes[i] = Some(Err(error));
                        }
                    }
                }
            }
        }
        if !overloaded {
            break;
        }
        if budget.remaining().is_some_and(|left| left <= pause) {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(RpcError::overloaded(1))))
        .collect()
}

/// The error every sub-call of a batch gets when the gateway refused the
/// batch as a whole with `error` and HTTP `status`.
fn batch_refusal(status: hyper::StatusCode, error: &Value) -> RpcError {
    if status == hyper::StatusCode::UNAUTHORIZED {
        return RpcError::new(
            codes::UNAUTHORIZED,
            "unauthorized",
            "the gateway refused this node's sub-calls: the node's join token is not the gateway's current one; restart the node with the gateway's current token",
        );
    }
    serde_json::from_value(error.clone()).unwrap_or_else(|_| {
        RpcError::internal(format!(
            "the gateway refused the sub-calls with HTTP {status} and an error that is not a JSON-RPC error object"
        ))
    })
}

/// Runs `attempt` again after a short pause while it reports overload, until
/// the deadline.
async fn retry_overloaded<F, Fut>(budget: CallBudget, mut attempt: F) -> Result<Bytes, RpcError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, RpcError>>,
{
    let mut pause = Duration::from_millis(1);
    loop {
        match attempt().await {
            Err(error)
                if error.code == codes::OVERLOADED
                    && budget.remaining().is_none_or(|left| left > pause) =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            outcome => return outcome,
        }
    }
}

fn deadline_error() -> RpcError {
    RpcError::new(
        codes::DEADLINE_EXCEEDED,
        "deadline_exceeded",
        "the sub-call did not finish before its parent's deadline",
    )
}
