use crate::{models::cached_repos, state::AppState};
use app::types::{DatabaseHealth, HealthReport, ModelState, RuntimeHealth, ServiceStatus};

/// The service's state: database, OpenVINO runtime and each model.
pub async fn report(state: &AppState) -> HealthReport {
    let database_ok = state.db.ping().await.is_ok();
    let models = vec![state.llm.health(), state.sd.health()];
    let all_ready = models.iter().all(|m| m.state == ModelState::Ready);
    let models_dir = state.config.models_dir();
    let cached_models = tokio::task::spawn_blocking(move || cached_repos(&models_dir)).await.unwrap_or_default();
    HealthReport {
        status: if database_ok && all_ready { ServiceStatus::Ok } else { ServiceStatus::Degraded },
        version: env!("CARGO_PKG_VERSION").to_string(),
        use_mocks: state.config.use_mocks,
        auto_download_models: state.config.auto_download_models,
        cached_models,
        models,
        database: DatabaseHealth { backend: state.db.backend().to_string(), ok: database_ok },
        openvino: state
            .runtime
            .as_ref()
            .map(|rt| RuntimeHealth { version: rt.version.clone(), library: rt.library.display().to_string() }),
    }
}
