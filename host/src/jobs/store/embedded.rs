//! The embedded job store: one redb file under `--data-dir`. redb commits
//! with copy-on-write B-trees and an fsync, so a job acknowledged to a
//! client survives `kill -9` and a power cut. Only one process opens the
//! file at a time, so jobs found running at open belonged to a process
//! that died: they go straight back to the queue.

use crate::jobs::model::{
    Enqueued, Job, JobState, JobStore, ListQuery, NewJob, Outcome, Renewal, StoreError,
    StoreResult, abandoned,
};
use futures::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

/// Every job by id, as JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// The ids of the queued and running jobs: what a worker looks through.
const ACTIVE: TableDefinition<&str, ()> = TableDefinition::new("active");
/// `scope \n key` to the id of the job an idempotency key names.
const KEYS: TableDefinition<&str, &str> = TableDefinition::new("idempotency_keys");

/// A redb file of jobs.
pub struct Embedded {
    db: Arc<Database>,
}

/// Turns any error into a [`StoreError::Embedded`].
trait Ctx<T> {
    fn e(self) -> StoreResult<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn e(self) -> StoreResult<T> {
        self.map_err(|e| StoreError::Embedded(e.to_string()))
    }
}

fn decode(bytes: &[u8]) -> StoreResult<Job> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(job: &Job) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(job).e()
}

fn key_of(scope: &str, key: &str) -> String {
    format!("{scope}\n{key}")
}

impl Embedded {
    /// Opens (or creates) `dir/jobs.redb`, and requeues the jobs a dead
    /// process left running.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Embedded(format!(
                "cannot create the data directory {}: {e}; choose another with --data-dir",
                dir.display()
            ))
        })?;
        let path = dir.join("jobs.redb");
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::InUse(path.display().to_string())
            }
            e => StoreError::Embedded(format!(
                "cannot open {} ({e}); is another madrpc using this --data-dir?",
                path.display()
            )),
        })?;
        let store = Self { db: Arc::new(db) };
        let requeued = store.write(|tx| {
            let mut jobs = tx.open_table(JOBS).e()?;
            tx.open_table(KEYS).e()?;
            let mut active = tx.open_table(ACTIVE).e()?;
            let ids = ids(&active)?;
            let mut requeued = 0;
            for id in ids {
                let Some(mut job) = load(&jobs, &id)? else {
                    active.remove(id.as_str()).e()?;
                    continue;
                };
                if job.state == JobState::Running {
                    job.state = JobState::Queued;
                    job.lease_owner = None;
                    job.lease_until = None;
                    jobs.insert(id.as_str(), encode(&job)?.as_slice()).e()?;
                    requeued += 1;
                }
            }
            Ok(requeued)
        })?;
        if requeued > 0 {
            tracing::warn!(
                jobs = requeued,
                "jobs were running when this store was last closed; they run again"
            );
        }
        Ok(store)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let tx = self.db.begin_write().e()?;
        let out = f(&tx)?;
        tx.commit().e()?;
        Ok(out)
    }

    /// Whether a job could be leased at `now` (or failed for running out
    /// of attempts).
    fn has_work(&self, now: u64) -> StoreResult<bool> {
        let tx = self.db.begin_read().e()?;
        let jobs = tx.open_table(JOBS).e()?;
        for id in ids(&tx.open_table(ACTIVE).e()?)? {
            if let Some(job) = load(&jobs, &id)? {
                let expired =
                    job.state == JobState::Running && job.lease_until.is_some_and(|t| t < now);
                if expired || (job.state == JobState::Queued && job.not_before <= now) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Runs `f` on a blocking thread: redb waits on the disk.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Embedded) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<'static, StoreResult<T>> {
        let store = Embedded {
            db: self.db.clone(),
        };
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .map_err(|e| StoreError::Embedded(e.to_string()))?
        })
    }
}

fn ids(active: &impl ReadableTable<&'static str, ()>) -> StoreResult<Vec<String>> {
    active
        .iter()
        .e()?
        .map(|entry| entry.map(|(id, _)| id.value().to_owned()).e())
        .collect()
}

fn load(
    jobs: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> StoreResult<Option<Job>> {
    match jobs.get(id).e()? {
        Some(bytes) => decode(bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// Writes `job` and keeps the active set in step with its state.
fn save(tx: &redb::WriteTransaction, job: &Job) -> StoreResult<()> {
    tx.open_table(JOBS)
        .e()?
        .insert(job.id.as_str(), encode(job)?.as_slice())
        .e()?;
    let mut active = tx.open_table(ACTIVE).e()?;
    if job.state.is_final() {
        active.remove(job.id.as_str()).e()?;
    } else {
        active.insert(job.id.as_str(), ()).e()?;
    }
    Ok(())
}

fn get_in(tx: &redb::WriteTransaction, id: &str) -> StoreResult<Option<Job>> {
    load(&tx.open_table(JOBS).e()?, id)
}

impl JobStore for Embedded {
    fn enqueue(&self, new: NewJob) -> BoxFuture<'_, StoreResult<Enqueued>> {
        self.blocking(move |store| {
            store.write(|tx| {
                let now = crate::jobs::model::now_ms();
                if let Some(key) = &new.idempotency_key {
                    let scoped = key_of(&new.scope, key);
                    let existing = tx
                        .open_table(KEYS)
                        .e()?
                        .get(scoped.as_str())
                        .e()?
                        .map(|id| id.value().to_owned());
                    if let Some(job) = existing.map(|id| get_in(tx, &id)).transpose()?.flatten() {
                        if job.body_hash != new.body_hash {
                            return Err(StoreError::IdempotencyConflict {
                                key: key.clone(),
                                id: job.id,
                            });
                        }
                        return Ok(Enqueued::Existing(job));
                    }
                    let job = new.clone().into_job(now);
                    tx.open_table(KEYS)
                        .e()?
                        .insert(scoped.as_str(), job.id.as_str())
                        .e()?;
                    save(tx, &job)?;
                    return Ok(Enqueued::Created(job));
                }
                let job = new.clone().into_job(now);
                save(tx, &job)?;
                Ok(Enqueued::Created(job))
            })
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
        self.blocking(move |store| {
            // An idle worker asks twice a second; a read costs no disk write.
            if !store.has_work(now)? {
                return Ok(None);
            }
            store.write(|tx| {
                // Oldest first: ids sort by creation time, and so does the
                // active table.
                let active = ids(&tx.open_table(ACTIVE).e()?)?;
                for id in active {
                    let Some(mut job) = get_in(tx, &id)? else {
                        continue;
                    };
                    let expired =
                        job.state == JobState::Running && job.lease_until.is_some_and(|t| t < now);
                    let due = job.state == JobState::Queued && job.not_before <= now;
                    if expired && job.attempts >= max_attempts {
                        job.state = JobState::Failed;
                        job.error = Some(abandoned(job.attempts));
                        job.finished = Some(now);
                        job.lease_owner = None;
                        job.lease_until = None;
                        save(tx, &job)?;
                        continue;
                    }
                    if expired || due {
                        job.state = JobState::Running;
                        job.attempts += 1;
                        job.started.get_or_insert(now);
                        job.lease_owner = Some(owner.clone());
                        job.lease_until = Some(until);
                        save(tx, &job)?;
                        return Ok(Some(job));
                    }
                }
                Ok(None)
            })
        })
    }

    fn renew(&self, id: &str, owner: &str, until: u64) -> BoxFuture<'_, StoreResult<Renewal>> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.blocking(move |store| {
            store.write(|tx| match get_in(tx, &id)? {
                Some(mut job)
                    if job.state == JobState::Running
                        && job.lease_owner.as_deref() == Some(owner.as_str()) =>
                {
                    job.lease_until = Some(until);
                    save(tx, &job)?;
                    Ok(Renewal::Held)
                }
                _ => Ok(Renewal::Lost),
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
        self.blocking(move |store| {
            store.write(|tx| {
                let Some(mut job) = get_in(tx, &id)? else {
                    return Ok(false);
                };
                if job.state != JobState::Running
                    || job.lease_owner.as_deref() != Some(owner.as_str())
                {
                    return Ok(false);
                }
                crate::jobs::model::apply(&mut job, outcome, now);
                save(tx, &job)?;
                Ok(true)
            })
        })
    }

    fn get(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<Job>>> {
        let id = id.to_owned();
        self.blocking(move |store| {
            let tx = store.db.begin_read().e()?;
            load(&tx.open_table(JOBS).e()?, &id)
        })
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, StoreResult<Vec<Job>>> {
        self.blocking(move |store| {
            let tx = store.db.begin_read().e()?;
            let jobs = tx.open_table(JOBS).e()?;
            let mut page = Vec::new();
            let after = query.after.unwrap_or_default();
            for entry in jobs.range(after.as_str()..).e()? {
                let (id, bytes) = entry.e()?;
                if id.value() == after {
                    continue;
                }
                let job = decode(bytes.value())?;
                if job.scope == query.scope && query.state.is_none_or(|s| s == job.state) {
                    page.push(job);
                    if page.len() >= query.limit {
                        break;
                    }
                }
            }
            Ok(page)
        })
    }

    fn cancel(&self, id: &str, now: u64) -> BoxFuture<'_, StoreResult<Option<Job>>> {
        let id = id.to_owned();
        self.blocking(move |store| {
            store.write(|tx| {
                let Some(mut job) = get_in(tx, &id)? else {
                    return Ok(None);
                };
                if !job.state.is_final() {
                    crate::jobs::model::mark_cancelled(&mut job, now);
                    save(tx, &job)?;
                }
                Ok(Some(job))
            })
        })
    }

    fn purge(&self, before: u64) -> BoxFuture<'_, StoreResult<u64>> {
        self.blocking(move |store| {
            store.write(|tx| {
                let mut old = Vec::new();
                {
                    let jobs = tx.open_table(JOBS).e()?;
                    for entry in jobs.iter().e()? {
                        let (_, bytes) = entry.e()?;
                        let job = decode(bytes.value())?;
                        if job.state.is_final() && job.finished.is_some_and(|t| t < before) {
                            old.push(job);
                        }
                    }
                }
                let mut jobs = tx.open_table(JOBS).e()?;
                let mut keys = tx.open_table(KEYS).e()?;
                for job in &old {
                    jobs.remove(job.id.as_str()).e()?;
                    if let Some(key) = &job.idempotency_key {
                        keys.remove(key_of(&job.scope, key).as_str()).e()?;
                    }
                }
                Ok(old.len() as u64)
            })
        })
    }
}
