//! Sub-calls run in this process: `madrpc run` (no grid) uses it, so a
//! fan-out script behaves locally as it does on a grid.

use super::context::{Budget, CallContext, Subcall, SubcallHandler};
use super::stack::CALL_THREAD_STACK_BYTES;
use super::{Limits, LoadedModule, Runtime};
use crate::rpc::RpcError;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Runs sub-calls on threads of this process, at most `parallelism` at a
/// time per batch, each in a fresh instance like any call.
pub struct LocalSubcalls {
    runtime: Arc<Runtime>,
    module: LoadedModule,
    limits: Limits,
    parallelism: usize,
    me: Weak<LocalSubcalls>,
}

impl LocalSubcalls {
    /// A handler running `module`'s functions under `limits`.
    pub fn new(
        runtime: Arc<Runtime>,
        module: LoadedModule,
        limits: Limits,
        parallelism: usize,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            runtime,
            module,
            limits,
            parallelism: parallelism.max(1),
            me: me.clone(),
        })
    }

    /// The context of a top-level call whose sub-calls run here.
    pub fn context(self: &Arc<Self>) -> CallContext {
        CallContext {
            depth: 0,
            deadline: None,
            handler: Some(self.clone()),
            cancelled: None,
            tree: Some(self.runtime.trees().join(None, &self.limits)),
            inline: false,
        }
    }
}

impl SubcallHandler for LocalSubcalls {
    fn run(&self, calls: Vec<Subcall>, budget: Budget) -> Vec<Result<Bytes, RpcError>> {
        let outcomes: Vec<Mutex<Option<Result<Bytes, RpcError>>>> =
            calls.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let handler: Option<Arc<dyn SubcallHandler>> =
            self.me.upgrade().map(|me| me as Arc<dyn SubcallHandler>);
        let worker = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(call) = calls.get(i) else {
                return;
            };
            let context = CallContext {
                depth: budget.depth,
                deadline: Some(budget.deadline),
                handler: handler.clone(),
                cancelled: None,
                tree: Some(self.runtime.trees().join(budget.tree, &self.limits)),
                inline: false,
            };
            let report = self.runtime.call_in_context(
                &self.module,
                &call.method,
                &call.params,
                &self.limits,
                context,
            );
            let outcome = report
                .result
                .map(Bytes::from)
                .map_err(|e| RpcError::from(&e));
            *outcomes[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        };
        std::thread::scope(|scope| {
            for _ in 0..self.parallelism.min(calls.len()) {
                let spawned = std::thread::Builder::new()
                    .name("madrpc-subcall".into())
                    .stack_size(CALL_THREAD_STACK_BYTES)
                    .spawn_scoped(scope, worker);
                if spawned.is_err() {
                    // Out of threads: this thread does the work itself.
                    worker();
                }
            }
        });
        outcomes
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or_else(|| Err(RpcError::internal("a sub-call did not run")))
            })
            .collect()
    }
}
