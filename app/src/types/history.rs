//! Conversation history: `/conversations`, `/search`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ConversationSummary {
    pub id: String,
    /// The end user it belongs to.
    pub user_id: String,
    pub title: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last message.
    pub updated_at: i64,
    /// The chat settings kept with it.
    #[serde(default)]
    pub settings: ChatSettings,
}

/// Chat settings kept with a conversation and used by each of its turns that does not set its
/// own; a field left null means the model's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChatSettings {
    /// Instructions added after Duet's own system prompt (which asks for the picture block), at
    /// most 4000 characters; empty or null: none.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// 0 (greedy) to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Above 0, at most 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Most tokens to generate per reply, reasoning included (1 to 8192).
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// What a conversation gets when its settings leave a field null: the chat model's
/// `generation_config.json` and the server's reply length.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChatDefaults {
    /// Null until the chat model has loaded.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
    /// The `offset` of the next page, when there may be one.
    pub next_offset: Option<u32>,
}

/// One stored message, with how it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MessageView {
    pub id: String,
    pub seq: u32,
    /// `user` or `assistant`.
    pub role: String,
    /// What was said (for replies: the answer, without reasoning or image-prompt block).
    pub content: String,
    /// The model's reasoning, kept apart (never sent back to the model).
    pub reasoning: Option<String>,
    /// The picture the reply asked for.
    pub image_prompt: Option<String>,
    /// Ids of the images this message made (`/images/{id}.png`).
    pub image_ids: Vec<String>,
    /// The picture this reply asked for while it is still queued or being drawn (follow it at
    /// `/jobs/{id}/events`); null once it has ended, or when there is none.
    #[serde(default)]
    pub image_job: Option<super::JobInfo>,
    pub model: Option<String>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub ttft_ms: Option<i64>,
    pub total_ms: Option<i64>,
    /// How long the model reasoned before it answered, in milliseconds; null without reasoning.
    #[serde(default)]
    pub thought_ms: Option<i64>,
    /// As the reply's `finish_reason`; `interrupted`: the server stopped while writing it (the
    /// reply is empty: it is stored when it ends).
    pub finish_reason: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ConversationDetail {
    pub conversation: ConversationSummary,
    pub messages: Vec<MessageView>,
}

/// `PATCH /conversations/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ConversationUpdate {
    /// 1 to 200 characters.
    #[serde(default)]
    pub title: Option<String>,
    /// Replace the conversation's chat settings (every field: a null one goes back to the
    /// model's default).
    #[serde(default)]
    pub settings: Option<ChatSettings>,
}

/// A run of snippet text; `hit` marks the words that matched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SnippetPart {
    pub text: String,
    pub hit: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SearchHit {
    pub conversation_id: String,
    pub title: String,
    pub user_id: String,
    /// The matching message; absent when the title matched.
    pub message_id: Option<String>,
    pub role: Option<String>,
    /// The matched text around the hits (plain text, never markup).
    pub snippet: Vec<SnippetPart>,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SearchResults {
    pub query: String,
    pub hits: Vec<SearchHit>,
}

/// What the chat page needs: who new conversations are for, and the one being shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatData {
    /// The end-user id of new conversations: the account's name (`local` without accounts).
    pub user_id: String,
    pub conversation: Option<ConversationDetail>,
    /// What chat settings left null come to.
    pub defaults: ChatDefaults,
}

/// A saved snippet to insert into the message or prompt box.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PromptTemplate {
    pub id: String,
    pub name: String,
    /// The text inserted.
    pub body: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// `POST /templates`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewPromptTemplate {
    /// 1 to 100 characters.
    #[serde(default)]
    pub name: Option<String>,
    /// 1 to 4000 characters.
    #[serde(default)]
    pub body: Option<String>,
}
