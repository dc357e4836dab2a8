//! The shared job store: one table in PostgreSQL, so that several gateways
//! serve one queue. Workers claim jobs with `FOR UPDATE SKIP LOCKED`, and
//! every write is one statement guarded by the lease it runs under. The
//! connection uses TLS as the URL's `sslmode` says (see `pg_tls`).

use super::pg_tls::Target;
use crate::jobs::model::{
    Enqueued, Job, JobState, JobStore, ListQuery, NewJob, Outcome, Renewal, StoreError,
    StoreResult, abandoned, cancelled, now_ms,
};
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio_postgres::{Client, Row};

/// The columns a job is read from, in [`from_row`]'s order.
const COLUMNS: &str = "id, scope, method, params, state, attempts, created, started, finished, \
     result, error, idem_key, body_hash, lease_owner, lease_until, not_before";

/// Creates the table once; the advisory lock keeps two gateways starting at
/// the same moment from racing on it.
const SCHEMA: &str = "
BEGIN;
SELECT pg_advisory_xact_lock(7270314856071);
CREATE TABLE IF NOT EXISTS madrpc_jobs (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    method TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    started BIGINT,
    finished BIGINT,
    result TEXT,
    error TEXT,
    idem_key TEXT,
    body_hash TEXT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    not_before BIGINT NOT NULL,
    UNIQUE (scope, idem_key)
);
CREATE INDEX IF NOT EXISTS madrpc_jobs_active ON madrpc_jobs (id)
    WHERE state IN ('queued', 'running');
COMMIT;
";

/// A PostgreSQL connection holding the job table. A connection that broke
/// (the server restarted) is made again on the next use.
pub struct Postgres {
    target: Target,
    connection: tokio::sync::Mutex<Arc<Client>>,
}

fn pg(error: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres(match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error.to_string(),
    })
}

impl Postgres {
    /// Connects to `url` (`postgres://user@host:port/db`, with
    /// `sslmode` and `sslrootcert` as libpq reads them) and creates the job
    /// table if it is missing.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let target = Target::parse(url)?;
        let client = open(&target).await?;
        client.batch_execute(SCHEMA).await.map_err(pg)?;
        Ok(Self {
            target,
            connection: tokio::sync::Mutex::new(Arc::new(client)),
        })
    }

    /// The connection, made again if it broke.
    async fn client(&self) -> StoreResult<Arc<Client>> {
        let mut client = self.connection.lock().await;
        if client.is_closed() {
            *client = Arc::new(open(&self.target).await?);
            tracing::info!("reconnected to the PostgreSQL job store");
        }
        Ok(client.clone())
    }
}

async fn open(target: &Target) -> StoreResult<Client> {
    let (client, connection) = tokio_postgres::connect(&target.url, target.tls.clone())
        .await
        .map_err(|e| {
            StoreError::Postgres(format!(
                "cannot connect to {} ({})",
                redact(&target.url),
                target.explain(&e)
            ))
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(%error, "the connection to the PostgreSQL job store broke");
        }
    });
    Ok(client)
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

fn from_row(row: &Row) -> StoreResult<Job> {
    let state: String = row.get(4);
    let error: Option<String> = row.get(10);
    let ms = |i: usize| row.get::<_, Option<i64>>(i).map(|v| v as u64);
    Ok(Job {
        id: row.get(0),
        scope: row.get(1),
        method: row.get(2),
        params: row.get(3),
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown state '{state}'")))?,
        attempts: row.get::<_, i32>(5) as u32,
        created: row.get::<_, i64>(6) as u64,
        started: ms(7),
        finished: ms(8),
        result: row.get(9),
        error: error
            .map(|e| serde_json::from_str(&e))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        idempotency_key: row.get(11),
        body_hash: row.get(12),
        lease_owner: row.get(13),
        lease_until: ms(14),
        not_before: row.get::<_, i64>(15) as u64,
    })
}

fn error_text(error: &crate::rpc::RpcError) -> String {
    serde_json::to_string(error).unwrap_or_default()
}

impl Postgres {
    async fn one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<Option<Job>> {
        match self
            .client()
            .await?
            .query_opt(sql, params)
            .await
            .map_err(pg)?
        {
            Some(row) => from_row(&row).map(Some),
            None => Ok(None),
        }
    }
}

impl JobStore for Postgres {
    fn enqueue(&self, new: NewJob) -> BoxFuture<'_, StoreResult<Enqueued>> {
        Box::pin(async move {
            let insert = format!(
                "INSERT INTO madrpc_jobs (id, scope, method, params, state, attempts, created, idem_key, body_hash, not_before)
                 VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $5)
                 ON CONFLICT (scope, idem_key) DO NOTHING RETURNING {COLUMNS}"
            );
            let select =
                format!("SELECT {COLUMNS} FROM madrpc_jobs WHERE scope = $1 AND idem_key = $2");
            // Twice at most: the job a key named may be purged in between.
            for _ in 0..2 {
                let job = new.clone().into_job(now_ms());
                let created = job.created as i64;
                if let Some(job) = self
                    .one(
                        &insert,
                        &[
                            &job.id,
                            &job.scope,
                            &job.method,
                            &job.params,
                            &created,
                            &job.idempotency_key,
                            &job.body_hash,
                        ],
                    )
                    .await?
                {
                    return Ok(Enqueued::Created(job));
                }
                if let Some(existing) = self
                    .one(&select, &[&new.scope, &new.idempotency_key])
                    .await?
                {
                    if existing.body_hash != new.body_hash {
                        return Err(StoreError::IdempotencyConflict {
                            key: new.idempotency_key.clone().unwrap_or_default(),
                            id: existing.id,
                        });
                    }
                    return Ok(Enqueued::Existing(existing));
                }
            }
            Err(StoreError::Postgres(
                "the job named by the idempotency key vanished twice while it was resubmitted; submit again".into(),
            ))
        })
    }

    fn lease(
        &self,
        owner: &str,
        now: u64,
        until: u64,
        max_attempts: u32,
    ) -> BoxFuture<'_, StoreResult<Option<Job>>> {
        let owner = owner.to_owned();
        Box::pin(async move {
            let (now, until, max) = (now as i64, until as i64, max_attempts as i32);
            self.client()
                .await?
                .execute(
                    "UPDATE madrpc_jobs SET state = 'failed', error = $2, finished = $1,
                         lease_owner = NULL, lease_until = NULL
                     WHERE state = 'running' AND lease_until < $1 AND attempts >= $3",
                    &[&now, &error_text(&abandoned(max_attempts)), &max],
                )
                .await
                .map_err(pg)?;
            let sql = format!(
                "UPDATE madrpc_jobs SET state = 'running', attempts = attempts + 1,
                     started = COALESCE(started, $2), lease_owner = $1, lease_until = $3
                 WHERE id = (
                     SELECT id FROM madrpc_jobs
                     WHERE (state = 'queued' AND not_before <= $2)
                        OR (state = 'running' AND lease_until < $2)
                     ORDER BY id LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {COLUMNS}"
            );
            self.one(&sql, &[&owner, &now, &until]).await
        })
    }

    fn renew(&self, id: &str, owner: &str, until: u64) -> BoxFuture<'_, StoreResult<Renewal>> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        Box::pin(async move {
            let renewed = self
                .client()
                .await?
                .execute(
                    "UPDATE madrpc_jobs SET lease_until = $3
                     WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                    &[&id, &owner, &(until as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(if renewed == 1 {
                Renewal::Held
            } else {
                Renewal::Lost
            })
        })
    }

    fn finish(
        &self,
        id: &str,
        owner: &str,
        outcome: Outcome,
        now: u64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        Box::pin(async move {
            let now = now as i64;
            // A run handed back keeps the job's last error and is not
            // counted as an attempt.
            let mut handed_back = 0i32;
            let (state, result, error, finished, not_before) = match outcome {
                Outcome::Succeeded(result) => {
                    (JobState::Succeeded, Some(result), None, Some(now), None)
                }
                Outcome::Failed(error) => (
                    JobState::Failed,
                    None,
                    Some(error_text(&error)),
                    Some(now),
                    None,
                ),
                Outcome::Retry { error, not_before } => (
                    JobState::Queued,
                    None,
                    Some(error_text(&error)),
                    None,
                    Some(not_before as i64),
                ),
                Outcome::HandBack => {
                    handed_back = 1;
                    (JobState::Queued, None, None, None, Some(now))
                }
            };
            let recorded = self
                .client()
                .await?
                .execute(
                    "UPDATE madrpc_jobs SET state = $3, result = $4,
                         error = CASE WHEN $8 = 1 THEN error ELSE $5 END, finished = $6,
                         not_before = COALESCE($7, not_before), attempts = attempts - $8,
                         lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                    &[
                        &id,
                        &owner,
                        &state.as_str(),
                        &result,
                        &error,
                        &finished,
                        &not_before,
                        &handed_back,
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(recorded == 1)
        })
    }

    fn get(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<Job>>> {
        let id = id.to_owned();
        Box::pin(async move {
            self.one(
                &format!("SELECT {COLUMNS} FROM madrpc_jobs WHERE id = $1"),
                &[&id],
            )
            .await
        })
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, StoreResult<Vec<Job>>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM madrpc_jobs
                 WHERE scope = $1 AND ($2::TEXT IS NULL OR state = $2) AND id > $3
                 ORDER BY id LIMIT $4"
            );
            let state = query.state.map(JobState::as_str);
            let after = query.after.unwrap_or_default();
            let limit = query.limit as i64;
            let rows = self
                .client()
                .await?
                .query(&sql, &[&query.scope, &state, &after, &limit])
                .await
                .map_err(pg)?;
            rows.iter().map(from_row).collect()
        })
    }

    fn cancel(&self, id: &str, now: u64) -> BoxFuture<'_, StoreResult<Option<Job>>> {
        let id = id.to_owned();
        Box::pin(async move {
            let sql = format!(
                "UPDATE madrpc_jobs SET state = 'cancelled', error = $3, finished = $2,
                     lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND state IN ('queued', 'running') RETURNING {COLUMNS}"
            );
            if let Some(job) = self
                .one(&sql, &[&id, &(now as i64), &error_text(&cancelled())])
                .await?
            {
                return Ok(Some(job));
            }
            self.get(&id).await
        })
    }

    fn purge(&self, before: u64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "DELETE FROM madrpc_jobs
                     WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished < $1",
                    &[&(before as i64)],
                )
                .await
                .map_err(pg)
        })
    }
}
