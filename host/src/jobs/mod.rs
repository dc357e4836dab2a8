//! Durable jobs: long work submitted over HTTP (`/v1/jobs`), kept in a
//! store until its result is read, run by workers in every gateway that
//! shares the store. A job is one more way calls come in: the worker hands
//! it to the same dispatch as a client's call, with the job's own deadline
//! and fuel granted. Each run holds a lease that it renews; a run whose
//! gateway died loses its lease and the job runs again.

mod api;
mod model;
pub mod store;
mod worker;

pub use api::{router, unavailable};
pub use model::{
    Enqueued, Job, JobState, JobStore, ListQuery, NewJob, Outcome, Renewal, StoreError,
    StoreResult, now_ms,
};

use crate::rpc::{CallRequest, Dispatch, RpcError};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Longest a job may run (`--job-deadline`): an hour, where a call gets
/// ten seconds.
pub const DEFAULT_JOB_DEADLINE: Duration = Duration::from_secs(3600);
/// CPU budget of a job (`--job-fuel`): 36,000 billion fuel units, an hour
/// of CPU time (a call's 100 billion are 10 s), so that neither the fuel
/// nor the deadline cuts a job the other lets through.
pub const DEFAULT_JOB_FUEL: u64 = 36_000_000_000_000;
/// Runs a job gets before an infrastructure failure is final
/// (`--job-attempts`).
pub const DEFAULT_JOB_ATTEMPTS: u32 = 5;
/// How long finished jobs are kept (`--job-retention`): a week.
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a lease lasts unless renewed (`--job-lease`). A job whose
/// gateway died runs again this long after it last renewed; renewals come
/// every third of it.
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(15);

/// How jobs run.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Longest one run may take.
    pub deadline: Duration,
    /// CPU budget of one run, in fuel units.
    pub fuel: u64,
    /// Runs before an infrastructure failure is final.
    pub attempts: u32,
    /// How long finished jobs are kept.
    pub retention: Duration,
    /// Lease length.
    pub lease: Duration,
    /// Jobs this process runs at once.
    pub workers: usize,
    /// Largest submitted body.
    pub max_body_bytes: usize,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            deadline: DEFAULT_JOB_DEADLINE,
            fuel: DEFAULT_JOB_FUEL,
            attempts: DEFAULT_JOB_ATTEMPTS,
            retention: DEFAULT_JOB_RETENTION,
            lease: DEFAULT_JOB_LEASE,
            workers: 2,
            max_body_bytes: 8 << 20,
        }
    }
}

/// What runs a job's call: the gateway's dispatch, behind a trait object so
/// that jobs name no gateway type.
pub trait JobDispatch: Send + Sync + 'static {
    /// Runs one call.
    fn call(&self, request: CallRequest) -> BoxFuture<'static, Result<Bytes, RpcError>>;
    /// The methods that can be called; empty while none is known.
    fn methods(&self) -> Vec<String>;
}

/// A [`Dispatch`] as a [`JobDispatch`].
pub struct Via<D>(pub Arc<D>);

impl<D: Dispatch> JobDispatch for Via<D> {
    fn call(&self, request: CallRequest) -> BoxFuture<'static, Result<Bytes, RpcError>> {
        let dispatch = self.0.clone();
        Box::pin(async move { dispatch.call(request).await })
    }

    fn methods(&self) -> Vec<String> {
        self.0.methods()
    }
}

/// The job service of one process: the store, the dispatch, and who waits
/// for what.
pub struct Jobs {
    store: Arc<dyn JobStore>,
    settings: JobSettings,
    dispatch: Arc<dyn JobDispatch>,
    /// Wakes the long polls when a job of this process changed.
    changed: Notify,
    /// Wakes idle workers when a job was submitted here.
    submitted: Notify,
    /// The jobs running here, with the signal that stops each.
    running: Mutex<HashMap<String, Arc<Notify>>>,
    /// Names this process in lease owners.
    instance: String,
    /// Whether workers take jobs, and whether running ones are handed back.
    phase: watch::Sender<Phase>,
    /// Workers between deciding to take a job and finishing it.
    busy: AtomicUsize,
    /// Wakes the shutdown when the last busy worker is done.
    idle: Notify,
}

/// Where the job service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking and running jobs.
    Serving,
    /// Shutting down: no new job is taken; the running ones may finish.
    Closing,
    /// Shutting down, out of time: running jobs go back to the queue.
    HandBack,
}

impl Jobs {
    /// A job service over `store`, running calls through `dispatch`.
    pub fn new(
        store: Arc<dyn JobStore>,
        settings: JobSettings,
        dispatch: Arc<dyn JobDispatch>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            settings,
            dispatch,
            changed: Notify::new(),
            submitted: Notify::new(),
            running: Mutex::new(HashMap::new()),
            instance: crate::cluster::random_token()[..12].to_owned(),
            phase: watch::Sender::new(Phase::Serving),
            busy: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// Starts the workers and the purge; they stop when the returned
    /// handle is dropped, or more gently through [`Workers::shut_down`].
    /// Leases of jobs running at a drop run out, and the jobs run again
    /// (here after a restart, or on another gateway).
    pub fn start(self: &Arc<Self>) -> Workers {
        let mut tasks: Vec<_> = (0..self.settings.workers.max(1))
            .map(|_| tokio::spawn(worker::work(self.clone())))
            .collect();
        tasks.push(tokio::spawn(worker::purge(self.clone())));
        tracing::info!(
            workers = self.settings.workers.max(1),
            "job workers started"
        );
        Workers {
            jobs: self.clone(),
            tasks,
        }
    }

    /// Counts a worker as busy until the returned guard drops, unless the
    /// service is shutting down.
    fn begin_work(&self) -> Option<Busy<'_>> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        let busy = Busy(self);
        (*self.phase.borrow() == Phase::Serving).then_some(busy)
    }

    /// Completes when no worker is busy.
    async fn all_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.busy.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Stops the run of job `id` if it runs in this process.
    fn stop(&self, id: &str) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stop) = running.get(id) {
            stop.notify_one();
        }
    }
}

/// A busy worker, counted until dropped.
struct Busy<'a>(&'a Jobs);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Longest a shutdown waits for the store to take the jobs handed back.
const HAND_BACK_TIME: Duration = Duration::from_secs(2);

/// The running workers; dropping it stops them.
pub struct Workers {
    jobs: Arc<Jobs>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// A graceful stop within `within` (the drain timeout): no new job is
    /// taken, the running ones may finish, and those still running a
    /// second before the end (a quarter of `within` when shorter) go back
    /// to the queue, so that another gateway, or this one restarted, runs
    /// them again at once rather than after their lease.
    pub async fn shut_down(self, within: Duration) {
        let jobs = &self.jobs;
        jobs.phase.send_replace(Phase::Closing);
        let finish_by = within.saturating_sub(Duration::from_secs(1).min(within / 4));
        if tokio::time::timeout(finish_by, jobs.all_idle())
            .await
            .is_err()
        {
            jobs.phase.send_replace(Phase::HandBack);
            if tokio::time::timeout(HAND_BACK_TIME, jobs.all_idle())
                .await
                .is_err()
            {
                tracing::warn!(
                    "jobs could not be handed back in time; they run again when their leases run out"
                );
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
