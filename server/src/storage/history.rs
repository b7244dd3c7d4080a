//! Conversation history: list, read whole, rename, delete, and full-text search (SQLite FTS5,
//! Postgres tsvector). Every query is scoped by the owning account.

use super::{
    chat::CONVERSATION,
    on_pool,
    search::{self, HIT_END, HIT_START},
    ConversationRow, Database, MessageRow, StorageError,
};

/// A stored message with everything known about it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct FullMessageRow {
    /// What the chat reads back for context.
    #[sqlx(flatten)]
    pub message: MessageRow,
    pub model: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub ttft_ms: Option<i64>,
    pub total_ms: Option<i64>,
    pub thought_ms: Option<i64>,
    pub finish_reason: Option<String>,
    pub created_at: i64,
}

/// A search match: a conversation title (no message) or a message.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SearchRow {
    pub conversation_id: String,
    pub title: String,
    pub user_id: String,
    pub message_id: Option<String>,
    pub role: Option<String>,
    /// The matched text around the hits, hits between `HIT_START` and `HIT_END`.
    pub snippet: String,
    pub created_at: i64,
}

impl Database {
    /// The account's conversations (of one end user, when given), most recently active first.
    pub async fn conversations(
        &self,
        account_id: &str,
        user_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<ConversationRow>, StorageError> {
        let sql = format!(
            "SELECT {CONVERSATION} FROM conversations WHERE account_id = $1 AND ($2 IS NULL OR user_id = $2) \
             ORDER BY updated_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(account_id)
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?))
    }

    /// Every message of a conversation, in order.
    pub async fn messages(&self, conversation_id: &str) -> Result<Vec<FullMessageRow>, StorageError> {
        const SQL: &str = "SELECT id, seq, role, content, reasoning, image_prompt, model, prompt_tokens, \
                           completion_tokens, ttft_ms, total_ms, thought_ms, finish_reason, created_at \
                           FROM messages WHERE conversation_id = $1 ORDER BY seq";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(conversation_id).fetch_all(pool).await?))
    }

    /// `(message_id, image_id)` of the images a conversation's messages made, oldest first.
    pub async fn conversation_images(&self, conversation_id: &str) -> Result<Vec<(String, String)>, StorageError> {
        const SQL: &str = "SELECT message_id, id FROM images WHERE conversation_id = $1 AND message_id IS NOT NULL \
                           ORDER BY created_at, id";
        Ok(on_pool!(self, |pool| sqlx::query_as(SQL).bind(conversation_id).fetch_all(pool).await?))
    }

    /// Rename one of the account's conversations; false when it has no such conversation.
    pub async fn rename_conversation(&self, account_id: &str, id: &str, title: &str) -> Result<bool, StorageError> {
        const SQL: &str = "UPDATE conversations SET title = $1 WHERE id = $2 AND account_id = $3";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(title)
            .bind(id)
            .bind(account_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Delete one of the account's conversations and its messages (images stay in the gallery,
    /// no longer linked); false when it has no such conversation.
    pub async fn delete_conversation(&self, account_id: &str, id: &str) -> Result<bool, StorageError> {
        const SQL: &str = "DELETE FROM conversations WHERE id = $1 AND account_id = $2";
        let done =
            on_pool!(self, |pool| sqlx::query(SQL).bind(id).bind(account_id).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// Titles and messages matching every word of `query` (as prefixes), best first: title matches
    /// then message matches, at most `limit` of each.
    pub async fn search_history(
        &self,
        account_id: &str,
        user_id: Option<&str>,
        query: &str,
        limit: i64,
    ) -> Result<Vec<SearchRow>, StorageError> {
        let terms = search::terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let (start, end) = (HIT_START as u32, HIT_END as u32);
        let (titles, messages, q) = match self {
            Database::Sqlite(_) => (
                format!(
                    "SELECT c.id AS conversation_id, c.title, c.user_id, NULL AS message_id, NULL AS role, \
                     highlight(conversations_fts, 0, char({start}), char({end})) AS snippet, c.updated_at AS created_at \
                     FROM conversations_fts f JOIN conversations c ON c.id = f.conversation_id \
                     WHERE conversations_fts MATCH $1 AND c.account_id = $2 AND ($3 IS NULL OR c.user_id = $3) \
                     ORDER BY rank LIMIT $4"
                ),
                format!(
                    "SELECT c.id AS conversation_id, c.title, c.user_id, m.id AS message_id, m.role, \
                     snippet(messages_fts, 0, char({start}), char({end}), '…', 16) AS snippet, m.created_at \
                     FROM messages_fts f JOIN messages m ON m.id = f.message_id \
                     JOIN conversations c ON c.id = m.conversation_id \
                     WHERE messages_fts MATCH $1 AND c.account_id = $2 AND ($3 IS NULL OR c.user_id = $3) \
                     ORDER BY rank LIMIT $4"
                ),
                search::fts5(&terms),
            ),
            Database::Postgres(_) => {
                let options = format!("'StartSel=' || chr({start}) || ', StopSel=' || chr({end})");
                (
                    format!(
                        "SELECT c.id AS conversation_id, c.title, c.user_id, NULL::text AS message_id, \
                         NULL::text AS role, ts_headline('simple', c.title, q, {options} || ', HighlightAll=true') \
                         AS snippet, c.updated_at AS created_at \
                         FROM conversations c, to_tsquery('simple', $1) q \
                         WHERE c.search @@ q AND c.account_id = $2 AND ($3::text IS NULL OR c.user_id = $3) \
                         ORDER BY ts_rank(c.search, q) DESC, c.updated_at DESC LIMIT $4"
                    ),
                    format!(
                        "SELECT c.id AS conversation_id, c.title, c.user_id, m.id AS message_id, m.role, \
                         ts_headline('simple', m.content, q, {options} || ', MaxWords=24, MinWords=8, \
                         MaxFragments=2, FragmentDelimiter=…') AS snippet, m.created_at \
                         FROM messages m JOIN conversations c ON c.id = m.conversation_id, to_tsquery('simple', $1) q \
                         WHERE m.search @@ q AND c.account_id = $2 AND ($3::text IS NULL OR c.user_id = $3) \
                         ORDER BY ts_rank(m.search, q) DESC, m.created_at DESC LIMIT $4"
                    ),
                    search::tsquery(&terms),
                )
            }
        };
        let mut rows = Vec::new();
        for sql in [&titles, &messages] {
            let found: Vec<SearchRow> = on_pool!(self, |pool| sqlx::query_as(sql)
                .bind(&q)
                .bind(account_id)
                .bind(user_id)
                .bind(limit)
                .fetch_all(pool)
                .await?);
            rows.extend(found);
        }
        Ok(rows)
    }
}
