//! The bot's state: its jobs (what was asked, what happened), the conversions done (by
//! idempotency key), and the queue that hands jobs to workers. The queue is apalis's, in
//! the same database: SQLite on one machine, PostgreSQL for several replicas. A job and its
//! queue entry are written in one transaction, so an accepted event is never half-stored.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::TaskBuilder;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use super::hooks::ImageEvent;
use super::rules::StateStore;
use crate::model::{Digest, ImageRef};

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

const SCHEMA: [&str; 8] = [
    "CREATE TABLE IF NOT EXISTS unroot_jobs (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        registry TEXT NOT NULL,
        repository TEXT NOT NULL,
        tag TEXT,
        digest TEXT,
        rule BIGINT NOT NULL,
        destination TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        created_ms BIGINT NOT NULL,
        started_ms BIGINT,
        finished_ms BIGINT,
        worker TEXT,
        ticket TEXT NOT NULL,
        source_digest TEXT,
        job_key TEXT,
        outcome TEXT,
        report TEXT,
        error TEXT
    )",
    // One live job per subject: a notification sent twice, or replayed while its job is
    // queued or running, is the same job.
    "CREATE UNIQUE INDEX IF NOT EXISTS unroot_jobs_live ON unroot_jobs (subject)
        WHERE state IN ('queued', 'running')",
    "CREATE INDEX IF NOT EXISTS unroot_jobs_created ON unroot_jobs (created_ms)",
    "CREATE TABLE IF NOT EXISTS unroot_conversions (
        job_key TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        destination TEXT NOT NULL,
        digest TEXT NOT NULL,
        job TEXT NOT NULL,
        done_ms BIGINT NOT NULL
    )",
    // The conversion a running job is doing, by key: a second job that resolves to the
    // same key (the same push announced by digest and by tag, a reconcile racing a hook)
    // waits for it instead of converting and pushing again. A claim whose job is no
    // longer running on the worker that made it is stale and taken over.
    "CREATE TABLE IF NOT EXISTS unroot_claims (
        job_key TEXT PRIMARY KEY,
        job TEXT NOT NULL,
        worker TEXT NOT NULL,
        claimed_ms BIGINT NOT NULL
    )",
    // What a job met on its way that its end does not say: the registry requests it
    // tried again, and why.
    "CREATE TABLE IF NOT EXISTS unroot_job_events (
        job TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        text TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS unroot_job_events_job ON unroot_job_events (job)",
    // Work one replica does for all, per period: when it was last done, and by whom.
    "CREATE TABLE IF NOT EXISTS unroot_passes (
        name TEXT PRIMARY KEY,
        last_ms BIGINT NOT NULL,
        worker TEXT NOT NULL
    )",
];

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A job as stored.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// The source as the event named it: `registry/repository:tag@digest`.
    pub subject: String,
    /// The source's registry.
    pub registry: String,
    /// The source's repository.
    pub repository: String,
    /// The tag, when the event named one.
    pub tag: Option<String>,
    /// The digest, when the event gave one.
    pub digest: Option<String>,
    /// The rule's index in the rules file.
    pub rule: i64,
    /// Where the conversion goes.
    pub destination: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// How many times a worker started it.
    pub attempts: i64,
    /// When it was queued (ms since the epoch).
    pub created_ms: i64,
    /// When a worker last started it.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// The worker that last started it.
    pub worker: Option<String>,
    /// The source digest it converted (resolved from the tag when the event had none).
    pub source_digest: Option<String>,
    /// Its idempotency key.
    pub key: Option<String>,
    /// `converted`, or why nothing was pushed (`up to date`, `already converted`).
    pub outcome: Option<String>,
    /// The conversion's report (JSON), when it converted.
    pub report: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// What it met on its way (registry requests tried again), oldest first; read for
    /// one job, not for lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<JobEvent>,
}

impl Job {
    /// The source as a reference, from its stored parts.
    pub fn source_image(&self) -> Result<ImageRef, crate::error::Error> {
        let digest = self
            .digest
            .as_deref()
            .map(Digest::parse)
            .transpose()
            .map_err(|e| self.unreadable(e.to_string()))?;
        ImageRef::from_parts(
            &self.registry,
            &self.repository,
            self.tag.as_deref(),
            digest,
        )
        .map_err(|e| self.unreadable(e.to_string()))
    }

    /// The destination as a reference.
    pub fn destination_image(&self) -> Result<ImageRef, crate::error::Error> {
        ImageRef::parse(&self.destination).map_err(|e| self.unreadable(e.to_string()))
    }

    /// A stored job that does not read back: the hooks check every name before storing.
    fn unreadable(&self, message: String) -> crate::error::Error {
        crate::error::Error::Internal {
            location: self.subject.clone(),
            message: format!("job {} as stored: {message}", self.id),
        }
    }
}

/// A note of what a job met.
#[derive(Clone, Debug, Serialize)]
pub struct JobEvent {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// What.
    pub text: String,
}

const JOB_COLUMNS: &str = "id, subject, registry, repository, tag, digest, rule, destination, \
    state, attempts, created_ms, started_ms, finished_ms, worker, source_digest, job_key, \
    outcome, report, error";

fn job_of<R>(row: &R) -> Result<Job, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let report: Option<String> = row.try_get("report")?;
    Ok(Job {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        registry: row.try_get("registry")?,
        repository: row.try_get("repository")?,
        tag: row.try_get("tag")?,
        digest: row.try_get("digest")?,
        rule: row.try_get("rule")?,
        destination: row.try_get("destination")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        created_ms: row.try_get("created_ms")?,
        started_ms: row.try_get("started_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        worker: row.try_get("worker")?,
        source_digest: row.try_get("source_digest")?,
        key: row.try_get("job_key")?,
        outcome: row.try_get("outcome")?,
        report: report.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.try_get("error")?,
        events: Vec::new(),
    })
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
    /// Opens (creating if need be) the store `state` names, with its tables and the
    /// queue's.
    pub async fn open(state: &StateStore) -> Result<Db, StoreError> {
        let db = match state {
            StateStore::Sqlite(path) => Db::Sqlite(open_sqlite(path).await?),
            StateStore::Postgres(url) => Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await
                    .map_err(failed("connect to PostgreSQL"))?,
            ),
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let queue_tables = |e: sqlx::migrate::MigrateError| StoreError {
            op: "set up the queue's tables",
            source: e.into(),
        };
        match self {
            Db::Sqlite(pool) => {
                apalis_sqlite::SqliteStorage::<()>::migrations()
                    .run(pool)
                    .await
                    .map_err(queue_tables)?;
                for statement in SCHEMA {
                    sqlx::query(statement)
                        .execute(pool)
                        .await
                        .map_err(failed("create the bot's tables"))?;
                }
            }
            Db::Postgres(pool) => {
                // The migrator takes a lock of its own; the bot's tables are made under an
                // advisory lock, so replicas starting at once do not race to create them.
                apalis_postgres::PostgresStorage::<()>::migrations()
                    .run(pool)
                    .await
                    .map_err(queue_tables)?;
                let mut tx = pool.begin().await.map_err(failed("begin"))?;
                sqlx::query("SELECT pg_advisory_xact_lock(7564317)")
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("lock the schema"))?;
                for statement in SCHEMA {
                    sqlx::query(statement)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed("create the bot's tables"))?;
                }
                tx.commit().await.map_err(failed("commit the schema"))?;
            }
        }
        Ok(())
    }

    /// Claims the pass `name` (the reconcile) for `worker` unless a replica did it less
    /// than `every` ago: one pass per period, whichever replica wakes first. A tenth of
    /// the period is slack, so a replica waking a little early is not skipped.
    pub async fn claim_pass(
        &self,
        name: &str,
        every: Duration,
        worker: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let due_before = now - (every.as_millis() as i64) * 9 / 10;
        let claim = "INSERT INTO unroot_passes (name, last_ms, worker) VALUES ($1, $2, $3) \
            ON CONFLICT (name) DO UPDATE SET last_ms = excluded.last_ms, worker = excluded.worker \
            WHERE unroot_passes.last_ms <= $4";
        let n = on_db!(self, |p| sqlx::query(claim)
            .bind(name)
            .bind(now)
            .bind(worker)
            .bind(due_before)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(failed("claim a pass"))?;
        Ok(n == 1)
    }

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
        let digest = event.digest.as_ref().map(|d| d.to_string());
        let insert = "INSERT INTO unroot_jobs (id, subject, registry, repository, tag, digest, \
            rule, destination, state, created_ms, ticket) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10) ON CONFLICT DO NOTHING";
        macro_rules! bind {
            ($q:expr) => {
                $q.bind(&id)
                    .bind(&subject)
                    .bind(&event.registry)
                    .bind(&event.repository)
                    .bind(&event.tag)
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

    /// Claims the conversion `key` for `job` running on `worker`: `None` once it is this
    /// job's, or the job holding it. A claim is taken over when its job is no longer
    /// running on the worker that made it (it ended, was released, or was handed to
    /// another worker after its own died). The database decides between two claimers:
    /// one insert wins.
    pub async fn claim_key(
        &self,
        key: &str,
        job: &str,
        worker: &str,
    ) -> Result<Option<String>, StoreError> {
        let stale = "DELETE FROM unroot_claims WHERE job_key = $1 AND job <> $2 AND NOT EXISTS \
            (SELECT 1 FROM unroot_jobs j WHERE j.id = unroot_claims.job \
             AND j.state = 'running' AND j.worker = unroot_claims.worker)";
        let claim = "INSERT INTO unroot_claims (job_key, job, worker, claimed_ms) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (job_key) DO UPDATE \
            SET worker = excluded.worker, claimed_ms = excluded.claimed_ms \
            WHERE unroot_claims.job = excluded.job";
        let holder = "SELECT job FROM unroot_claims WHERE job_key = $1";
        on_db!(self, |p| sqlx::query(stale)
            .bind(key)
            .bind(job)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(failed("clear a stale claim"))?;
        let n = on_db!(self, |p| sqlx::query(claim)
            .bind(key)
            .bind(job)
            .bind(worker)
            .bind(now_ms())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(failed("claim a conversion"))?;
        if n == 1 {
            return Ok(None);
        }
        let row: Option<(String,)> = on_db!(self, |p| sqlx::query_as(holder)
            .bind(key)
            .fetch_optional(p)
            .await)
        .map_err(failed("look up a claim"))?;
        // Gone between the two statements: its holder ended; the next try takes it.
        Ok(Some(row.map_or_else(String::new, |(j,)| j)))
    }

    /// Gives up the claims `job` holds (once its end is recorded).
    pub async fn unclaim(&self, job: &str) -> Result<(), StoreError> {
        on_db!(self, |p| sqlx::query(
            "DELETE FROM unroot_claims WHERE job = $1"
        )
        .bind(job)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(failed("give up a claim"))
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
async fn open_sqlite(path: &Path) -> Result<SqlitePool, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError {
            op: "create the state directory",
            source: sqlx::Error::Io(e),
        })?;
    }
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(failed("open the state file"))?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(failed("open the state file"))
}

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
    let mut s = format!("{}/{}", event.registry, event.repository);
    if let Some(tag) = &event.tag {
        s.push(':');
        s.push_str(tag);
    }
    if let Some(digest) = &event.digest {
        s.push('@');
        s.push_str(&digest.to_string());
    }
    s
}
