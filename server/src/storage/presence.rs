//! Which processes are alive (each writes a heartbeat) and which chat replies each is writing, so
//! that a reply whose process died can be found and marked by another process.

use super::{on_pool, Database, StorageError};

impl Database {
    /// This process is alive now.
    pub async fn heartbeat(&self, process: &str, started_at: i64, now: i64) -> Result<(), StorageError> {
        const SQL: &str = "INSERT INTO processes (name, started_at, seen_at) VALUES ($1, $2, $3) \
                           ON CONFLICT (name) DO UPDATE SET seen_at = $3";
        // Processes silent for a day are long gone: their rows only take room.
        const FORGET: &str = "DELETE FROM processes WHERE seen_at < $1";
        on_pool!(self, |pool| {
            sqlx::query(SQL).bind(process).bind(started_at).bind(now).execute(pool).await?;
            sqlx::query(FORGET).bind(now - 86_400_000).execute(pool).await?;
        });
        Ok(())
    }

    /// A reply is being written by `process`, to be stored as `message_id`.
    pub async fn reply_started(
        &self,
        message_id: &str,
        conversation_id: &str,
        process: &str,
        at: i64,
    ) -> Result<(), StorageError> {
        const SQL: &str =
            "INSERT INTO replies_in_flight (message_id, conversation_id, process, started_at) VALUES ($1, $2, $3, $4)";
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(message_id)
            .bind(conversation_id)
            .bind(process)
            .bind(at)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// The reply was stored (or its turn ended without one).
    pub async fn reply_ended(&self, message_id: &str) -> Result<(), StorageError> {
        const SQL: &str = "DELETE FROM replies_in_flight WHERE message_id = $1";
        on_pool!(self, |pool| sqlx::query(SQL).bind(message_id).execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Take the replies in flight of processes not seen since `alive_since` (each taken by one
    /// caller only): (message id, conversation id).
    pub async fn take_orphan_replies(&self, alive_since: i64) -> Result<Vec<(String, String)>, StorageError> {
        const SQL: &str = "DELETE FROM replies_in_flight WHERE process NOT IN \
                           (SELECT name FROM processes WHERE seen_at >= $1) RETURNING message_id, conversation_id";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(alive_since).fetch_all(pool).await?))
    }

    /// The id and role of a conversation's last message.
    pub async fn last_message(&self, conversation_id: &str) -> Result<Option<(String, String)>, StorageError> {
        const SQL: &str = "SELECT id, role FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT 1";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(conversation_id).fetch_optional(pool).await?))
    }
}
