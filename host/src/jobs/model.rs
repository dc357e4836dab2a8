//! What a job is, and the small trait every job store implements. The
//! stores keep jobs; the worker decides what happens to them.

use crate::rpc::RpcError;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker (first run, or a retry after its backoff).
    Queued,
    /// Leased by a worker that runs it.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error: a guest error, a limit breach, or too many
    /// infrastructure failures.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Every state, by name.
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The state's name in the API and in the stores.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the job is over: nothing will change it again but a purge.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job as a store keeps it. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Sortable by creation time: 12 hex digits of milliseconds, then 16
    /// random ones.
    pub id: String,
    /// The API key the job belongs to; empty without keys.
    pub scope: String,
    /// The function to call.
    pub method: String,
    /// The params as raw JSON (empty: none).
    pub params: String,
    /// Where the job is.
    pub state: JobState,
    /// Runs started so far.
    pub attempts: u32,
    /// When it was submitted.
    pub created: u64,
    /// When its first run started.
    pub started: Option<u64>,
    /// When it reached a final state.
    pub finished: Option<u64>,
    /// The raw JSON result, once succeeded.
    pub result: Option<String>,
    /// The error, once failed (or the last one, while a retry waits).
    pub error: Option<RpcError>,
    /// The client's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<String>,
    /// A digest of the submitted body, to tell a resubmit from a misuse of
    /// the key.
    pub body_hash: String,
    /// Who holds the lease while it runs.
    pub lease_owner: Option<String>,
    /// When the lease runs out unless renewed.
    pub lease_until: Option<u64>,
    /// Earliest time a worker may take it (a retry's backoff).
    pub not_before: u64,
}

/// A job to add.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// See [`Job::scope`].
    pub scope: String,
    /// See [`Job::method`].
    pub method: String,
    /// See [`Job::params`].
    pub params: String,
    /// See [`Job::idempotency_key`].
    pub idempotency_key: Option<String>,
    /// See [`Job::body_hash`].
    pub body_hash: String,
}

impl NewJob {
    /// The job as first stored, at `now`.
    pub fn into_job(self, now: u64) -> Job {
        Job {
            id: new_id(now),
            scope: self.scope,
            method: self.method,
            params: self.params,
            state: JobState::Queued,
            attempts: 0,
            created: now,
            started: None,
            finished: None,
            result: None,
            error: None,
            idempotency_key: self.idempotency_key,
            body_hash: self.body_hash,
            lease_owner: None,
            lease_until: None,
            not_before: now,
        }
    }
}

/// What [`JobStore::enqueue`] did.
#[derive(Debug, Clone)]
pub enum Enqueued {
    /// A new job was stored.
    Created(Job),
    /// The idempotency key named a job submitted before with the same body.
    Existing(Job),
}

/// How a job ended, as a worker records it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The call's raw JSON result.
    Succeeded(String),
    /// A final error.
    Failed(RpcError),
    /// An error worth another run, not before the given time.
    Retry {
        /// The error of this run.
        error: RpcError,
        /// When the next run may start.
        not_before: u64,
    },
    /// The run was stopped by a graceful shutdown: the job goes back to the
    /// queue for another worker at once, and the run does not count
    /// against its attempts.
    HandBack,
}

/// What a lease renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours; extended.
    Held,
    /// The job was cancelled, or another worker took it over: stop.
    Lost,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only the jobs of this API key.
    pub scope: String,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs after this id (the previous page's last).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The idempotency key was used before with another body.
    #[error(
        "the Idempotency-Key '{key}' was used for job {id} with a different body; use a new key for a different request"
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The job it names.
        id: String,
    },
    /// Another process has the embedded store open.
    #[error(
        "the job store {0} is in use by another madrpc; give each process its own --data-dir, or share jobs through --jobs-store postgres://..."
    )]
    InUse(String),
    /// The embedded store failed.
    #[error("the embedded job store failed: {0}")]
    Embedded(String),
    /// PostgreSQL failed or cannot be reached.
    #[error("the PostgreSQL job store failed: {0}")]
    Postgres(String),
    /// A stored job could not be read back.
    #[error("a stored job is unreadable: {0}")]
    Corrupt(String),
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Where jobs are kept. Every operation is atomic: two workers never hold
/// the lease of one job, and a result is recorded only under the lease it
/// was run with.
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new job, or returns the one its idempotency key names.
    fn enqueue(&self, job: NewJob) -> BoxFuture<'_, StoreResult<Enqueued>>;
    /// Takes the oldest job that may run now (queued and past its backoff,
    /// or running under a lease that ran out) for `owner` until `until`,
    /// counting an attempt. Jobs whose lease ran out after `max_attempts`
    /// runs fail instead.
    fn lease(
        &self,
        owner: &str,
        now: u64,
        until: u64,
        max_attempts: u32,
    ) -> BoxFuture<'_, StoreResult<Option<Job>>>;
    /// Extends `owner`'s lease on job `id` to `until`.
    fn renew(&self, id: &str, owner: &str, until: u64) -> BoxFuture<'_, StoreResult<Renewal>>;
    /// Records how the run under `owner`'s lease ended; `false` when the
    /// lease was lost meanwhile and nothing was recorded.
    fn finish(
        &self,
        id: &str,
        owner: &str,
        outcome: Outcome,
        now: u64,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// The job `id`.
    fn get(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<Job>>>;
    /// A page of jobs, oldest first.
    fn list(&self, query: ListQuery) -> BoxFuture<'_, StoreResult<Vec<Job>>>;
    /// Cancels job `id` unless it is over; returns it as it is now.
    fn cancel(&self, id: &str, now: u64) -> BoxFuture<'_, StoreResult<Option<Job>>>;
    /// Deletes the jobs that finished before `before`; returns how many.
    fn purge(&self, before: u64) -> BoxFuture<'_, StoreResult<u64>>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

fn new_id(now: u64) -> String {
    use rand::RngExt;
    let random: u64 = rand::rng().random();
    format!("{:012x}{random:016x}", now & 0xffff_ffff_ffff)
}

/// The error a job gets when its lease ran out too often.
pub fn abandoned(attempts: u32) -> RpcError {
    RpcError::new(
        crate::rpc::codes::NODE_FAILED,
        "job_abandoned",
        format!(
            "the job's worker stopped renewing its lease {attempts} times (its gateway died or lost its store); it was given up after --job-attempts runs"
        ),
    )
    .with("attempts", attempts)
}

/// What a cancelled job reports as its error.
pub fn cancelled() -> RpcError {
    RpcError::new(
        crate::rpc::codes::INVALID_REQUEST,
        "cancelled",
        "the job was cancelled (DELETE /v1/jobs/{id}) before it finished",
    )
}

/// Records `outcome` on a job that ran, at `now`.
pub fn apply(job: &mut Job, outcome: Outcome, now: u64) {
    job.lease_owner = None;
    job.lease_until = None;
    match outcome {
        Outcome::Succeeded(result) => {
            job.state = JobState::Succeeded;
            job.result = Some(result);
            job.error = None;
            job.finished = Some(now);
        }
        Outcome::Failed(error) => {
            job.state = JobState::Failed;
            job.error = Some(error);
            job.finished = Some(now);
        }
        Outcome::Retry { error, not_before } => {
            job.state = JobState::Queued;
            job.error = Some(error);
            job.not_before = not_before;
        }
        Outcome::HandBack => {
            job.state = JobState::Queued;
            job.attempts = job.attempts.saturating_sub(1);
            job.not_before = now;
        }
    }
}

/// Cancels a job that is not over, at `now`.
pub fn mark_cancelled(job: &mut Job, now: u64) {
    job.state = JobState::Cancelled;
    job.error = Some(cancelled());
    job.finished = Some(now);
    job.lease_owner = None;
    job.lease_until = None;
}
