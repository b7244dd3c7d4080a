//! The caller's conversation history: list, read, rename, delete, search, export.

use super::error::{Result, ServiceError};
use crate::{
    auth::Caller,
    service::AppState,
    storage::{search, ConversationRow, FullMessageRow, JobRow, MessageRow},
};
use app::types::{
    ChatDefaults, ChatSettings, ConversationDetail, ConversationList, ConversationSummary, ConversationUpdate, JobInfo,
    MessageView, SearchHit, SearchResults, SnippetPart,
};
use std::fmt::Write;

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_QUERY_CHARS: usize = 200;

/// A page size in 1..=200 (default 50), or what is wrong with it.
/// How far into a list a page may start: beyond any list anyone keeps, and a bound the API
/// document states.
pub const MAX_OFFSET: u32 = 1_000_000;

pub fn page_offset(offset: Option<u32>) -> Result<u32> {
    match offset {
        Some(n) if n > MAX_OFFSET => {
            Err(ServiceError::invalid("offset", format!("must be from 0 to {MAX_OFFSET}, got {n}")))
        }
        other => Ok(other.unwrap_or(0)),
    }
}

pub fn page_size(limit: Option<u32>) -> Result<u32> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ServiceError::invalid("limit", format!("must be from 1 to {MAX_PAGE}, got {n}"))),
    }
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    user_id: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
) -> Result<ConversationList> {
    let user = super::validate::user_id("user_id", user_id)?;
    let limit = page_size(limit)?;
    let offset = page_offset(offset)?;
    let rows = state.db.conversations(&caller.account_id, user.as_deref(), limit.into(), offset.into()).await?;
    let next_offset = (rows.len() == limit as usize).then_some(offset + limit);
    Ok(ConversationList { conversations: rows.into_iter().map(summary).collect(), next_offset })
}

/// One of the caller's conversations with every message; anyone else's is "not found".
pub async fn detail(state: &AppState, caller: &Caller, id: &str) -> Result<ConversationDetail> {
    let row = owned(state, caller, id).await?;
    let images = state.db.conversation_images(id).await?;
    let jobs = unfinished_jobs(state, caller, id).await?;
    let messages = state.db.messages(id).await?.into_iter().map(|m| message_view(m, &images, &jobs)).collect();
    Ok(ConversationDetail { conversation: summary(row), messages })
}

/// Rename a conversation and/or replace its chat settings: both are checked before either is
/// stored.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    update: ConversationUpdate,
) -> Result<ConversationSummary> {
    if update.title.is_none() && update.settings.is_none() {
        return Err(ServiceError::invalid("title", "give a title or settings (or both)"));
    }
    let title = match update.title.as_deref() {
        None => None,
        Some(sent) => {
            let title = sent.trim();
            if title.is_empty() || sent.chars().count() > MAX_TITLE_CHARS {
                return Err(ServiceError::invalid("title", format!("must be 1 to {MAX_TITLE_CHARS} characters")));
            }
            Some(title)
        }
    };
    let settings = update.settings.map(super::validate::chat_settings).transpose()?;
    owned(state, caller, id).await?;
    if let Some(title) = title {
        if !state.db.rename_conversation(&caller.account_id, id, title).await? {
            return Err(ServiceError::NotFound("conversation"));
        }
    }
    if let Some(settings) = &settings {
        if !state.db.set_chat_settings(&caller.account_id, id, &super::chat::settings_row(settings)).await? {
            return Err(ServiceError::NotFound("conversation"));
        }
    }
    Ok(summary(owned(state, caller, id).await?))
}

/// What settings left out come to: the chat model's sampling defaults (once it has loaded its
/// files) and the server's reply length.
pub fn chat_defaults(state: &AppState) -> ChatDefaults {
    let sampling = state.llm.path().and_then(|dir| crate::inference::llm::files::sampling_defaults(&dir));
    ChatDefaults {
        temperature: sampling.map(|(t, _)| t),
        top_p: sampling.map(|(_, p)| p),
        max_tokens: state.config.llm.chat_max_tokens,
    }
}

/// A stored conversation's chat settings.
pub fn settings_of(row: &ConversationRow) -> ChatSettings {
    ChatSettings {
        system_prompt: row.system_prompt.clone(),
        temperature: row.temperature,
        top_p: row.top_p,
        max_tokens: row.max_tokens.and_then(|n| u32::try_from(n).ok()),
    }
}

pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> Result<()> {
    if !state.db.delete_conversation(&caller.account_id, id).await? {
        return Err(ServiceError::NotFound("conversation"));
    }
    tracing::info!(account = %caller.account_id, conversation = %id, "conversation deleted");
    Ok(())
}

/// Titles and messages matching every word of `q` (prefixes count), with snippets.
pub async fn search(
    state: &AppState,
    caller: &Caller,
    q: Option<String>,
    user_id: Option<String>,
    limit: Option<u32>,
) -> Result<SearchResults> {
    let query = q.unwrap_or_default();
    // What the OpenAPI document can state portably (JSON Schema's `\w` is ASCII-only): an ASCII
    // letter or digit, or any other script's character. A query of only symbols outside ASCII
    // (an emoji) is then a search that finds nothing, not an error.
    let has_word = query.chars().any(|c| c.is_ascii_alphanumeric() || !c.is_ascii());
    if !has_word || query.chars().count() > MAX_QUERY_CHARS {
        return Err(ServiceError::invalid(
            "q",
            format!("must hold a word to look for (at most {MAX_QUERY_CHARS} characters)"),
        ));
    }
    let user = super::validate::user_id("user_id", user_id)?;
    let limit = page_size(limit)?;
    let rows = state.db.search_history(&caller.account_id, user.as_deref(), &query, limit.into()).await?;
    let hits = rows
        .into_iter()
        .map(|r| SearchHit {
            conversation_id: r.conversation_id,
            title: r.title,
            user_id: r.user_id,
            message_id: r.message_id,
            role: r.role,
            snippet: search::segments(&r.snippet).into_iter().map(|(text, hit)| SnippetPart { text, hit }).collect(),
            created_at: r.created_at,
        })
        .collect();
    Ok(SearchResults { query, hits })
}

async fn owned(state: &AppState, caller: &Caller, id: &str) -> Result<ConversationRow> {
    state.db.conversation(&caller.account_id, id).await?.ok_or(ServiceError::NotFound("conversation"))
}

fn summary(row: ConversationRow) -> ConversationSummary {
    ConversationSummary {
        settings: settings_of(&row),
        id: row.id,
        user_id: row.user_id,
        title: row.title,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// The conversation's pictures still queued or drawing, by the message that asked, with their
/// places in the shared queue and estimates.
async fn unfinished_jobs(state: &AppState, caller: &Caller, id: &str) -> Result<Vec<(String, JobInfo)>> {
    let here = |row: &JobRow| row.conversation_id.as_deref() == Some(id) && row.account_id == caller.account_id;
    let jobs = state.jobs.unfinished(here).await?;
    Ok(jobs.into_iter().filter_map(|(row, info)| Some((row.message_id?, info))).collect())
}

fn message_view(m: FullMessageRow, images: &[(String, String)], jobs: &[(String, JobInfo)]) -> MessageView {
    let MessageRow { id, seq, role, content, reasoning, image_prompt } = m.message;
    let image_ids = images.iter().filter(|(message, _)| *message == id).map(|(_, image)| image.clone()).collect();
    let image_job = jobs.iter().rev().find(|(message, _)| *message == id).map(|(_, job)| job.clone());
    MessageView {
        image_ids,
        image_job,
        id,
        seq: seq.max(0) as u32,
        role,
        content,
        reasoning,
        image_prompt,
        model: m.model,
        prompt_tokens: m.prompt_tokens.map(|n| n.max(0) as u32),
        completion_tokens: m.completion_tokens.map(|n| n.max(0) as u32),
        ttft_ms: m.ttft_ms,
        total_ms: m.total_ms,
        thought_ms: m.thought_ms,
        finish_reason: m.finish_reason,
        created_at: m.created_at,
    }
}

/// A Unix-milliseconds time as `2026-11-23 07:40 UTC`.
fn when(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// The conversation as a Markdown document: each message under its speaker and time, reasoning
/// folded in a `<details>` block, pictures linked.
pub fn markdown(detail: &ConversationDetail) -> String {
    let c = &detail.conversation;
    let mut out = format!("# {}\n\n", c.title.trim());
    let _ = writeln!(out, "*{} · user {} · started {}*\n", c.id, c.user_id, when(c.created_at));
    for m in &detail.messages {
        let who = if m.role == "user" { "User" } else { "Assistant" };
        let model = m.model.as_deref().map(|name| format!(" · {name}")).unwrap_or_default();
        let _ = writeln!(out, "## {who} · {}{model}\n", when(m.created_at));
        if let Some(reasoning) = m.reasoning.as_deref().filter(|r| !r.trim().is_empty()) {
            let _ = writeln!(out, "<details><summary>Thinking</summary>\n\n{}\n\n</details>\n", reasoning.trim());
        }
        if !m.content.trim().is_empty() {
            let _ = writeln!(out, "{}\n", m.content.trim());
        }
        if let Some(prompt) = &m.image_prompt {
            let _ = writeln!(out, "*Picture: {}*\n", prompt.trim());
        }
        for id in &m.image_ids {
            let _ = writeln!(out, "![{}](/images/{id}.png)\n", m.image_prompt.as_deref().unwrap_or("image").trim());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: &str) -> MessageView {
        MessageView {
            id: "m".into(),
            seq: 0,
            role: role.into(),
            content: content.into(),
            reasoning: None,
            image_prompt: None,
            image_ids: vec![],
            image_job: None,
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            ttft_ms: None,
            thought_ms: None,
            total_ms: None,
            finish_reason: None,
            created_at: 1_795_419_600_000,
        }
    }

    #[test]
    fn markdown_export_folds_reasoning_and_links_pictures() {
        let reply = MessageView {
            reasoning: Some("They want a fox.".into()),
            image_prompt: Some("a red fox".into()),
            image_ids: vec!["i1".into()],
            model: Some("deepseek".into()),
            ..message("assistant", "Here is a fox.")
        };
        let detail = ConversationDetail {
            conversation: ConversationSummary {
                id: "c1".into(),
                user_id: "u1".into(),
                title: "Foxes".into(),
                created_at: 1_795_419_600_000,
                updated_at: 0,
                settings: Default::default(),
            },
            messages: vec![message("user", "Draw a fox"), reply],
        };
        assert_eq!(
            markdown(&detail),
            "# Foxes\n\n*c1 · user u1 · started 2026-11-23 07:40 UTC*\n\n\
             ## User · 2026-11-23 07:40 UTC\n\nDraw a fox\n\n\
             ## Assistant · 2026-11-23 07:40 UTC · deepseek\n\n\
             <details><summary>Thinking</summary>\n\nThey want a fox.\n\n</details>\n\n\
             Here is a fox.\n\n*Picture: a red fox*\n\n![a red fox](/images/i1.png)\n\n"
        );
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(page_size(None).unwrap(), 50);
        assert_eq!(page_size(Some(200)).unwrap(), 200);
        assert!(page_size(Some(0)).is_err() && page_size(Some(201)).is_err());
    }
}
