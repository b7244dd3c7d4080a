//! Image jobs as rows: written when a job is accepted and at each change after (started, a step
//! done, ended), so a restarted process finds what was queued or drawing, and a job is answered
//! for after it has left the queue's memory.

use super::{on_pool, Database, StorageError};

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
}

const COLUMNS: &str = "id, account_id, user_id, conversation_id, message_id, prompt, negative_prompt, steps, \
                       guidance_scale, seed, width, height, scheduler, model, status, step, error, nsfw, attempts, \
                       created_at, started_at, finished_at";

impl Database {
    pub async fn insert_job(&self, row: &JobRow) -> Result<(), StorageError> {
        let sql = format!(
            "INSERT INTO image_jobs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20, $21, $22)"
        );
        on_pool!(self, |pool| sqlx::query(&sql)
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
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// The job starts drawing (again, after a restart: from the first step).
    pub async fn job_started(&self, id: &str, at: i64) -> Result<(), StorageError> {
        const SQL: &str = "UPDATE image_jobs SET status = 'running', step = 0, started_at = $2, \
                           attempts = attempts + 1 WHERE id = $1";
        on_pool!(self, |pool| sqlx::query(SQL).bind(id).bind(at).execute(pool).await.map(drop)?);
        Ok(())
    }

    /// A step of the running job is done.
    pub async fn job_step(&self, id: &str, step: i32) -> Result<(), StorageError> {
        const SQL: &str = "UPDATE image_jobs SET step = $2 WHERE id = $1 AND status = 'running'";
        on_pool!(self, |pool| sqlx::query(SQL).bind(id).bind(step).execute(pool).await.map(drop)?);
        Ok(())
    }

    /// The job ended: `done`, `failed` (with `error`) or `cancelled`.
    pub async fn job_ended(
        &self,
        id: &str,
        status: &str,
        step: i32,
        error: Option<&str>,
        nsfw: Option<bool>,
        at: i64,
    ) -> Result<(), StorageError> {
        const SQL: &str =
            "UPDATE image_jobs SET status = $2, step = $3, error = $4, nsfw = $5, finished_at = $6 WHERE id = $1";
        let nsfw = nsfw.map(i32::from);
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(id)
            .bind(status)
            .bind(step)
            .bind(error)
            .bind(nsfw)
            .bind(at)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// One of the account's jobs.
    pub async fn job(&self, account_id: &str, id: &str) -> Result<Option<JobRow>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM image_jobs WHERE id = $1 AND account_id = $2");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(pool).await?))
    }

    /// The conversation's jobs still queued or drawing, oldest first.
    pub async fn unfinished_jobs_in(&self, conversation_id: &str) -> Result<Vec<JobRow>, StorageError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM image_jobs WHERE conversation_id = $1 AND status IN ('queued', 'running') \
             ORDER BY created_at, id"
        );
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(conversation_id).fetch_all(pool).await?))
    }

    /// Jobs queued or drawing when the last process stopped, oldest first, all queued again
    /// (their drawing starts over: the same seed gives the same picture).
    pub async fn requeue_unfinished_jobs(&self) -> Result<Vec<JobRow>, StorageError> {
        const REQUEUE: &str = "UPDATE image_jobs SET status = 'queued', step = 0 WHERE status = 'running'";
        let sql = format!("SELECT {COLUMNS} FROM image_jobs WHERE status = 'queued' ORDER BY created_at, id");
        Ok(on_pool!(self, |pool| {
            sqlx::query(REQUEUE).execute(pool).await?;
            sqlx::query_as(&sql).fetch_all(pool).await?
        }))
    }
}
