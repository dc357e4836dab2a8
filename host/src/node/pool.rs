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
use crate::manifest::ModuleSummary;
use crate::modules::ModuleId;
use crate::rpc::{CallBudget, KeyName, RpcError, codes};
use crate::runtime::{
    CallContext, CallError, CallReport, Limits, LoadedModule, Runtime, has_room_for_call,
};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use tokio::sync::Semaphore;

/// Runs calls on blocking threads, bounded.
pub struct WorkerPool {
    route: SubcallRoute,
    runtime: Arc<Runtime>,
    versions: RwLock<Versions>,
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

/// The module versions a pool holds: the current one, which calls that
/// name no version run on, and others that calls may name (the previous
/// one, for a rollback; a new one while a deploy waits for every node to
/// load it; an old one whose calls are still in flight).
struct Versions {
    current: LoadedModule,
    others: Vec<LoadedModule>,
}

impl Versions {
    fn get(&self, id: ModuleId) -> Option<&LoadedModule> {
        std::iter::once(&self.current)
            .chain(&self.others)
            .find(|m| m.id() == id)
    }
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
            versions: RwLock::new(Versions {
                current: module,
                others: Vec::new(),
            }),
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

    fn versions(&self) -> std::sync::RwLockReadGuard<'_, Versions> {
        self.versions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn versions_mut(&self) -> std::sync::RwLockWriteGuard<'_, Versions> {
        self.versions.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The current module's method names.
    pub fn methods(&self) -> Vec<String> {
        self.versions().current.methods().to_vec()
    }

    /// Hex SHA-256 of the module the pool runs now.
    pub fn module_hash(&self) -> String {
        self.versions().current.hash().to_owned()
    }

    /// The current module's hash, functions and cacheable functions.
    pub fn module_summary(&self) -> Arc<ModuleSummary> {
        self.versions().current.summary().clone()
    }

    /// Every version the pool holds, the current one first.
    pub fn loaded(&self) -> Vec<Arc<ModuleSummary>> {
        let versions = self.versions();
        std::iter::once(&versions.current)
            .chain(&versions.others)
            .map(|m| m.summary().clone())
            .collect()
    }

    /// Whether the pool holds version `id`.
    pub fn holds(&self, id: ModuleId) -> bool {
        self.versions().get(id).is_some()
    }

    /// Whether the pool can run `method` on `version` (on its current
    /// module when `None`).
    pub fn serves(&self, method: &str, version: Option<ModuleId>) -> bool {
        let versions = self.versions();
        let module = match version {
            Some(id) => versions.get(id),
            None => Some(&versions.current),
        };
        module.is_some_and(|m| m.methods().iter().any(|name| name == method))
    }

    /// Whether any version the pool holds has `method`.
    pub fn serves_anywhere(&self, method: &str) -> bool {
        let versions = self.versions();
        std::iter::once(&versions.current)
            .chain(&versions.others)
            .any(|m| m.methods().iter().any(|name| name == method))
    }

    /// The runtime the pool's calls run in, to load new versions into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Adds a version calls may name; the current one stays current.
    pub fn install(&self, module: LoadedModule) {
        let mut versions = self.versions_mut();
        if versions.get(module.id()).is_none() {
            tracing::info!(module = %module.id().short(), methods = ?module.methods(), "module version loaded");
            versions.others.push(module);
        }
    }

    /// Makes the held version `id` current; false when it is not held.
    pub fn set_current(&self, id: ModuleId) -> bool {
        let mut versions = self.versions_mut();
        if versions.current.id() == id {
            return true;
        }
        let Some(at) = versions.others.iter().position(|m| m.id() == id) else {
            return false;
        };
        let next = versions.others.swap_remove(at);
        let previous = std::mem::replace(&mut versions.current, next);
        versions.others.push(previous);
        true
    }

    /// Drops the versions other than the current one that are not in
    /// `keep`. Calls running on a dropped version finish on it: each holds
    /// its module.
    pub fn retain(&self, keep: &[ModuleId]) {
        let mut versions = self.versions_mut();
        versions.others.retain(|m| {
            let kept = keep.contains(&m.id());
            if !kept {
                tracing::info!(module = %m.id().short(), "module version dropped");
            }
            kept
        });
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
        let module = {
            let versions = self.versions();
            match budget.module {
                None => versions.current.clone(),
                Some(id) => match versions.get(id) {
                    Some(module) => module.clone(),
                    None => {
                        return Err(RpcError::new(
                            codes::NODE_FAILED,
                            "module_unavailable",
                            format!(
                                "this node does not hold module version {} that the call runs on; it was rolled back or replaced before the call reached the node. Retry the call",
                                id.short()
                            ),
                        ));
                    }
                },
            }
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
