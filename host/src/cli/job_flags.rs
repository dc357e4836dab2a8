//! The job flags of `serve` and `gateway`, and starting the job service on
//! a bound gateway.

use clap::Args;
use madrpc::gateway::Gateway;
use madrpc::jobs::{self, JobSettings, Jobs, Via};
use std::path::PathBuf;
use std::time::Duration;

/// Where jobs are kept and how they run.
#[derive(Debug, Clone, Args)]
pub struct JobFlags {
    /// Folder of the embedded job store (default: madrpc/ under the user's
    /// data directory, $XDG_DATA_HOME or ~/.local/share).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where jobs are kept: `embedded` (a crash-safe file under --data-dir)
    /// or a postgres://user@host:port/db URL, shared by several gateways.
    #[arg(
        long,
        value_name = "STORE",
        env = "MADRPC_JOBS_STORE",
        hide_env_values = true
    )]
    pub jobs_store: Option<String>,
    /// Longest one run of a job may take.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub job_deadline: humantime::Duration,
    /// CPU budget of one run of a job, in fuel units of a tenth of a
    /// nanosecond of CPU time (default: 36,000,000,000,000, an hour).
    #[arg(long, value_name = "UNITS", default_value_t = jobs::DEFAULT_JOB_FUEL)]
    pub job_fuel: u64,
    /// Runs a job gets when the grid fails under it (node lost, overloaded,
    /// gateway died); guest errors and limit breaches are never retried.
    #[arg(long, default_value_t = jobs::DEFAULT_JOB_ATTEMPTS, value_name = "N")]
    pub job_attempts: u32,
    /// How long finished jobs are kept before they are purged.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub job_retention: humantime::Duration,
    /// How long a running job's lease lasts unless renewed; a job whose
    /// gateway died runs again this long after its last renewal.
    #[arg(long, default_value = "15s", value_name = "DURATION")]
    pub job_lease: humantime::Duration,
    /// Jobs this process runs at once (default: the machine's cores).
    #[arg(long, value_name = "N")]
    pub job_workers: Option<usize>,
}

impl JobFlags {
    fn settings(&self, max_body_bytes: usize) -> anyhow::Result<JobSettings> {
        let lease: Duration = self.job_lease.into();
        anyhow::ensure!(
            lease >= Duration::from_millis(300),
            "--job-lease must be at least 300ms: it is renewed every third of it"
        );
        anyhow::ensure!(self.job_attempts >= 1, "--job-attempts must be at least 1");
        Ok(JobSettings {
            deadline: self.job_deadline.into(),
            fuel: self.job_fuel,
            attempts: self.job_attempts,
            retention: self.job_retention.into(),
            lease,
            workers: self.job_workers.unwrap_or_else(super::cores).max(1),
            max_body_bytes,
        })
    }

    /// Opens the job store and serves the job API on `gateway`; the
    /// workers run until the gateway drains, when they finish or hand back
    /// their jobs within the drain timeout. When the default
    /// store cannot be opened (another process has it, or the data
    /// directory cannot be written), the job API answers 503 and says why;
    /// a store the user named must open.
    pub async fn start(&self, gateway: Gateway, max_body_bytes: usize) -> anyhow::Result<Gateway> {
        let settings = self.settings(max_body_bytes)?;
        let dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        let store = match jobs::store::open(self.jobs_store.as_deref(), &dir).await {
            Ok(store) => store,
            // Only the default store may be missing: one the user named
            // must open.
            Err(error) if self.data_dir.is_none() && self.jobs_store.is_none() => {
                tracing::warn!("{error}; the job API is off");
                return Ok(gateway.with_routes(jobs::unavailable(format!(
                    "jobs are off on this server: {error}"
                ))));
            }
            Err(error) => return Err(error.into()),
        };
        match self.jobs_store.as_deref() {
            Some(url) if url != "embedded" => tracing::info!("jobs are kept in PostgreSQL"),
            _ => tracing::info!(dir = %dir.display(), "jobs are kept in the embedded store"),
        }
        let service = Jobs::new(
            store,
            settings,
            std::sync::Arc::new(Via(gateway.balancer())),
        );
        let workers = service.start();
        Ok(gateway
            .with_routes(jobs::router(service))
            .drain_also(move |within| Box::pin(workers.shut_down(within))))
    }
}

/// `$XDG_DATA_HOME/madrpc`, else `~/.local/share/madrpc`, else `.madrpc`.
pub(super) fn default_data_dir() -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(data) = env("XDG_DATA_HOME") {
        return PathBuf::from(data).join("madrpc");
    }
    match env("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/madrpc"),
        None => PathBuf::from(".madrpc"),
    }
}
