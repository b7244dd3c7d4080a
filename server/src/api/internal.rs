//! A worker's listener (`ROLE=worker`): `GET /health` for anyone, and the routes web processes
//! call with the shared secret: `POST /internal/generate` (a chat generation, streamed as one
//! JSON event per line), `POST /internal/cancel/{id}`, `GET /internal/replies/{reply_id}` (a
//! reply finished after its web process went away).

use super::error::ApiError;
use crate::{
    inference::remote::wire::{GenerateCall, SECRET_HEADER},
    service::{self, health::Audience, AppState},
};
use axum::{
    body::{Body, Bytes},
    extract::{Path, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures::StreamExt;

pub fn worker_router(state: AppState) -> Router {
    let internal = Router::new()
        .route("/internal/generate", post(generate))
        .route("/internal/cancel/{id}", post(cancel))
        .route("/internal/replies/{reply_id}", get(reply))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_secret));
    Router::new()
        .route("/health", get(health))
        .merge(internal)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Whether the request carries the shared secret (compared in constant time).
fn has_secret(state: &AppState, headers: &HeaderMap) -> bool {
    let Ok(Some(secret)) = state.config.cluster.secret() else { return false };
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    given.len() == secret.len() && given.iter().zip(secret.as_bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

async fn require_secret(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !has_secret(&state, request.headers()) {
        let message = format!("this is a worker: web processes call it with {SECRET_HEADER} (WORKER_SECRET)");
        return (StatusCode::UNAUTHORIZED, message).into_response();
    }
    next.run(request).await
}

async fn health(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let audience = if has_secret(&state, &headers) { Audience::Admin } else { Audience::Public };
    Json(service::health::report(&state, audience).await).into_response()
}

async fn generate(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let call: GenerateCall = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        param: None,
        code: "invalid_json",
        message: format!("not a generation request: {e}"),
    })?;
    let events = match state.serving.start(&state, call).await? {
        Ok(events) => events,
        Err(failure) => {
            let body = serde_json::to_string(&failure).unwrap_or_default();
            return Ok(
                (StatusCode::UNPROCESSABLE_ENTITY, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            );
        }
    };
    let lines = tokio_stream::wrappers::ReceiverStream::new(events).map(|event| {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response())
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> StatusCode {
    if state.serving.cancel(&id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn reply(State(state): State<AppState>, Path(reply_id): Path<String>) -> Response {
    match state.serving.take_parked(&reply_id).await {
        Some(completion) => Json(completion).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
