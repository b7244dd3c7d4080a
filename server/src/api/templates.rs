//! Prompt templates over HTTP.

use super::{error::Result, json::ApiJson};
use crate::{auth::Caller, service::templates, service::AppState};
use app::types::{ErrorBody, NewPromptTemplate, PromptTemplate};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};

/// `GET /templates`: the caller's saved snippets, oldest first.
#[utoipa::path(get, path = "/templates", tag = "templates", responses((status = 200, body = Vec<PromptTemplate>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<PromptTemplate>>> {
    Ok(Json(templates::list(&state, &caller).await?))
}

/// `POST /templates`: save a snippet.
#[utoipa::path(post, path = "/templates", tag = "templates", request_body = NewPromptTemplate,
    responses((status = 201, body = PromptTemplate), (status = 409, description = "The account has 200 templates already", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewPromptTemplate>,
) -> Result<(StatusCode, Json<PromptTemplate>)> {
    Ok((StatusCode::CREATED, Json(templates::create(&state, &caller, new).await?)))
}

/// `DELETE /templates/{id}`.
#[utoipa::path(delete, path = "/templates/{id}", tag = "templates", params(("id" = String, Path, description = "A template id")),
    responses((status = 204), (status = 404, description = "No such id, or not the caller's", body = ErrorBody)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    templates::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
