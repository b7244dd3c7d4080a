//! What each account (and each of its end users) generated per UTC day, for daily quotas.

use super::{on_pool, Database, StorageError};

/// Days since 1970-01-01 (UTC) of a Unix-milliseconds time.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub tokens: i64,
    pub images: i64,
}

impl Database {
    /// Add to a day's usage of one end user (`""` for requests that named none).
    pub async fn add_usage(
        &self,
        account_id: &str,
        user_id: &str,
        day: i64,
        tokens: i64,
        images: i64,
    ) -> Result<(), StorageError> {
        const SQL: &str = "INSERT INTO usage_daily (account_id, user_id, day, tokens, images) VALUES ($1, $2, $3, $4, $5) \
                           ON CONFLICT (account_id, user_id, day) DO UPDATE \
                           SET tokens = usage_daily.tokens + excluded.tokens, images = usage_daily.images + excluded.images";
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(account_id)
            .bind(user_id)
            .bind(day)
            .bind(tokens)
            .bind(images)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// A day's usage of the whole account (`user_id` None) or of one end user.
    pub async fn usage(&self, account_id: &str, user_id: Option<&str>, day: i64) -> Result<Usage, StorageError> {
        // SUM of BIGINT is NUMERIC on Postgres: cast back so both backends give an i64.
        const SQL: &str = "SELECT CAST(COALESCE(SUM(tokens), 0) AS BIGINT), CAST(COALESCE(SUM(images), 0) AS BIGINT) \
                           FROM usage_daily WHERE account_id = $1 AND day = $2 AND ($3 IS NULL OR user_id = $3)";
        let (tokens, images): (i64, i64) =
            on_pool!(self, |pool| sqlx::query_as(SQL).bind(account_id).bind(day).bind(user_id).fetch_one(pool).await?);
        Ok(Usage { tokens, images })
    }
}
