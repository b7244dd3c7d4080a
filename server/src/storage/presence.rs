//! Which processes are alive (each writes a heartbeat) and which chat replies each is writing, so
//! that a reply whose process died can be found and marked by another process.

use super::{on_pool, Database, StorageError};

/// A reply whose process stopped while writing it.
#[derive(Debug, sqlx::FromRow)]
pub struct OrphanReply {
    pub message_id: String,
    pub conversation_id: String,
    pub account_id: String,
    /// The account's end user (`""`: none named).
    pub user_id: String,
}

/// What a process announces about itself.
pub struct ProcessInfo<'a> {
    pub name: &'a str,
    /// `all`, `web` or `worker`.
    pub role: &'a str,
    /// Where web processes reach a worker.
    pub url: Option<&'a str>,
}

/// A chat reply that began being written.
pub struct ReplyStarted<'a> {
    pub message_id: &'a str,
    pub conversation_id: &'a str,
    pub account_id: &'a str,
    /// The account's end user (`""`: none named).
    pub user_id: &'a str,
    pub process: &'a str,
    pub at: i64,
}

impl Database {
    /// This process is alive now; `role` and (a worker's) `url` say what it is and where.
    pub async fn heartbeat(&self, me: &ProcessInfo<'_>, started_at: i64, now: i64) -> Result<(), StorageError> {
        const SQL: &str = "INSERT INTO processes (name, started_at, seen_at, role, url) VALUES ($1, $2, $3, $4, $5) \
                           ON CONFLICT (name) DO UPDATE SET seen_at = $3, role = $4, url = $5";
        // Processes silent for a day are long gone: their rows only take room.
        const FORGET: &str = "DELETE FROM processes WHERE seen_at < $1";
        on_pool!(self, |pool| {
            sqlx::query(SQL).bind(me.name).bind(started_at).bind(now).bind(me.role).bind(me.url).execute(pool).await?;
            sqlx::query(FORGET).bind(now - 86_400_000).execute(pool).await?;
        });
        Ok(())
    }

    /// Workers seen since `alive_since` that announced a URL: (name, url), by name.
    pub async fn live_workers(&self, alive_since: i64) -> Result<Vec<(String, String)>, StorageError> {
        const SQL: &str = "SELECT name, url FROM processes WHERE role = 'worker' AND url IS NOT NULL \
                           AND seen_at >= $1 ORDER BY name";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(alive_since).fetch_all(pool).await?))
    }

    /// A reply of `account`'s end user `user` is being written by `process`, to be stored as
    /// `message_id`.
    pub async fn reply_started(&self, reply: &ReplyStarted<'_>) -> Result<(), StorageError> {
        const SQL: &str = "INSERT INTO replies_in_flight (message_id, conversation_id, account_id, user_id, process, \
                           started_at) VALUES ($1, $2, $3, $4, $5, $6)";
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(reply.message_id)
            .bind(reply.conversation_id)
            .bind(reply.account_id)
            .bind(reply.user_id)
            .bind(reply.process)
            .bind(reply.at)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Replies being written by processes other than `process`: (the account's, its end user's).
    pub async fn replies_elsewhere(
        &self,
        account: &str,
        user: &str,
        process: &str,
    ) -> Result<(i64, i64), StorageError> {
        const SQL: &str = "SELECT COUNT(*), COALESCE(SUM(CASE WHEN user_id = $2 THEN 1 ELSE 0 END), 0) \
                           FROM replies_in_flight WHERE account_id = $1 AND process <> $3";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(account).bind(user).bind(process).fetch_one(pool).await?))
    }

    /// The reply was stored (or its turn ended without one).
    pub async fn reply_ended(&self, message_id: &str) -> Result<(), StorageError> {
        const SQL: &str = "DELETE FROM replies_in_flight WHERE message_id = $1";
        on_pool!(self, |pool| sqlx::query(SQL).bind(message_id).execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Take the replies in flight of processes not seen since `alive_since` (each taken by one
    /// caller only).
    pub async fn take_orphan_replies(&self, alive_since: i64) -> Result<Vec<OrphanReply>, StorageError> {
        const SQL: &str = "DELETE FROM replies_in_flight WHERE process NOT IN \
                           (SELECT name FROM processes WHERE seen_at >= $1) \
                           RETURNING message_id, conversation_id, account_id, user_id";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(alive_since).fetch_all(pool).await?))
    }

    /// The id and role of a conversation's last message.
    pub async fn last_message(&self, conversation_id: &str) -> Result<Option<(String, String)>, StorageError> {
        const SQL: &str = "SELECT id, role FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT 1";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(conversation_id).fetch_optional(pool).await?))
    }
}
