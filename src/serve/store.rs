//! The bot's state: its jobs (what was asked, what happened), the conversions done (by
//! idempotency key), and the queue that hands jobs to workers. The queue is apalis's, in
//! the same database: SQLite on one machine, PostgreSQL for several replicas. A job and its
//! queue entry are written in one transaction, so an accepted event is never half-stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::TaskBuilder;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use super::hooks::ImageEvent;
use super::job::{job_of, Job, JobEvent, JOB_COLUMNS};

/// The queue every replica's workers take conversions from.
pub const QUEUE: &str = "unroot.convert";

/// How many times the queue hands a job out: more than once only when the worker holding
/// it died (its heartbeats stopped) or was stopped before it finished.
pub const DELIVERIES: usize = 5;

/// What a queue entry carries: the job's id in the jobs table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ticket {
    /// The job.
    pub job: String,
}

/// A state store that failed, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("state store: {op}: {source}")]
pub struct StoreError {
    /// What was being done.
    pub op: &'static str,
    /// The database's error.
    #[source]
    pub source: sqlx::Error,
}

fn failed(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError { op, source }
}

/// An open database.
#[derive(Clone, Debug)]
pub enum Db {
    /// One machine.
    Sqlite(SqlitePool),
    /// Several replicas.
    Postgres(PgPool),
}

/// Runs one query text on whichever database `db` is, binding the same values. Both
/// engines take `$1`-style parameters, so one text serves both.
macro_rules! on_db {
    ($db:expr, |$q:ident| $body:expr) => {
        match $db {
            Db::Sqlite($q) => $body,
            Db::Postgres($q) => $body,
        }
    };
}

mod claims;
mod schema;

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether an event made a new job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job, with its id.
    New(String),
    /// A job for the same subject is queued or running already.
    Duplicate,
}

/// How many jobs are in each state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting for a worker.
    pub queued: i64,
    /// Being converted.
    pub running: i64,
    /// Finished: converted, or nothing to do.
    pub done: i64,
    /// Failed, with a reason; `POST /jobs/{id}/retry` queues it again.
    pub failed: i64,
}

impl Db {
    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(failed("ping"))?;
        Ok(())
    }

    /// Stores a job for `event` going to `destination` by rule `rule`, and queues it, in
    /// one transaction; a job for the same subject already queued or running is not
    /// made twice.
    pub async fn enqueue(
        &self,
        event: &ImageEvent,
        rule: usize,
        destination: &str,
    ) -> Result<Enqueued, StoreError> {
        let id = ulid::Ulid::generate().to_string();
        let ticket_id = ulid::Ulid::generate();
        let subject = subject_of(event);
        let digest = event.image.digest().map(|d| d.to_string());
        let insert = "INSERT INTO unroot_jobs (id, subject, registry, repository, tag, digest, \
            rule, destination, state, created_ms, ticket) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10) ON CONFLICT DO NOTHING";
        macro_rules! bind {
            ($q:expr) => {
                $q.bind(&id)
                    .bind(&subject)
                    .bind(event.image.registry())
                    .bind(event.image.repository())
                    .bind(event.image.tag())
                    .bind(&digest)
                    .bind(rule as i64)
                    .bind(destination)
                    .bind(now_ms())
                    .bind(ticket_id.to_string())
            };
        }
        let inserted = match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(failed("begin"))?;
                let done = bind!(sqlx::query(insert))
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("store a job"))?
                    .rows_affected();
                if done == 1 {
                    apalis_sqlite::queries::push_tasks(
                        &mut *tx,
                        QUEUE,
                        &[ticket(&id, ticket_id, None)],
                    )
                    .await
                    .map_err(|e| StoreError {
                        op: "queue a job",
                        source: sqlite_error(e),
                    })?;
                }
                tx.commit().await.map_err(failed("commit a job"))?;
                done == 1
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(failed("begin"))?;
                let done = bind!(sqlx::query(insert))
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("store a job"))?
                    .rows_affected();
                if done == 1 {
                    apalis_postgres::queries::push_tasks(
                        &mut *tx,
                        QUEUE,
                        vec![ticket(&id, ticket_id, None)],
                    )
                    .await
                    .map_err(|e| StoreError {
                        op: "queue a job",
                        source: postgres_error(e),
                    })?;
                }
                tx.commit().await.map_err(failed("commit a job"))?;
                done == 1
            }
        };
        Ok(if inserted {
            Enqueued::New(id)
        } else {
            Enqueued::Duplicate
        })
    }

    /// Queues a failed job again (`POST /jobs/{id}/retry`). `Ok(false)`: no failed job has
    /// that id.
    pub async fn retry(&self, id: &str) -> Result<bool, StoreError> {
        self.requeue(id, "failed").await
    }

    /// Puts a job a stopping worker did not finish back in the queue, for another
    /// replica or the next process: its entry is due after [`RELEASE_DELAY`], so the
    /// stopping process does not take it again.
    pub async fn release(&self, id: &str) -> Result<(), StoreError> {
        self.requeue_after(id, "running", Some(RELEASE_DELAY))
            .await
            .map(|_| ())
    }

    /// Moves a job from `state` back to `queued` with a new queue entry, in one
    /// transaction. Only the newest entry of a job starts it ([`Db::start`]), so an older
    /// one the queue hands out again is a no-op.
    async fn requeue(&self, id: &str, state: &str) -> Result<bool, StoreError> {
        self.requeue_after(id, state, None).await
    }

    async fn requeue_after(
        &self,
        id: &str,
        state: &str,
        delay: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let ticket_id = ulid::Ulid::generate();
        let update = "UPDATE unroot_jobs SET state = 'queued', error = NULL, finished_ms = NULL, \
            worker = NULL, ticket = $3 WHERE id = $1 AND state = $2";
        macro_rules! run {
            ($pool:expr, |$tx:ident| $push:expr) => {{
                let mut $tx = $pool.begin().await.map_err(failed("begin"))?;
                let n = sqlx::query(update)
                    .bind(id)
                    .bind(state)
                    .bind(ticket_id.to_string())
                    .execute(&mut *$tx)
                    .await
                    .map_err(failed("queue a job again"))?
                    .rows_affected();
                if n == 1 {
                    $push.await.map_err(|e| StoreError {
                        op: "queue a job",
                        source: sqlx::Error::Protocol(e.to_string()),
                    })?;
                }
                $tx.commit().await.map_err(failed("commit"))?;
                n == 1
            }};
        }
        let changed = match self {
            Db::Sqlite(pool) => run!(pool, |tx| apalis_sqlite::queries::push_tasks(
                &mut *tx,
                QUEUE,
                &[ticket(id, ticket_id, delay)]
            )),
            Db::Postgres(pool) => run!(pool, |tx| apalis_postgres::queries::push_tasks(
                &mut *tx,
                QUEUE,
                vec![ticket(id, ticket_id, delay)]
            )),
        };
        Ok(changed)
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let query = format!("SELECT {JOB_COLUMNS} FROM unroot_jobs WHERE id = $1");
        let row = match self {
            Db::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(query.clone()))
                .bind(id)
                .fetch_optional(pool)
                .await
                .and_then(|r| r.as_ref().map(job_of).transpose()),
            Db::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(query.clone()))
                .bind(id)
                .fetch_optional(pool)
                .await
                .and_then(|r| r.as_ref().map(job_of).transpose()),
        };
        let Some(mut job) = row.map_err(failed("read a job"))? else {
            return Ok(None);
        };
        let events = "SELECT at_ms, text FROM unroot_job_events WHERE job = $1 ORDER BY at_ms";
        let rows: Vec<(i64, String)> =
            on_db!(self, |p| sqlx::query_as(events).bind(id).fetch_all(p).await)
                .map_err(failed("read a job's events"))?;
        job.events = rows
            .into_iter()
            .map(|(at_ms, text)| JobEvent { at_ms, text })
            .collect();
        Ok(Some(job))
    }

    /// Notes what job `id` met.
    pub async fn note(&self, id: &str, text: &str) -> Result<(), StoreError> {
        let insert = "INSERT INTO unroot_job_events (job, at_ms, text) VALUES ($1, $2, $3)";
        on_db!(self, |p| sqlx::query(insert)
            .bind(id)
            .bind(now_ms())
            .bind(text)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(failed("note a job's event"))
    }

    /// The newest jobs, newest first, optionally in one state.
    pub async fn jobs(&self, state: Option<&str>, limit: i64) -> Result<Vec<Job>, StoreError> {
        let query = format!(
            "SELECT {JOB_COLUMNS} FROM unroot_jobs WHERE ($1 IS NULL OR state = $1) \
             ORDER BY created_ms DESC, id DESC LIMIT $2"
        );
        let state = state.map(str::to_string);
        let rows = match self {
            Db::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(query.clone()))
                .bind(&state)
                .bind(limit)
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(job_of).collect()),
            Db::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(query.clone()))
                .bind(&state)
                .bind(limit)
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(job_of).collect()),
        };
        rows.map_err(failed("list jobs"))
    }

    /// How many jobs are in each state.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let query = "SELECT state, COUNT(*) AS n FROM unroot_jobs GROUP BY state";
        let rows: Vec<(String, i64)> = on_db!(self, |p| sqlx::query_as(query).fetch_all(p).await)
            .map_err(failed("count jobs"))?;
        let mut counts = Counts::default();
        for (state, n) in rows {
            match state.as_str() {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                "done" => counts.done = n,
                "failed" => counts.failed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// Marks a job started by `worker` for the queue entry `ticket`. `Ok(None)`: the
    /// entry is not the job's newest, or the job is finished (the queue handed an entry
    /// out again after the job ended), so there is nothing to do. A `running` job is
    /// started again only by its own entry, which the queue hands out again only when the
    /// worker holding it stopped sending heartbeats.
    pub async fn start(
        &self,
        id: &str,
        ticket: &str,
        worker: &str,
    ) -> Result<Option<Job>, StoreError> {
        let update = "UPDATE unroot_jobs SET state = 'running', attempts = attempts + 1, \
            started_ms = $2, worker = $3 WHERE id = $1 AND ticket = $4 \
            AND state IN ('queued', 'running')";
        let n = on_db!(self, |p| sqlx::query(update)
            .bind(id)
            .bind(now_ms())
            .bind(worker)
            .bind(ticket)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(failed("start a job"))?;
        if n == 0 {
            return Ok(None);
        }
        self.job(id).await
    }

    /// Records what a job resolved: the source digest and the key.
    pub async fn resolved(&self, id: &str, digest: &str, key: &str) -> Result<(), StoreError> {
        let update = "UPDATE unroot_jobs SET source_digest = $2, job_key = $3 WHERE id = $1";
        on_db!(self, |p| sqlx::query(update)
            .bind(id)
            .bind(digest)
            .bind(key)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(failed("record a job's source"))?;
        Ok(())
    }

    /// Whether the conversion with `key` was done, and the digest it pushed.
    pub async fn conversion(&self, key: &str) -> Result<Option<String>, StoreError> {
        let query = "SELECT digest FROM unroot_conversions WHERE job_key = $1";
        let row: Option<(String,)> = on_db!(self, |p| sqlx::query_as(query)
            .bind(key)
            .fetch_optional(p)
            .await)
        .map_err(failed("look up a conversion"))?;
        Ok(row.map(|(d,)| d))
    }

    /// Marks a job done with `outcome`; when it pushed (or found) `digest` for `key`,
    /// that conversion is recorded too.
    pub async fn finish(
        &self,
        job: &Job,
        outcome: &str,
        report: Option<&serde_json::Value>,
        pushed: Option<(&str, &str, &str)>,
    ) -> Result<(), StoreError> {
        let report = report.map(|r| r.to_string());
        let now = now_ms();
        let update = "UPDATE unroot_jobs SET state = 'done', outcome = $2, report = $3, \
            finished_ms = $4, error = NULL WHERE id = $1";
        let record = "INSERT INTO unroot_conversions (job_key, source, destination, digest, job, \
            done_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
        macro_rules! run {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.map_err(failed("begin"))?;
                sqlx::query(update)
                    .bind(&job.id)
                    .bind(outcome)
                    .bind(&report)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("finish a job"))?;
                if let Some((key, source, digest)) = pushed {
                    sqlx::query(record)
                        .bind(key)
                        .bind(source)
                        .bind(&job.destination)
                        .bind(digest)
                        .bind(&job.id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed("record a conversion"))?;
                }
                tx.commit().await.map_err(failed("commit"))?;
            }};
        }
        match self {
            Db::Sqlite(pool) => run!(pool),
            Db::Postgres(pool) => run!(pool),
        }
        Ok(())
    }

    /// Marks a job failed with its reason.
    pub async fn fail(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let update = "UPDATE unroot_jobs SET state = 'failed', error = $2, finished_ms = $3 \
            WHERE id = $1";
        on_db!(self, |p| sqlx::query(update)
            .bind(id)
            .bind(reason)
            .bind(now_ms())
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(failed("record a failure"))?;
        Ok(())
    }
}

/// The SQLite file with a write-ahead log and `synchronous = FULL`: a job answered with
/// 202 is on disk, whatever happens to the process or the machine next.
fn ticket(job: &str, id: ulid::Ulid, delay: Option<Duration>) -> apalis::prelude::Task<Vec<u8>> {
    let bytes = serde_json::to_vec(&Ticket {
        job: job.to_string(),
    })
    .expect("a ticket serializes");
    let task = TaskBuilder::new(bytes)
        .task_id(apalis::prelude::TaskId::from(id))
        .max_attempts(DELIVERIES);
    match delay {
        Some(delay) => task.run_after(delay),
        None => task,
    }
    .build()
}

/// How long a job a stopping process put back waits before it is due again.
pub const RELEASE_DELAY: Duration = Duration::from_secs(3);

fn sqlite_error(e: apalis_sqlite::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}

fn postgres_error(e: apalis_postgres::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}

/// What makes two events the same job while one is live: the source as named.
pub fn subject_of(event: &ImageEvent) -> String {
    let image = &event.image;
    let mut s = format!("{}/{}", image.registry(), image.repository());
    if let Some(tag) = image.tag() {
        s.push(':');
        s.push_str(tag);
    }
    if let Some(digest) = image.digest() {
        s.push('@');
        s.push_str(&digest.to_string());
    }
    s
}
