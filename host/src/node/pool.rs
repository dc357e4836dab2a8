//! The node's bounded worker pool: at most `workers` calls run at once, off
//! the async reactor except for a call short enough to try on the
//! receiving thread (see `inline.rs`). Client calls and sub-calls are admitted separately
//! (see [`Sizing`]): a flood of client calls is refused at once as
//! overloaded and never takes the room the sub-calls of admitted calls
//! need, and those sub-calls get a worker before any client call waiting.

use super::admission::ClientAdmission;
use super::gate::{Gate, Priority};
use super::inline::InlinePolicy;
use super::sizing::Sizing;
use super::subcalls::{NodeSubcalls, OwnPool, SubcallRoute};
use super::versions::ModuleVersions;
use crate::rpc::{CallBudget, KeyName, RpcError, codes};
use crate::runtime::{
    CallContext, CallError, CallReport, Limits, LoadedModule, Runtime, has_room_for_call,
};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::Semaphore;

/// Runs calls on blocking threads, bounded.
pub struct WorkerPool {
    route: SubcallRoute,
    runtime: Arc<Runtime>,
    versions: ModuleVersions,
    limits: Limits,
    gate: Arc<Gate>,
    /// The process's instance slots, shared by its pools.
    instances: Arc<Semaphore>,
    clients: AtomicUsize,
    admission: ClientAdmission,
    subcalls: AtomicUsize,
    served: AtomicU64,
    sizing: Sizing,
    inline: InlinePolicy,
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
    /// A pool running `module` as `sizing` says. A call holds one of
    /// `instances` from when it starts until it ends; the process gives it
    /// as many as its pools admit calls ([`super::instance_slots`]).
    pub fn new(
        runtime: Arc<Runtime>,
        module: LoadedModule,
        limits: Limits,
        sizing: Sizing,
        instances: Arc<Semaphore>,
        route: SubcallRoute,
    ) -> Self {
        Self {
            route,
            runtime,
            versions: ModuleVersions::new(module),
            limits,
            gate: Gate::new(sizing.workers),
            instances,
            clients: AtomicUsize::new(0),
            admission: ClientAdmission::new(sizing.client_calls, sizing.queue),
            subcalls: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            sizing,
            inline: InlinePolicy::default(),
        }
    }

    /// The module versions the pool holds.
    pub fn versions(&self) -> &ModuleVersions {
        &self.versions
    }

    /// The runtime the pool's calls run in, to load new versions into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// How many calls run at once.
    pub fn workers(&self) -> usize {
        self.sizing.workers
    }

    /// How many calls of each kind the pool admits.
    pub fn sizing(&self) -> Sizing {
        self.sizing
    }

    /// Calls admitted and not yet finished (running plus queued).
    pub fn in_flight(&self) -> usize {
        self.clients.load(Ordering::Acquire) + self.subcalls.load(Ordering::Acquire)
    }

    /// Calls admitted that hold no worker: waiting for one, or waiting on
    /// their own sub-calls.
    pub fn queued(&self) -> usize {
        let running = self.sizing.workers.saturating_sub(self.gate.free());
        self.in_flight().saturating_sub(running)
    }

    /// Whether a client call arriving now would be admitted.
    pub fn has_room(&self) -> bool {
        self.admission.has_room(self.gate.free() > 0)
    }

    /// Calls run to completion since the node started.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Runs a call, or refuses it at once when the pool admits no more of
    /// its kind. A client's call (depth 0) goes through the client-call
    /// admission (see [`ClientAdmission`]); a sub-call counts against the
    /// sub-calls, which client calls never take, and gets a worker before
    /// any client call waiting. While the call waits on its own sub-calls
    /// it gives its worker slot back, so a tree of calls cannot deadlock a
    /// small pool.
    pub async fn execute(
        self: &Arc<Self>,
        method: String,
        params: Bytes,
        budget: CallBudget,
    ) -> Result<Bytes, RpcError> {
        // The version the call names, or the current one.
        let Some(module) = self.versions.module(budget.module) else {
            let id = budget.module.map(|id| id.short()).unwrap_or_default();
            return Err(RpcError::new(
                codes::NODE_FAILED,
                "module_unavailable",
                format!(
                    "this node does not hold module version {id} that the call runs on; it was rolled back or replaced before the call reached the node. Retry the call"
                ),
            ));
        };
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
        let (_admission, _client_call, permit) = if budget.depth == 0 {
            self.clients.fetch_add(1, Ordering::AcqRel);
            let admission = Admission(&self.clients);
            let started = self.admission.admit(&self.gate, deadline).await?;
            (
                admission,
                Some((started.call, started.running)),
                started.worker,
            )
        } else {
            if self.subcalls.fetch_add(1, Ordering::AcqRel) >= self.sizing.subcalls {
                self.subcalls.fetch_sub(1, Ordering::AcqRel);
                return Err(RpcError::overloaded(1));
            }
            let admission = Admission(&self.subcalls);
            (admission, None, self.gate.acquire(Priority::Admitted).await)
        };
        // Admission leaves an instance slot for every call it lets in; this
        // check holds when the slots were set lower than that.
        let Ok(instance) = self.instances.clone().try_acquire_owned() else {
            return Err(RpcError::new(
                codes::OVERLOADED,
                "overloaded",
                "Overloaded: every sandbox instance slot of this process is in use; retry in 1 s, or raise --instance-slots",
            )
            .with("retry_after_secs", 1));
        };
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
        // A call is tried on this thread first (see `inline.rs`). A
        // sub-call's burns count against its tree; a client's call has no
        // tree yet, and without sub-calls burns less than its own limit.
        if self.inline.try_inline(&method) && has_room_for_call() {
            let tree = (budget.depth > 0).then(|| self.runtime.trees().join(budget.tree, &limits));
            let context = CallContext::inline(budget.depth, deadline, tree);
            let report = self
                .runtime
                .call_in_context(&module, &method, &params, &limits, context);
            if matches!(report.result, Err(CallError::NeedsWorker)) {
                self.inline.gave_up(&method);
            } else {
                drop(instance);
                return self.finish(report, &method, &budget);
            }
        }
        let runtime = self.runtime.clone();
        let handler = NodeSubcalls::new(
            Arc::downgrade(self) as Weak<dyn OwnPool>,
            self.route.clone(),
            tokio::runtime::Handle::current(),
            self.gate.clone(),
            permit,
            budget.key,
            budget,
        );
        // If this future is dropped (the caller went away), the call stops.
        let cancel = CancelOnDrop::new();
        let context = CallContext {
            depth: budget.depth,
            deadline: Some(deadline),
            handler: Some(handler),
            cancelled: Some(cancel.flag.clone()),
            tree: Some(self.runtime.trees().join(budget.tree, &limits)),
            inline: false,
        };
        // The call's log lines (its console's too) stay in its request's span.
        let span = tracing::Span::current();
        let (report, method) = tokio::task::spawn_blocking(move || {
            let report = span
                .in_scope(|| runtime.call_in_context(&module, &method, &params, &limits, context));
            drop(instance);
            (report, method)
        })
        .await
        .map_err(|e| RpcError::internal(format!("a worker failed: {e}")))?;
        cancel.disarm();
        self.finish(report, &method, &budget)
    }

    /// Counts and logs a call that ran, and turns its report into a reply.
    fn finish(
        &self,
        report: CallReport,
        method: &str,
        budget: &CallBudget,
    ) -> Result<Bytes, RpcError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        // Every call run here, a sub-call as much as a client's, is logged
        // with the key its tree is attributed to.
        tracing::debug!(
            %method,
            depth = budget.depth,
            key = %budget.key.map_or("-", KeyName::as_str),
            outcome = %report.result.as_ref().err().map_or("ok", |e| e.kind()),
            "call"
        );
        match report.result {
            Ok(result) => Ok(Bytes::from(result)),
            Err(error) => Err(RpcError::from(&error)),
        }
    }
}

impl OwnPool for WorkerPool {
    fn run(
        self: Arc<Self>,
        method: String,
        params: Bytes,
        budget: CallBudget,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, RpcError>> {
        Box::pin(async move { self.execute(method, params, budget).await })
    }
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("sizing", &self.sizing)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}
