//! The node's bounded worker pool: calls run off the async reactor, at most
//! `workers` at once, with at most `queue` more waiting; past that a call is
//! refused at once as overloaded rather than queued without bound.

use super::subcalls::{NodeSubcalls, SubcallRoute};
use crate::rpc::{CallBudget, KeyName, RpcError};
use crate::runtime::{CallContext, Limits, LoadedModule, Runtime};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Runs calls on blocking threads, bounded.
pub struct WorkerPool {
    route: SubcallRoute,
    runtime: Arc<Runtime>,
    module: LoadedModule,
    limits: Limits,
    slots: Arc<Semaphore>,
    admitted: AtomicUsize,
    served: AtomicU64,
    capacity: usize,
    workers: usize,
}

/// Cancels a running call when dropped before [`CancelOnDrop::disarm`].
struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl CancelOnDrop {
    fn new() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Counts an admitted call until it finishes, however it finishes.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WorkerPool {
    /// A pool running `module` with `workers` concurrent calls and room for
    /// `queue` waiting ones.
    pub fn new(
        runtime: Arc<Runtime>,
        module: LoadedModule,
        limits: Limits,
        workers: usize,
        queue: usize,
        route: SubcallRoute,
    ) -> Self {
        let workers = workers.max(1);
        Self {
            route,
            runtime,
            module,
            limits,
            slots: Arc::new(Semaphore::new(workers)),
            admitted: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            capacity: workers + queue,
            workers,
        }
    }

    /// The module's method names.
    pub fn methods(&self) -> &[String] {
        self.module.methods()
    }

    /// The module's hash and cacheable functions.
    pub fn module_summary(&self) -> &Arc<crate::manifest::ModuleSummary> {
        self.module.summary()
    }

    /// How many calls run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Calls admitted and not yet finished (running plus queued).
    pub fn in_flight(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Calls run to completion since the node started.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Runs a call, or refuses it at once when the pool is full. While the
    /// call waits on its own sub-calls it gives its worker slot back, so a
    /// tree of calls cannot deadlock a small pool.
    pub async fn execute(
        self: &Arc<Self>,
        method: String,
        params: Bytes,
        budget: CallBudget,
    ) -> Result<Bytes, RpcError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(RpcError::overloaded(1));
        }
        let _admission = Admission(&self.admitted);
        // The deadline runs from admission: time spent waiting for a worker
        // counts, and a call whose deadline passed in the queue never runs.
        let admitted_at = std::time::Instant::now();
        // A job's call runs under the deadline and fuel its gateway granted.
        let limits = match budget.grant {
            Some(grant) => Limits {
                deadline: grant.deadline,
                fuel: grant.fuel,
                max_tree_fuel: self.limits.max_tree_fuel.max(grant.fuel),
                ..self.limits.clone()
            },
            None => self.limits.clone(),
        };
        let own = admitted_at + limits.deadline;
        let deadline = budget.deadline.map_or(own, |inherited| inherited.min(own));
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RpcError::internal("the worker pool is shut down"))?;
        if std::time::Instant::now() >= deadline {
            let limit_ms = deadline.saturating_duration_since(admitted_at).as_millis();
            return Err(RpcError::new(
                crate::rpc::codes::DEADLINE_EXCEEDED,
                "deadline_exceeded",
                format!(
                    "the call's deadline passed while it waited for a worker ({limit_ms} ms); it did not run. Retry later or add nodes"
                ),
            )
            .with("limit_ms", limit_ms as u64));
        }
        let runtime = self.runtime.clone();
        let module = self.module.clone();
        let handler = NodeSubcalls::new(
            Arc::downgrade(self),
            self.route.clone(),
            tokio::runtime::Handle::current(),
            self.slots.clone(),
            permit,
            budget.key,
        );
        // If this future is dropped (the caller went away), the call stops.
        let cancel = CancelOnDrop::new();
        let context = CallContext {
            depth: budget.depth,
            deadline: Some(deadline),
            handler: Some(handler),
            cancelled: Some(cancel.flag.clone()),
            tree: Some(self.runtime.trees().join(budget.tree, &limits)),
        };
        // Every call run here, a sub-call as much as a client's, is logged
        // with the key its tree is attributed to.
        let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| method.clone());
        let report = tokio::task::spawn_blocking(move || {
            runtime.call_in_context(&module, &method, &params, &limits, context)
        })
        .await
        .map_err(|e| RpcError::internal(format!("a worker failed: {e}")))?;
        cancel.disarm();
        self.served.fetch_add(1, Ordering::Relaxed);
        if let Some(method) = logged {
            tracing::debug!(
                %method,
                depth = budget.depth,
                key = %budget.key.map_or("-", KeyName::as_str),
                outcome = %report.result.as_ref().err().map_or("ok", |e| e.kind()),
                "call"
            );
        }
        match report.result {
            Ok(result) => Ok(Bytes::from(result)),
            Err(error) => Err(RpcError::from(&error)),
        }
    }
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.workers)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}
