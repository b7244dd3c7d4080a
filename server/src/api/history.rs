//! Conversation history over HTTP: list, read, rename, delete, export, search.

use super::{
    error::Result,
    json::{ApiJson, ApiQuery},
};
use crate::{auth::Caller, service::history, service::AppState};
use app::types::{
    ConversationDetail, ConversationList, ConversationSummary, ConversationUpdate, ErrorBody, SearchResults,
};
use axum::{
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this end user's conversations.
    pub user_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// Conversations to skip (from `next_offset`).
    pub offset: Option<u32>,
}

/// `GET /conversations`: the caller's conversations, most recently active first.
#[utoipa::path(get, path = "/conversations", tag = "history", params(ListQuery),
    responses((status = 200, body = ConversationList), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ConversationList>> {
    Ok(Json(history::list(&state, &caller, q.user_id, q.limit, q.offset).await?))
}

/// `GET /conversations/{id}`: one conversation with every message (reasoning, timings, models,
/// images).
#[utoipa::path(get, path = "/conversations/{id}", tag = "history", params(("id" = String, Path, description = "A conversation id (`conversation_id` of a chat reply)")),
    responses((status = 200, body = ConversationDetail), (status = 404, description = "No such id, or not the caller's", body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ConversationDetail>> {
    Ok(Json(history::detail(&state, &caller, &id).await?))
}

/// `PATCH /conversations/{id}`: rename, and/or replace its chat settings (system prompt,
/// temperature, top-p, reply length; used by every later turn that does not set its own).
#[utoipa::path(patch, path = "/conversations/{id}", tag = "history", params(("id" = String, Path, description = "A conversation id (`conversation_id` of a chat reply)")), request_body = ConversationUpdate,
    responses((status = 200, body = ConversationSummary), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<ConversationUpdate>,
) -> Result<Json<ConversationSummary>> {
    Ok(Json(history::update(&state, &caller, &id, update).await?))
}

/// `DELETE /conversations/{id}`: the conversation and its messages (its images stay in the gallery).
#[utoipa::path(delete, path = "/conversations/{id}", tag = "history", params(("id" = String, Path, description = "A conversation id (`conversation_id` of a chat reply)")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    history::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (default) or `markdown`.
    pub format: Option<String>,
}

/// `GET /conversations/{id}/export`: a download, as JSON or Markdown.
#[utoipa::path(get, path = "/conversations/{id}/export", tag = "history", params(("id" = String, Path, description = "A conversation id (`conversation_id` of a chat reply)"), ExportQuery),
    responses((status = 200, description = "`conversation-{id}.json` (a ConversationDetail) or `.md`",
                  content((ConversationDetail = "application/json"), (String = "text/markdown"))),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response> {
    let markdown = match q.format.as_deref() {
        None | Some("json") => false,
        Some("markdown" | "md") => true,
        Some(other) => {
            return Err(crate::service::error::ServiceError::invalid(
                "format",
                format!("must be json or markdown, got {other:?}"),
            )
            .into())
        }
    };
    let detail = history::detail(&state, &caller, &id).await?;
    let (body, kind, ext) = if markdown {
        (history::markdown(&detail), "text/markdown; charset=utf-8", "md")
    } else {
        (serde_json::to_string_pretty(&detail).unwrap_or_default(), "application/json", "json")
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    let disposition = format!("attachment; filename=\"conversation-{}.{ext}\"", detail.conversation.id);
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to find (every word must appear; a word matches as a prefix).
    pub q: Option<String>,
    /// Only this end user's conversations.
    pub user_id: Option<String>,
    /// Most hits of each kind (titles, messages), 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// `GET /search`: conversation titles and messages matching the words, with highlighted snippets.
#[utoipa::path(get, path = "/search", tag = "history", params(SearchQuery),
    responses((status = 200, body = SearchResults), (status = 422, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResults>> {
    Ok(Json(history::search(&state, &caller, q.q, q.user_id, q.limit).await?))
}
