//! Conversations and their messages.

use super::{on_pool, BeginWrite, Database, StorageError};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ConversationRow {
    pub id: String,
    pub account_id: String,
    pub user_id: String,
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Chat settings (null: the model's default).
    pub system_prompt: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<i32>,
}

/// The columns of a `ConversationRow`.
pub(super) const CONVERSATION: &str =
    "id, account_id, user_id, title, created_at, updated_at, system_prompt, temperature, top_p, max_tokens";

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub seq: i32,
    pub role: String,
    pub content: String,
    pub reasoning: Option<String>,
    pub image_prompt: Option<String>,
}

/// A message to append to a conversation (its position is the next free one).
#[derive(Clone, Debug, Default)]
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub conversation_id: &'a str,
    pub role: &'a str,
    pub content: &'a str,
    pub reasoning: Option<&'a str>,
    pub image_prompt: Option<&'a str>,
    pub model: Option<&'a str>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub ttft_ms: Option<i64>,
    pub total_ms: Option<i64>,
    /// How long the model reasoned before it answered.
    pub thought_ms: Option<i64>,
    pub finish_reason: Option<&'a str>,
}

/// A conversation's chat settings as stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChatSettingsRow<'a> {
    pub system_prompt: Option<&'a str>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<i32>,
}

impl Database {
    /// One of the account's conversations.
    pub async fn conversation(&self, account_id: &str, id: &str) -> Result<Option<ConversationRow>, StorageError> {
        let sql = format!("SELECT {CONVERSATION} FROM conversations WHERE id = $1 AND account_id = $2");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(pool).await?))
    }

    /// Replace the chat settings of one of the account's conversations; false when it has no
    /// such conversation.
    pub async fn set_chat_settings(
        &self,
        account_id: &str,
        id: &str,
        settings: &ChatSettingsRow<'_>,
    ) -> Result<bool, StorageError> {
        const SQL: &str = "UPDATE conversations SET system_prompt = $1, temperature = $2, top_p = $3, max_tokens = $4 \
                           WHERE id = $5 AND account_id = $6";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(settings.system_prompt)
            .bind(settings.temperature)
            .bind(settings.top_p)
            .bind(settings.max_tokens)
            .bind(id)
            .bind(account_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    pub async fn create_conversation(
        &self,
        id: &str,
        account_id: &str,
        user_id: &str,
        title: &str,
    ) -> Result<(), StorageError> {
        const SQL: &str = "INSERT INTO conversations (id, account_id, user_id, title, created_at, updated_at) \
                           VALUES ($1, $2, $3, $4, $5, $5)";
        let now = super::now_ms();
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(id)
            .bind(account_id)
            .bind(user_id)
            .bind(title)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// The last `limit` messages of a conversation, oldest first.
    pub async fn recent_messages(&self, conversation_id: &str, limit: i64) -> Result<Vec<MessageRow>, StorageError> {
        const SQL: &str = "SELECT id, seq, role, content, reasoning, image_prompt FROM messages \
                           WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2";
        let mut rows: Vec<MessageRow> =
            on_pool!(self, |pool| sqlx::query_as(SQL).bind(conversation_id).bind(limit).fetch_all(pool).await?);
        rows.reverse();
        Ok(rows)
    }

    /// The position (`seq`) of a user message of the conversation, if it holds one with this id.
    pub async fn user_message_seq(&self, conversation_id: &str, message_id: &str) -> Result<Option<i32>, StorageError> {
        const SQL: &str = "SELECT seq FROM messages WHERE id = $1 AND conversation_id = $2 AND role = 'user'";
        Ok(on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(message_id)
            .bind(conversation_id)
            .fetch_optional(pool)
            .await?))
    }

    /// Conversations whose last message is the user's: a turn whose reply never came.
    pub async fn unanswered_conversations(&self) -> Result<Vec<String>, StorageError> {
        const SQL: &str = "SELECT m.conversation_id FROM messages m WHERE m.role = 'user' \
                           AND m.seq = (SELECT MAX(seq) FROM messages WHERE conversation_id = m.conversation_id) \
                           ORDER BY m.conversation_id";
        Ok(on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_all(pool).await?))
    }

    /// Where each turn (a user message) of the conversation starts, oldest first, before `before`.
    pub async fn user_turn_seqs(&self, conversation_id: &str, before: i32) -> Result<Vec<i32>, StorageError> {
        const SQL: &str = "SELECT seq FROM messages WHERE conversation_id = $1 AND role = 'user' AND seq < $2 \
                           ORDER BY seq";
        Ok(on_pool!(self, |pool| sqlx::query_scalar(SQL).bind(conversation_id).bind(before).fetch_all(pool).await?))
    }

    /// The conversation's messages from position `from` up to (not including) `before`, oldest first.
    pub async fn messages_between(
        &self,
        conversation_id: &str,
        from: i32,
        before: i32,
    ) -> Result<Vec<MessageRow>, StorageError> {
        const SQL: &str = "SELECT id, seq, role, content, reasoning, image_prompt FROM messages \
                           WHERE conversation_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(conversation_id)
            .bind(from)
            .bind(before)
            .fetch_all(pool)
            .await?))
    }

    /// Delete a user message and every later one (edit and resend, regenerate); false when the
    /// conversation holds no such user message. Images made by deleted replies stay in the gallery.
    pub async fn truncate_conversation(&self, conversation_id: &str, message_id: &str) -> Result<bool, StorageError> {
        const SQL: &str = "DELETE FROM messages WHERE conversation_id = $1 AND seq >= \
                           (SELECT seq FROM messages WHERE id = $2 AND conversation_id = $1 AND role = 'user')";
        let deleted = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(conversation_id)
            .bind(message_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(deleted > 0)
    }

    /// Append a message after the conversation's last one and mark the conversation updated.
    /// The position is taken inside the insert, and `(conversation_id, seq)` is unique, so two
    /// writers can never interleave silently: the loser gets an error, not a reordered history.
    pub async fn append_message(&self, m: &NewMessage<'_>) -> Result<(), StorageError> {
        const INSERT: &str = "INSERT INTO messages (id, conversation_id, seq, role, content, reasoning, \
                              image_prompt, model, prompt_tokens, completion_tokens, ttft_ms, total_ms, \
                              thought_ms, finish_reason, created_at) \
                              SELECT $1, $2, COALESCE(MAX(seq) + 1, 0), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 \
                              FROM messages WHERE conversation_id = $2";
        const TOUCH: &str = "UPDATE conversations SET updated_at = $1 WHERE id = $2";
        let now = super::now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(INSERT)
                .bind(m.id)
                .bind(m.conversation_id)
                .bind(m.role)
                .bind(m.content)
                .bind(m.reasoning)
                .bind(m.image_prompt)
                .bind(m.model)
                .bind(m.prompt_tokens)
                .bind(m.completion_tokens)
                .bind(m.ttft_ms)
                .bind(m.total_ms)
                .bind(m.thought_ms)
                .bind(m.finish_reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(TOUCH).bind(now).bind(m.conversation_id).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
