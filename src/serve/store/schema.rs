//! Opening the store: the connection pool, the queue's tables (apalis's migrations) and
//! the bot's own, made under a lock so that replicas starting at once do not race.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{failed, Db, StoreError};
use crate::serve::state::StateStore;

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
}

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
