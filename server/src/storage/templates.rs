//! Prompt templates: saved snippets, one list per account.

use super::{on_pool, Database, StorageError};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub body: String,
    pub created_at: i64,
}

impl Database {
    /// The account's templates, oldest first (the order they were made in).
    pub async fn templates(&self, account_id: &str) -> Result<Vec<TemplateRow>, StorageError> {
        const SQL: &str = "SELECT id, account_id, name, body, created_at FROM prompt_templates \
                           WHERE account_id = $1 ORDER BY created_at, id";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(account_id).fetch_all(pool).await?))
    }

    /// Store a template unless the account already has `max` of them; false when it has.
    pub async fn insert_template(&self, row: &TemplateRow, max: i64) -> Result<bool, StorageError> {
        // The count is taken inside the insert, so two requests at once cannot both pass it.
        const SQL: &str = "INSERT INTO prompt_templates (id, account_id, name, body, created_at) \
                           SELECT $1, $2, $3, $4, $5 \
                           WHERE (SELECT COUNT(*) FROM prompt_templates WHERE account_id = $2) < $6";
        let inserted = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(&row.id)
            .bind(&row.account_id)
            .bind(&row.name)
            .bind(&row.body)
            .bind(row.created_at)
            .bind(max)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(inserted == 1)
    }

    /// Delete one of the account's templates; false when it has no such template.
    pub async fn delete_template(&self, account_id: &str, id: &str) -> Result<bool, StorageError> {
        const SQL: &str = "DELETE FROM prompt_templates WHERE id = $1 AND account_id = $2";
        let deleted =
            on_pool!(self, |pool| sqlx::query(SQL).bind(id).bind(account_id).execute(pool).await?.rows_affected());
        Ok(deleted == 1)
    }
}
