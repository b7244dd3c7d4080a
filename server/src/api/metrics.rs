//! `GET /metrics` in Prometheus' text format: on the `METRICS_ADDR` listener for anyone who can
//! reach it (keep it on a private address), and on the main port for admins (an admin's API key
//! as a bearer token, for a Prometheus that can only reach that port).

use super::error::Result;
use crate::{auth::Caller, service, service::AppState};
use app::types::ErrorBody;
use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// The text format's media type, as Prometheus asks for it.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics` on the main port (admins only).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Every `duet_*` metric in Prometheus' text format (see the README's table)",
                  content((String = "text/plain"))),
              (status = 403, description = "Not an admin", body = ErrorBody),
              (status = 404, description = "Metrics are off (METRICS_ADDR is not set)", body = ErrorBody)))]
pub async fn admin_metrics(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    caller.require_admin().map_err(service::error::ServiceError::from)?;
    scrape(&state).await
}

/// The `METRICS_ADDR` listener: `/metrics` and nothing else.
pub fn listener_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(|State(state): State<AppState>| async move { scrape(&state).await }))
        .with_state(state)
}

async fn scrape(state: &AppState) -> Result<Response> {
    let text = service::metrics::render(state).await?;
    Ok(([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response())
}
