//! The durable job queue: enqueue, claim with a lease, heartbeat,
//! checkpoint, complete, fail with retries.
//!
//! Claiming is one statement. On Postgres the candidate row is locked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers never get the same job;
//! on SQLite the single writer lock serialises claims. A running job whose
//! lease expired is claimable again; a job claimed `max_attempts` times is
//! failed and keeps its last error.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, Backend, Job, JobState, Result, Store, StoreError};

const JOB_COLS: &str = "id, video_id, kind, state, attempts, max_attempts, lease_owner, lease_expires_ms, \
    checkpoint, last_error, run_after_ms, created_ms, updated_ms";

/// Default number of claims before a job is failed for good.
pub const DEFAULT_MAX_ATTEMPTS: i64 = 3;

fn job_from_row(r: &AnyRow) -> Result<Job> {
    let state: String = r.try_get("state")?;
    Ok(Job {
        id: r.try_get("id")?,
        video_id: r.try_get("video_id")?,
        kind: r.try_get("kind")?,
        state: JobState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("unknown job state '{state}'")))?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires_ms: r.try_get("lease_expires_ms")?,
        checkpoint: r.try_get("checkpoint")?,
        last_error: r.try_get("last_error")?,
        run_after_ms: r.try_get("run_after_ms")?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

impl Store {
    /// Queues a job for a video, unless the same kind of job is already
    /// queued or running for it; returns the (new or existing) job.
    pub async fn enqueue_job(&self, video_id: i64, kind: &str) -> Result<Job> {
        self.enqueue_job_with(video_id, kind, DEFAULT_MAX_ATTEMPTS).await
    }

    /// [`Store::enqueue_job`] with an explicit attempt limit.
    pub async fn enqueue_job_with(&self, video_id: i64, kind: &str, max_attempts: i64) -> Result<Job> {
        let job = self.enqueue(video_id, kind, max_attempts, None).await?;
        Ok(job.expect("an unconditional enqueue always returns a job"))
    }

    /// [`Store::enqueue_job`] for a video as the caller last read it
    /// (`seen`), for callers that decide from that row whether the video
    /// needs a job. Nothing is queued, and `None` returned, when the video
    /// has been indexed since `seen` was read: a job that was running then
    /// finished in between, and queuing another would index it twice.
    pub async fn enqueue_job_unless_indexed_since(&self, seen: &crate::Video, kind: &str) -> Result<Option<Job>> {
        self.enqueue(seen.id, kind, DEFAULT_MAX_ATTEMPTS, Some(seen.indexed_ms))
            .await
    }

    async fn enqueue(
        &self,
        video_id: i64,
        kind: &str,
        max_attempts: i64,
        seen_indexed_ms: Option<Option<i64>>,
    ) -> Result<Option<Job>> {
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
            // Serialise enqueues for one video so two processes cannot both insert.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(video_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(seen) = seen_indexed_ms {
            // On Postgres the row lock orders this against a commit of the
            // video's index (which updates the row); SQLite's writer lock,
            // taken by the transaction, already does.
            let lock = if self.backend == Backend::Postgres {
                " FOR UPDATE"
            } else {
                ""
            };
            let row: Option<(String, Option<i64>)> =
                sqlx::query_as(&format!("SELECT status, indexed_ms FROM videos WHERE id = $1{lock}"))
                    .bind(video_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((status, Some(indexed))) = row {
                if status == "done" && seen.is_none_or(|s| indexed > s) {
                    tx.commit().await?;
                    return Ok(None);
                }
            }
        }
        let sql = format!(
            "SELECT {JOB_COLS} FROM jobs WHERE video_id = $1 AND kind = $2 AND state IN ('queued', 'running') ORDER BY id LIMIT 1"
        );
        if let Some(row) = sqlx::query(&sql)
            .bind(video_id)
            .bind(kind)
            .fetch_optional(&mut *tx)
            .await?
        {
            tx.commit().await?;
            return job_from_row(&row).map(Some);
        }
        let now = now_ms();
        let sql = format!(
            "INSERT INTO jobs (video_id, kind, state, attempts, max_attempts, run_after_ms, created_ms, updated_ms) \
             VALUES ($1, $2, 'queued', 0, $3, 0, $4, $4) RETURNING {JOB_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(video_id)
            .bind(kind)
            .bind(max_attempts.max(1))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        job_from_row(&row).map(Some)
    }

    /// Claims the oldest claimable job (queued and due, or running with an
    /// expired lease) for `owner`, with a lease of `lease`. Jobs whose lease
    /// expired after their last allowed attempt are failed first.
    pub async fn claim_job(&self, owner: &str, lease: Duration) -> Result<Option<Job>> {
        self.claim_job_of(owner, lease, None).await
    }

    /// [`Store::claim_job`] restricted to the given kinds (or any kind).
    pub async fn claim_job_of(&self, owner: &str, lease: Duration, kinds: Option<&[&str]>) -> Result<Option<Job>> {
        let now = now_ms();
        self.fail_exhausted(now).await?;
        let kind_filter = match kinds {
            Some(ks) if !ks.is_empty() => format!(
                " AND kind IN ({})",
                ks.iter()
                    .map(|k| format!("'{}'", k.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => String::new(),
        };
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, lease_expires_ms = $2, updated_ms = $3 \
             WHERE id = (SELECT id FROM jobs WHERE ((state = 'queued' AND run_after_ms <= $3) \
                 OR (state = 'running' AND lease_expires_ms < $3 AND attempts < max_attempts)){kind_filter} \
                 ORDER BY id LIMIT 1{lock}) \
             RETURNING {JOB_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            // Stepped to the end (see `upsert_video`): a claim whose write
            // failed must not come back as claimed.
            .fetch_all(&self.pool)
            .await?;
        row.first().map(job_from_row).transpose()
    }

    async fn fail_exhausted(&self, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires_ms = NULL, updated_ms = $1, \
             last_error = COALESCE(last_error, 'the worker stopped responding (lease expired) on the last attempt') \
             WHERE state = 'running' AND lease_expires_ms < $1 AND attempts >= max_attempts",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Extends the lease of a running job held by `owner`. Returns false when
    /// the lease was lost (expired and taken by another worker, or the job
    /// ended): the caller must stop working on it.
    pub async fn heartbeat_job(&self, id: i64, owner: &str, lease: Duration) -> Result<bool> {
        let now = now_ms();
        let r = sqlx::query(
            "UPDATE jobs SET lease_expires_ms = $3, updated_ms = $4 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Saves progress for a running job held by `owner`; returns false when the lease was lost.
    pub async fn checkpoint_job(&self, id: i64, owner: &str, checkpoint: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET checkpoint = $3, updated_ms = $4 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(checkpoint)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Marks a job done; returns false when `owner` no longer held it.
    pub async fn complete_job(&self, id: i64, owner: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_expires_ms = NULL, updated_ms = $3 \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records a failure of a job held by `owner`. With `retry` and attempts
    /// left, the job is queued again after `backoff`; otherwise it is failed.
    /// The error is kept either way. Returns the job's new state, or `None`
    /// when `owner` no longer held it.
    pub async fn fail_job(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry: bool,
        backoff: Duration,
    ) -> Result<Option<JobState>> {
        let now = now_ms();
        let sql = format!(
            "UPDATE jobs SET state = CASE WHEN $3 = 1 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
             run_after_ms = $4, last_error = $5, lease_owner = NULL, lease_expires_ms = NULL, updated_ms = $6 \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running' RETURNING {JOB_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(owner)
            .bind(retry as i64)
            .bind(now + backoff.as_millis() as i64)
            .bind(error)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        Ok(row.first().map(job_from_row).transpose()?.map(|j| j.state))
    }

    /// Gives a running job back to the queue without counting the attempt
    /// (graceful shutdown). Returns false when `owner` no longer held it.
    pub async fn release_job(&self, id: i64, owner: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             lease_owner = NULL, lease_expires_ms = NULL, updated_ms = $3 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// One job by id.
    pub async fn job(&self, id: i64) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// The most recent jobs, newest first.
    pub async fn jobs(&self, limit: i64) -> Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Jobs of one video, oldest first.
    pub async fn jobs_of_video(&self, video_id: i64) -> Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE video_id = $1 ORDER BY id");
        let rows = sqlx::query(&sql).bind(video_id).fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Running jobs (with their lease owners), oldest first.
    pub async fn running_jobs(&self) -> Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE state = 'running' ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Expires the lease of a running job held by `owner` now, so any worker
    /// may claim it (used when the owner is known to be dead). Returns false
    /// when `owner` no longer held it.
    pub async fn expire_lease(&self, id: i64, owner: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET lease_expires_ms = 0, updated_ms = $3 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Number of jobs in each state.
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("state")?, r.try_get::<i64, _>("n")?)))
            .collect()
    }
}
