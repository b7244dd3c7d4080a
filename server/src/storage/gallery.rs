//! The gallery: an account's images, searched and filtered, and their share links.

use super::{images::COLUMNS, now_ms, on_pool, search, Database, ImageRow, Revocable, StorageError};

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct GalleryFilter<'a> {
    pub user_id: Option<&'a str>,
    /// Words that must all appear in the prompt (as prefixes).
    pub query: Option<&'a str>,
    /// Made at or after (Unix ms).
    pub from: Option<i64>,
    /// Made before (Unix ms).
    pub to: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ShareRow {
    pub id: String,
    pub image_id: String,
    pub account_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

const SHARE: &str = "id, image_id, account_id, created_at, expires_at, revoked_at";

impl Database {
    /// The account's images, newest first.
    pub async fn gallery(&self, account_id: &str, f: &GalleryFilter<'_>) -> Result<Vec<ImageRow>, StorageError> {
        let terms = f.query.map(search::terms).unwrap_or_default();
        // Placeholders are numbered in order of first use (SQLite reads `$N` by position), so
        // the text condition, when there is one, is $5 and the paging follows it.
        let (text, q, page) = match (terms.is_empty(), self) {
            (true, _) => ("", String::new(), "LIMIT $5 OFFSET $6"),
            (false, Database::Sqlite(_)) => (
                "AND id IN (SELECT image_id FROM images_fts WHERE images_fts MATCH $5)",
                search::fts5(&terms),
                "LIMIT $6 OFFSET $7",
            ),
            (false, Database::Postgres(_)) => {
                ("AND search @@ to_tsquery('simple', $5)", search::tsquery(&terms), "LIMIT $6 OFFSET $7")
            }
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM images WHERE account_id = $1 AND ($2 IS NULL OR user_id = $2) \
             AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) {text} \
             ORDER BY created_at DESC, id DESC {page}"
        );
        Ok(on_pool!(self, |pool| {
            let mut query = sqlx::query_as(&sql).bind(account_id).bind(f.user_id).bind(f.from).bind(f.to);
            if !terms.is_empty() {
                query = query.bind(&q);
            }
            query.bind(f.limit).bind(f.offset).fetch_all(pool).await?
        }))
    }

    /// Delete one of the account's images (its row and shares); the caller removes the file.
    pub async fn delete_image(&self, account_id: &str, id: &str) -> Result<Option<ImageRow>, StorageError> {
        let sql = format!("DELETE FROM images WHERE id = $1 AND account_id = $2 RETURNING {COLUMNS}");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(pool).await?))
    }

    pub async fn insert_share(&self, row: &ShareRow) -> Result<(), StorageError> {
        let sql = format!("INSERT INTO shares ({SHARE}) VALUES ($1, $2, $3, $4, $5, NULL)");
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(&row.id)
            .bind(&row.image_id)
            .bind(&row.account_id)
            .bind(row.created_at)
            .bind(row.expires_at)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    pub async fn shares(&self, account_id: &str, image_id: &str) -> Result<Vec<ShareRow>, StorageError> {
        let sql = format!("SELECT {SHARE} FROM shares WHERE image_id = $1 AND account_id = $2 ORDER BY created_at, id");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(image_id).bind(account_id).fetch_all(pool).await?))
    }

    /// A share that still works (not revoked, not expired, its owner's account not disabled),
    /// with its image. Shares of the accounts-off owner ('local', no row) work while they last.
    pub async fn live_share(&self, id: &str) -> Result<Option<(ShareRow, ImageRow)>, StorageError> {
        let columns: Vec<String> = SHARE.split(", ").map(|c| format!("s.{c}")).collect();
        let sql = format!(
            "SELECT {} FROM shares s LEFT JOIN accounts a ON a.id = s.account_id \
             WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND a.disabled_at IS NULL",
            columns.join(", ")
        );
        let share: Option<ShareRow> =
            on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).bind(now_ms()).fetch_optional(pool).await?);
        let Some(share) = share else { return Ok(None) };
        Ok(self.image(&share.account_id, &share.image_id).await?.map(|image| (share, image)))
    }

    /// Revoke one of the account's shares; false when it has no such live share.
    pub async fn revoke_share(&self, account_id: &str, id: &str) -> Result<bool, StorageError> {
        self.revoke(Revocable::Share, account_id, id).await
    }
}
