//! Accounts and their API keys.

use super::{now_ms, on_pool, Database, Revocable, StorageError};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AccountRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    /// Sessions logged in before this time (Unix ms) are over.
    pub sessions_since: i64,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A live API key with what authentication needs of its account.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct KeyOwnerRow {
    pub key_id: String,
    pub last_used_at: Option<i64>,
    pub account_id: String,
    pub username: String,
    pub role: String,
    pub disabled_at: Option<i64>,
}

/// What creating an account came to.
#[derive(Clone, Debug, PartialEq)]
pub enum NewAccount {
    Created(AccountRow),
    /// The username is taken.
    Taken,
    /// Only the first account could be made (closed registration), and there is one already.
    Closed,
}

const ACCOUNT: &str = "id, username, password_hash, role, created_at, disabled_at, sessions_since";
const KEY: &str = "id, account_id, name, prefix, created_at, last_used_at, revoked_at";

impl Database {
    /// Create an account; the first one ever made is the admin, and with `only_first` (closed
    /// registration) no other is made. Both are decided inside one serialized transaction, so
    /// concurrent sign-ups cannot make two admins, nor slip a second account in: SQLite takes the
    /// write lock up front (`BEGIN IMMEDIATE`), Postgres an advisory lock held to commit (under
    /// READ COMMITTED two inserts would otherwise both see an empty table).
    pub async fn create_account(
        &self,
        id: &str,
        username: &str,
        password_hash: &str,
        only_first: bool,
    ) -> Result<NewAccount, StorageError> {
        let insert = format!(
            "INSERT INTO accounts ({ACCOUNT}) \
             SELECT $1, $2, $3, CASE WHEN EXISTS (SELECT 1 FROM accounts) THEN 'user' ELSE 'admin' END, $4, NULL, 0 \
             WHERE $5 = 0 OR NOT EXISTS (SELECT 1 FROM accounts) \
             ON CONFLICT (username) DO NOTHING RETURNING {ACCOUNT}"
        );
        const HAS_ANY: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM accounts LIMIT 1) AS one";
        let now = now_ms();
        let only_first = i64::from(only_first);
        // The insert and the count, in a transaction `tx` that holds the lock.
        macro_rules! insert_in {
            ($tx:ident) => {{
                let row: Option<AccountRow> = sqlx::query_as(&insert)
                    .bind(id)
                    .bind(username)
                    .bind(password_hash)
                    .bind(now)
                    .bind(only_first)
                    .fetch_optional(&mut *$tx)
                    .await?;
                let any: i64 = sqlx::query_scalar(HAS_ANY).fetch_one(&mut *$tx).await?;
                $tx.commit().await?;
                (row, any)
            }};
        }
        let (row, any) = match self {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                insert_in!(tx)
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7429380001)").execute(&mut *tx).await?;
                insert_in!(tx)
            }
        };
        Ok(match row {
            Some(row) => NewAccount::Created(row),
            None if only_first == 1 && any > 0 => NewAccount::Closed,
            None => NewAccount::Taken,
        })
    }

    pub async fn has_accounts(&self) -> Result<bool, StorageError> {
        const SQL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM accounts LIMIT 1) AS one";
        let n: i64 = on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_one(pool).await?);
        Ok(n > 0)
    }

    pub async fn account(&self, id: &str) -> Result<Option<AccountRow>, StorageError> {
        let sql = format!("SELECT {ACCOUNT} FROM accounts WHERE id = $1");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
    }

    pub async fn account_by_name(&self, username: &str) -> Result<Option<AccountRow>, StorageError> {
        let sql = format!("SELECT {ACCOUNT} FROM accounts WHERE username = $1");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(username).fetch_optional(pool).await?))
    }

    pub async fn accounts(&self) -> Result<Vec<AccountRow>, StorageError> {
        let sql = format!("SELECT {ACCOUNT} FROM accounts ORDER BY created_at, id");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await?))
    }

    /// Disable (with the time) or re-enable an account; false when there is no such account.
    pub async fn set_account_disabled(&self, id: &str, disabled: bool) -> Result<bool, StorageError> {
        const SQL: &str = "UPDATE accounts SET disabled_at = $1 WHERE id = $2";
        let at = disabled.then(now_ms);
        let done = on_pool!(self, |pool| sqlx::query(SQL).bind(at).bind(id).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    pub async fn insert_api_key(&self, row: &ApiKeyRow, key_hash: &str) -> Result<(), StorageError> {
        let sql = format!("INSERT INTO api_keys ({KEY}, key_hash) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)");
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(&row.id)
            .bind(&row.account_id)
            .bind(&row.name)
            .bind(&row.prefix)
            .bind(row.created_at)
            .bind(key_hash)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// The live key with this hash and its account, in one round trip (this runs on every
    /// request made with a key).
    pub async fn api_key_owner(&self, key_hash: &str) -> Result<Option<KeyOwnerRow>, StorageError> {
        const SQL: &str =
            "SELECT k.id AS key_id, k.last_used_at, a.id AS account_id, a.username, a.role, a.disabled_at \
                           FROM api_keys k JOIN accounts a ON a.id = k.account_id \
                           WHERE k.key_hash = $1 AND k.revoked_at IS NULL";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(key_hash).fetch_optional(pool).await?))
    }

    pub async fn touch_api_key(&self, id: &str) -> Result<(), StorageError> {
        const SQL: &str = "UPDATE api_keys SET last_used_at = $1 WHERE id = $2";
        on_pool!(self, |pool| sqlx::query(SQL).bind(now_ms()).bind(id).execute(pool).await.map(drop)?);
        Ok(())
    }

    /// An account's keys, revoked ones included (they show when they were revoked).
    pub async fn api_keys(&self, account_id: &str) -> Result<Vec<ApiKeyRow>, StorageError> {
        let sql = format!("SELECT {KEY} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(account_id).fetch_all(pool).await?))
    }

    /// A new password hash; every session logged in before `sessions_since` ends.
    pub async fn set_password(&self, account_id: &str, hash: &str, sessions_since: i64) -> Result<bool, StorageError> {
        const SQL: &str = "UPDATE accounts SET password_hash = $1, sessions_since = $2 WHERE id = $3";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(hash)
            .bind(sessions_since)
            .bind(account_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Revoke one of the account's keys; false when it has no such live key.
    pub async fn revoke_api_key(&self, account_id: &str, id: &str) -> Result<bool, StorageError> {
        self.revoke(Revocable::ApiKey, account_id, id).await
    }
}
