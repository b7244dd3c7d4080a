//! Server functions: thin doors into the same service layer the REST API uses.

use crate::types::HealthReport;
use leptos::prelude::*;

/// The same report as `GET /health`.
#[server]
pub async fn get_health() -> Result<HealthReport, ServerFnError> {
    let backend = expect_context::<crate::ssr::SharedBackend>();
    Ok(backend.health().await)
}
