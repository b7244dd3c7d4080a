use crate::{api::middleware::identify, service, service::AppState};
use app::types::HealthReport;
use axum::{extract::State, http::HeaderMap, Json};
use tower_sessions::Session;

/// `GET /health`: always answers (no authentication); `status` says whether everything is ready.
/// Folders, library locations and raw error texts only for an admin (or with accounts off).
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, description = "Always answers (no authentication); `status` says whether everything is ready. Absolute paths, the OpenVINO library's location and raw error texts are shown only to an admin (or with AUTH_REQUIRED=false)", body = HealthReport)))]
#[tracing::instrument(skip_all)]
pub async fn get_health(State(state): State<AppState>, headers: HeaderMap, session: Session) -> Json<HealthReport> {
    // Bad credentials are no error here: the caller just sees the public report.
    let caller = identify(&state, &headers, Some(session)).await.ok().flatten();
    let audience = service::health::Audience::of(&state, caller.as_ref());
    Json(service::health::report(&state, audience).await)
}
