//! Finished images: the recipe, who asked, where it came from, and the file the server named.

use super::{on_pool, Database, StorageError};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ImageRow {
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
    /// A name the server made, inside the images folder.
    pub file_name: String,
    pub created_at: i64,
}

pub(super) const COLUMNS: &str =
    "id, account_id, user_id, conversation_id, message_id, prompt, negative_prompt, steps, guidance_scale, \
                       seed, width, height, scheduler, model, file_name, created_at";

impl Database {
    /// Store an image's row; one already there under the id stays (a job drawn twice, by a
    /// process whose lease ran out and the one that took it over, gives the same picture).
    pub async fn insert_image(&self, row: &ImageRow) -> Result<(), StorageError> {
        let sql = format!(
            "INSERT INTO images ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (id) DO NOTHING"
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
            .bind(&row.file_name)
            .bind(row.created_at)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// One of the account's images.
    pub async fn image(&self, account_id: &str, id: &str) -> Result<Option<ImageRow>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM images WHERE id = $1 AND account_id = $2");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(pool).await?))
    }
}
