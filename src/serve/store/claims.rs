//! What replicas on one store decide between them through it: which one runs a periodic
//! pass, and which job converts a key.

use std::time::Duration;

use super::{failed, now_ms, Db, StoreError};

impl Db {
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
}
