//! The job worker: lease a job, run its call while renewing the lease,
//! record the outcome under that lease; and the purge of old jobs.

use super::model::{Job, Outcome, Renewal, now_ms};
use super::{Jobs, Phase};
use crate::rpc::{CallBudget, CallRequest, Grant, KeyName, RpcError, codes};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle worker looks for jobs submitted elsewhere (another
/// gateway of a shared store) or whose backoff ran out.
const POLL: Duration = Duration::from_millis(500);
/// First retry delay; it doubles with every failed run.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// One worker: runs jobs one after the other until aborted or the service
/// shuts down.
pub(super) async fn work(jobs: Arc<Jobs>) {
    let lease_ms = jobs.settings.lease.as_millis() as u64;
    loop {
        // Listen before looking, so a job submitted meanwhile is not missed.
        let submitted = jobs.submitted.notified();
        let Some(busy) = jobs.begin_work() else {
            return;
        };
        let owner = format!(
            "{}-{}",
            jobs.instance,
            crate::cluster::random_token()[..8].to_owned()
        );
        let now = now_ms();
        match jobs
            .store
            .lease(&owner, now, now + lease_ms, jobs.settings.attempts)
            .await
        {
            Ok(Some(job)) => run(&jobs, &owner, job).await,
            Ok(None) => {
                drop(busy);
                let _ = tokio::time::timeout(POLL, submitted).await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot take a job from the store; trying again in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Forgets a running job when its run ends, however it ends.
struct Running<'a>(&'a Jobs, &'a str);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(self.1);
    }
}

async fn run(jobs: &Jobs, owner: &str, job: Job) {
    tracing::info!(job = %job.id, method = %job.method, attempt = job.attempts, "job started");
    let stop = Arc::new(tokio::sync::Notify::new());
    jobs.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(job.id.clone(), stop.clone());
    let _running = Running(jobs, &job.id);
    let settings = &jobs.settings;
    let request = CallRequest {
        method: job.method.clone(),
        params: Bytes::from(job.params.clone()),
        budget: CallBudget {
            depth: 0,
            deadline: Some(Instant::now() + settings.deadline),
            key: KeyName::intern(&job.scope),
            tree: None,
            // The job's id names its calls in the logs of every hop.
            request_id: crate::telemetry::RequestId::parse(&job.id),
            trace: None,
            grant: Some(Grant {
                deadline: settings.deadline,
                fuel: settings.fuel,
            }),
            // The gateway pins it to the version current when it starts.
            module: None,
        },
    };
    let call = jobs.dispatch.call(request);
    tokio::pin!(call);
    let every = settings.lease / 3;
    let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut phase = jobs.phase.subscribe();
    let result = loop {
        tokio::select! {
            result = &mut call => break result,
            _ = handing_back(&mut phase) => {
                // Dropping the call stops it; the job goes back to the
                // queue for another gateway, or this one restarted.
                hand_back(jobs, owner, &job).await;
                return;
            }
            _ = stop.notified() => {
                // Dropping the call stops it in its sandbox and frees the worker.
                tracing::info!(job = %job.id, "job cancelled; its call was stopped");
                return;
            }
            _ = renewals.tick() => {
                let until = now_ms() + settings.lease.as_millis() as u64;
                match jobs.store.renew(&job.id, owner, until).await {
                    Ok(Renewal::Held) => {}
                    Ok(Renewal::Lost) => {
                        tracing::info!(job = %job.id, "job cancelled or taken over; its call was stopped");
                        return;
                    }
                    Err(error) => tracing::warn!(job = %job.id, %error, "cannot renew the job's lease; the job may run again elsewhere"),
                }
            }
        }
    };
    let outcome = classify(result, job.attempts, settings.attempts);
    let state = match &outcome {
        Outcome::Succeeded(_) => "succeeded",
        Outcome::Failed(_) => "failed",
        Outcome::Retry { .. } => "retrying",
        Outcome::HandBack => "handed back",
    };
    match jobs.store.finish(&job.id, owner, outcome, now_ms()).await {
        Ok(true) => tracing::info!(job = %job.id, outcome = state, "job finished"),
        Ok(false) => {
            tracing::warn!(job = %job.id, "the job's lease was lost while it ran; its outcome was not recorded")
        }
        Err(error) => {
            tracing::error!(job = %job.id, %error, "cannot record the job's outcome; it runs again when its lease runs out")
        }
    }
    jobs.changed.notify_waiters();
}

/// Completes when running jobs are to be handed back.
async fn handing_back(phase: &mut tokio::sync::watch::Receiver<Phase>) {
    if phase.wait_for(|p| *p == Phase::HandBack).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Puts a running job back in the queue at a shutdown.
async fn hand_back(jobs: &Jobs, owner: &str, job: &Job) {
    match jobs
        .store
        .finish(&job.id, owner, Outcome::HandBack, now_ms())
        .await
    {
        Ok(true) => {
            tracing::info!(job = %job.id, "job handed back: this process is shutting down; it runs again elsewhere or after a restart")
        }
        Ok(false) => {
            tracing::info!(job = %job.id, "job stopped at shutdown; it was cancelled or taken over meanwhile")
        }
        Err(error) => {
            tracing::warn!(job = %job.id, %error, "cannot hand the job back; it runs again when its lease runs out")
        }
    }
    jobs.changed.notify_waiters();
}

/// Infrastructure failures are worth another run; guest errors and limit
/// breaches would fail the same way again.
fn retryable(error: &RpcError) -> bool {
    matches!(
        error.code,
        codes::OVERLOADED | codes::NO_HEALTHY_NODE | codes::NODE_FAILED | codes::RATE_LIMITED
    )
}

fn classify(result: Result<Bytes, RpcError>, attempts: u32, max_attempts: u32) -> Outcome {
    match result {
        Ok(result) => Outcome::Succeeded(String::from_utf8_lossy(&result).into_owned()),
        Err(error) if retryable(&error) && attempts < max_attempts => {
            let delay = backoff(attempts);
            tracing::warn!(%error, attempt = attempts, delay_ms = delay.as_millis() as u64, "the job's run failed in the grid; it runs again after a delay");
            Outcome::Retry {
                error: error.with("attempts", attempts),
                not_before: now_ms() + delay.as_millis() as u64,
            }
        }
        Err(error) => Outcome::Failed(error),
    }
}

/// The delay before run `attempt + 1`: doubling from [`BACKOFF_BASE`] up to
/// [`BACKOFF_MAX`], of which a random half is waited, so that jobs failed
/// together do not come back together.
fn backoff(attempt: u32) -> Duration {
    use rand::RngExt;
    let full = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let half = full / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// Deletes finished jobs past retention, now and then.
pub(super) async fn purge(jobs: Arc<Jobs>) {
    let retention = jobs.settings.retention;
    let every = (retention / 4).clamp(Duration::from_millis(200), Duration::from_secs(600));
    loop {
        let before = now_ms().saturating_sub(retention.as_millis() as u64);
        match jobs.store.purge(before).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(jobs = purged, "purged jobs past their retention"),
            Err(error) => tracing::warn!(%error, "cannot purge old jobs"),
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        for attempt in 1..12 {
            let full = BACKOFF_BASE
                .saturating_mul(1 << (attempt - 1))
                .min(BACKOFF_MAX);
            let delay = backoff(attempt);
            assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
        }
    }

    #[test]
    fn only_infrastructure_failures_are_retried() {
        let node = RpcError::new(codes::NODE_FAILED, "node_failed", "gone");
        let guest = RpcError::new(codes::GUEST_THREW, "guest_threw", "boom");
        assert!(matches!(
            classify(Err(node.clone()), 1, 5),
            Outcome::Retry { .. }
        ));
        assert!(matches!(classify(Err(node), 5, 5), Outcome::Failed(_)));
        assert!(matches!(classify(Err(guest), 1, 5), Outcome::Failed(_)));
    }
}
