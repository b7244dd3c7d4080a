use crate::{service, state::AppState};
use app::types::HealthReport;
use axum::{extract::State, Json};

/// `GET /health`: always answers (no authentication); `status` says whether everything is ready.
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, description = "Always answers (no authentication); `status` says whether everything is ready", body = HealthReport)))]
#[tracing::instrument(skip_all)]
pub async fn get_health(State(state): State<AppState>) -> Json<HealthReport> {
    Json(service::health::report(&state).await)
}
