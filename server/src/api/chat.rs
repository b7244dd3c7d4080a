//! `POST /chat`: one JSON answer, or server-sent events with `"stream": true`.

use super::{error::Result, json::ApiJson};
use crate::{
    auth::Caller,
    service::AppState,
    service::{self, error::ServiceError},
};
use app::types::{ChatEvent, ChatRequest, ChatResponse, ErrorBody};
use axum::{
    extract::State,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Json,
};
use std::{convert::Infallible, time::Duration};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};

/// Dropping the response (the client went away) closes the turn's channel, which cancels the
/// generation before its next token; what was generated so far is stored.
#[utoipa::path(post, path = "/chat", tag = "chat", request_body = ChatRequest,
    responses(
        (status = 200, description = "The reply as JSON; with `stream: true`, server-sent events named after each `ChatEvent` (`start`, `reasoning`, `answer`, `reply`, `image_job`, `done`, `error`) with the event as data",
            content((ChatResponse = "application/json"), (ChatEvent = "text/event-stream"))),
        (status = 400, description = "Malformed JSON or an empty body", body = ErrorBody), (status = 404, description = "`conversation_id` is not one of this user's conversations", body = ErrorBody),
        (status = 415, description = "The body is not JSON (send Content-Type: application/json)", body = ErrorBody), (status = 422, description = "A field is invalid; `error.param` names it (a JSON path) and the message says what is allowed", body = ErrorBody), (status = 503, description = "A queue is full, or the model is missing, loading or failed; `Retry-After` says when to try again when waiting helps", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))), (status = 504, description = "Not finished within the configured timeout", body = ErrorBody), (status = 500, description = "Internal error; the log has the details under the response's x-request-id", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn post_chat(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Response> {
    let stream = request.stream;
    let events = service::chat::start(&state, &caller, request).await?;
    if stream {
        let events = ReceiverStream::new(events).map(|event| Ok::<_, Infallible>(sse_event(&event)));
        return Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response());
    }
    let timeout = Duration::from_secs(state.config.llm.request_timeout_secs);
    match tokio::time::timeout(timeout, service::chat::finish(events)).await {
        Ok(response) => Ok(Json(response?).into_response()),
        Err(_) => Err(ServiceError::Timeout(format!(
            "no complete reply within {} s (REQUEST_TIMEOUT_SECS); the reply was stopped and what was \
             written so far is saved; ask with \"stream\": true to see it as it comes",
            timeout.as_secs()
        ))
        .into()),
    }
}

/// One SSE event named after the `ChatEvent` variant, its JSON as data.
pub fn sse_event(event: &ChatEvent) -> Event {
    Event::default().event(event.name()).json_data(event).unwrap_or_else(|_| Event::default().event("error"))
}
