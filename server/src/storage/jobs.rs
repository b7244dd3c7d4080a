//! Image jobs as rows, and the queue they make: a job is inserted when accepted (within the
//! queue's and its owner's bounds, counted across every process), claimed by one process at a
//! time with a lease it renews while drawing, and ended by that process alone. A job whose lease
//! ran out (its process died) is claimed again by any process and drawn from its first step.

use super::{on_pool, BeginWrite, Database, StorageError};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub account_id: String,
    pub user_id: String,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: i32,
    pub guidance_scale: f64,
    pub seed: i64,
    pub width: i32,
    pub height: i32,
    pub scheduler: String,
    pub model: String,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    pub step: i32,
    pub error: Option<String>,
    /// 1: the safety checker flagged it; 0: it did not; none: not checked.
    pub nsfw: Option<i32>,
    pub attempts: i32,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The process drawing it (or that drew it last).
    pub worker: Option<String>,
    /// Until when that process's claim holds (Unix ms).
    pub lease_until: Option<i64>,
    /// 1 once a cancel was asked for; the drawing process stops before its next step.
    pub cancel_requested: i32,
}

/// Jobs queued or running now, counted over every process, for admission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct JobCounts {
    /// Queued, everyone's (the queue's bound).
    pub queued: i64,
    /// Queued or running, of the account.
    pub account: i64,
    /// Queued or running, of the account's end user.
    pub of_user: i64,
}

const COLUMNS: &str = "id, account_id, user_id, conversation_id, message_id, prompt, negative_prompt, steps, \
                       guidance_scale, seed, width, height, scheduler, model, status, step, error, nsfw, attempts, \
                       created_at, started_at, finished_at, worker, lease_until, cancel_requested";

const COUNTS: &str = "SELECT COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS queued, \
                      COALESCE(SUM(CASE WHEN account_id = $1 THEN 1 ELSE 0 END), 0) AS account, \
                      COALESCE(SUM(CASE WHEN account_id = $1 AND user_id = $2 THEN 1 ELSE 0 END), 0) AS of_user \
                      FROM image_jobs WHERE status IN ('queued', 'running')";

const INSERT: &str = "INSERT INTO image_jobs (id, account_id, user_id, conversation_id, message_id, prompt, \
                      negative_prompt, steps, guidance_scale, seed, width, height, scheduler, model, status, step, \
                      error, nsfw, attempts, created_at, started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                      $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)";

/// The insert of a job's row, bound for whichever backend runs it.
macro_rules! insert {
    ($row:expr) => {{
        let row: &JobRow = $row;
        sqlx::query(INSERT)
            .bind(&row.id)
            .bind(&row.account_id)
            .bind(&row.user_id)
            .bind(&row.conversation_id)
            .bind(&row.message_id)
            .bind(&row.prompt)
            .bind(&row.negative_prompt)
            .bind(row.steps)
            .bind(row.guidance_scale)
            .bind(row.seed)
            .bind(row.width)
            .bind(row.height)
            .bind(&row.scheduler)
            .bind(&row.model)
            .bind(&row.status)
            .bind(row.step)
            .bind(&row.error)
            .bind(row.nsfw)
            .bind(row.attempts)
            .bind(row.created_at)
            .bind(row.started_at)
            .bind(row.finished_at)
    }};
}

/// On Postgres, admissions take turns on this lock (held to the end of their transaction), so
/// two processes counting at once cannot both take the last place. SQLite's `BEGIN IMMEDIATE`
/// does the same.
const PG_ADMISSION_LOCK: &str = "SELECT pg_advisory_xact_lock(7120251207)";

/// The Postgres channel job changes are announced on.
pub const JOB_CHANNEL: &str = "duet_jobs";

impl Database {
    /// Insert a new job if `admit` allows it given the jobs counted now; counting and inserting
    /// are one step for every process sharing the database.
    pub async fn enqueue_job<E>(
        &self,
        row: &JobRow,
        account: &str,
        user: &str,
        admit: impl FnOnce(JobCounts) -> Result<(), E>,
    ) -> Result<Result<(), E>, StorageError> {
        let lock = matches!(self, Database::Postgres(_)).then_some(PG_ADMISSION_LOCK);
        Ok(on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let counts: JobCounts = sqlx::query_as(COUNTS).bind(account).bind(user).fetch_one(&mut *tx).await?;
            if let Err(refused) = admit(counts) {
                return Ok(Err(refused));
            }
            insert!(row).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, StorageError>(Ok(()))
        })?)
    }

    /// Insert a job as it is (e.g. one refused before it could run, stored to say why).
    pub async fn insert_job(&self, row: &JobRow) -> Result<(), StorageError> {
        on_pool!(self, |pool| insert!(row).execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Jobs queued or running now of the account (and of its end user when named).
    pub async fn unfinished_job_counts(&self, account: &str, user: &str) -> Result<JobCounts, StorageError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(COUNTS).bind(account).bind(user).fetch_one(pool).await?))
    }

    /// Claim the oldest job waiting, or one whose drawing process's lease ran out, for `worker`
    /// until `lease_until`. A job cancelled while its process was gone ends instead.
    pub async fn claim_job(&self, worker: &str, now: i64, lease_until: i64) -> Result<Option<JobRow>, StorageError> {
        const ABANDONED: &str = "UPDATE image_jobs SET status = 'cancelled', finished_at = $1, lease_until = NULL \
                                 WHERE status = 'running' AND lease_until < $1 AND cancel_requested = 1";
        let skip_locked = if matches!(self, Database::Postgres(_)) { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE image_jobs SET status = 'running', worker = $1, lease_until = $2, started_at = $3, step = 0, \
             attempts = attempts + 1 WHERE id = (SELECT id FROM image_jobs WHERE status = 'queued' \
             OR (status = 'running' AND lease_until < $3) ORDER BY created_at, id LIMIT 1 {skip_locked}) \
             RETURNING {COLUMNS}"
        );
        Ok(on_pool!(self, |pool| {
            sqlx::query(ABANDONED).bind(now).execute(pool).await?;
            sqlx::query_as(&sql).bind(worker).bind(lease_until).bind(now).fetch_optional(pool).await?
        }))
    }

    /// `worker` still draws the job: its step, and its lease renewed. `None` when the job is no
    /// longer the worker's (its lease ran out and another process took it); else whether a
    /// cancel was asked for.
    pub async fn renew_job(
        &self,
        id: &str,
        worker: &str,
        step: i32,
        lease_until: i64,
    ) -> Result<Option<bool>, StorageError> {
        const SQL: &str = "UPDATE image_jobs SET step = $3, lease_until = $4 \
                           WHERE id = $1 AND worker = $2 AND status = 'running' RETURNING cancel_requested";
        let cancel: Option<i32> = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(id)
            .bind(worker)
            .bind(step)
            .bind(lease_until)
            .fetch_optional(pool)
            .await?);
        Ok(cancel.map(|c| c != 0))
    }

    /// The job `worker` drew ended: `done`, `failed` (with `error`) or `cancelled`. False when it
    /// was no longer the worker's.
    #[allow(clippy::too_many_arguments)]
    pub async fn end_job(
        &self,
        id: &str,
        worker: &str,
        status: &str,
        step: i32,
        error: Option<&str>,
        nsfw: Option<bool>,
        at: i64,
    ) -> Result<bool, StorageError> {
        const SQL: &str = "UPDATE image_jobs SET status = $3, step = $4, error = $5, nsfw = $6, finished_at = $7, \
                           lease_until = NULL WHERE id = $1 AND worker = $2 AND status = 'running'";
        let nsfw = nsfw.map(i32::from);
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(id)
            .bind(worker)
            .bind(status)
            .bind(step)
            .bind(error)
            .bind(nsfw)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done > 0)
    }

    /// Ask to cancel one of the account's jobs: a queued one ends now, a running one is marked
    /// for its process to stop. The row after and whether it was still queued or running, or
    /// `None` when it is not the account's.
    pub async fn cancel_job(
        &self,
        account_id: &str,
        id: &str,
        at: i64,
    ) -> Result<Option<(JobRow, bool)>, StorageError> {
        let sql = format!(
            "UPDATE image_jobs SET cancel_requested = 1, \
             finished_at = CASE WHEN status = 'queued' THEN $3 ELSE finished_at END, \
             status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END \
             WHERE id = $1 AND account_id = $2 AND status IN ('queued', 'running') RETURNING {COLUMNS}"
        );
        let row =
            on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).bind(account_id).bind(at).fetch_optional(pool).await?);
        match row {
            Some(row) => Ok(Some((row, true))),
            None => Ok(self.job(account_id, id).await?.map(|row| (row, false))),
        }
    }

    /// One of the account's jobs.
    pub async fn job(&self, account_id: &str, id: &str) -> Result<Option<JobRow>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM image_jobs WHERE id = $1 AND account_id = $2");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(pool).await?))
    }

    /// A job, whoever's (for announcing its changes to its watchers).
    pub async fn job_by_id(&self, id: &str) -> Result<Option<JobRow>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM image_jobs WHERE id = $1");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
    }

    /// Every job queued or running, oldest first: the queue as all processes share it.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRow>, StorageError> {
        let sql =
            format!("SELECT {COLUMNS} FROM image_jobs WHERE status IN ('queued', 'running') ORDER BY created_at, id");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await?))
    }

    /// The newest jobs drawn to the end, for learning how long drawing takes (newest by when they
    /// were asked for: that order walks the `(status, created_at)` index, however long the history).
    pub async fn recent_done_jobs(&self, limit: i64) -> Result<Vec<JobRow>, StorageError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM image_jobs WHERE status = 'done' AND started_at IS NOT NULL \
             ORDER BY created_at DESC LIMIT $1"
        );
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(limit).fetch_all(pool).await?))
    }

    /// On SQLite, whose file one process owns: what was drawing when that process stopped is
    /// queued again at once (no need to wait for its lease), a cancel asked meanwhile honoured.
    pub async fn requeue_running_jobs(&self, at: i64) -> Result<u64, StorageError> {
        const CANCELLED: &str = "UPDATE image_jobs SET status = 'cancelled', finished_at = $1, lease_until = NULL \
                                 WHERE status = 'running' AND cancel_requested = 1";
        const REQUEUE: &str =
            "UPDATE image_jobs SET status = 'queued', step = 0, worker = NULL, lease_until = NULL WHERE status = 'running'";
        Ok(on_pool!(self, |pool| {
            sqlx::query(CANCELLED).bind(at).execute(pool).await?;
            sqlx::query(REQUEUE).execute(pool).await?.rows_affected()
        }))
    }

    /// Tell every process listening (Postgres) that a job changed: `payload` is small, its
    /// listeners read the row again.
    pub async fn notify_jobs(&self, payload: &str) -> Result<(), StorageError> {
        if let Database::Postgres(pool) = self {
            sqlx::query("SELECT pg_notify($1, $2)").bind(JOB_CHANNEL).bind(payload).execute(pool).await?;
        }
        Ok(())
    }
}
