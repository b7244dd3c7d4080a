use crate::{
    auth::{Caller, Role},
    config::ModelSpec,
    models::cached_repos,
    service::AppState,
};
use app::types::{DatabaseHealth, HealthReport, ModelHealth, ModelState, RuntimeHealth, ServiceStatus};

/// Who reads the report. Everyone sees each model's state, progress and what the engine is doing;
/// folders, library locations and raw error texts (which name files and folders) only an admin,
/// or anyone when accounts are off (then everyone is the local owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Admin,
    Public,
}

impl Audience {
    pub fn of(state: &AppState, caller: Option<&Caller>) -> Audience {
        let admin = caller.is_some_and(|c| c.role == Role::Admin);
        if admin || !state.config.auth.required {
            Audience::Admin
        } else {
            Audience::Public
        }
    }
}

/// The service's state: database, OpenVINO runtime and each model.
pub async fn report(state: &AppState, audience: Audience) -> HealthReport {
    let database_ok = state.db.ping().await.is_ok();
    let mut models = vec![state.llm.health(), state.sd.health()];
    if !state.config.models.use_mocks {
        let (llm, sd) = engine_settings(&state.config);
        models[0].settings = Some(llm);
        models[1].settings = Some(sd);
    }
    if audience == Audience::Public {
        for (model, spec) in models.iter_mut().zip([&state.config.models.llm_model, &state.config.models.sd_model]) {
            redact(model, spec);
        }
    }
    let all_ready = models.iter().all(|m| m.state == ModelState::Ready);
    let models_dir = state.config.models_dir();
    let cached_models = tokio::task::spawn_blocking(move || cached_repos(&models_dir)).await.unwrap_or_default();
    HealthReport {
        status: if database_ok && all_ready { ServiceStatus::Ok } else { ServiceStatus::Degraded },
        version: env!("CARGO_PKG_VERSION").to_string(),
        use_mocks: state.config.models.use_mocks,
        auto_download_models: state.config.models.auto_download_models,
        cached_models,
        models,
        database: DatabaseHealth { backend: state.db.backend().to_string(), ok: database_ok },
        endpoints: super::cluster::health(&state.remote, audience == Audience::Admin),
        openvino: state.runtime.as_ref().map(|rt| RuntimeHealth {
            version: rt.version.clone(),
            library: (audience == Audience::Admin).then(|| rt.library.display().to_string()),
        }),
    }
}

/// What each engine runs with on this CPU, and why: for `/health` and the start-up log.
pub fn engine_settings(config: &crate::config::Config) -> (String, String) {
    use crate::inference::cpu::{sd_settings, CpuClass, Precision};
    let class = CpuClass::detect();
    let llm = match config.llm.precision {
        Precision::Fast => format!(
            "{} CPU: LLM_PRECISION=fast (OpenVINO's own precision for it: bf16 where the CPU has the units)",
            class.name()
        ),
        Precision::F32 => {
            format!("{} CPU: LLM_PRECISION=f32 (f32 throughout: the same tokens on every machine)", class.name())
        }
    };
    let sd = sd_settings(class, config.images.precision, config.images.unet_linear);
    let sd = format!(
        "{} CPU: SD_PRECISION={}, UNet weights {}; {}",
        class.name(),
        config.images.precision.name(),
        sd.unet_linear,
        sd.why
    );
    (llm, sd)
}

/// A model's health without folders or raw error texts: a local model is named by its folder's
/// name, and `detail` says what the state means instead of what went wrong.
fn redact(model: &mut ModelHealth, spec: &ModelSpec) {
    if let ModelSpec::Local(dir) = spec {
        model.id = dir.file_name().map_or_else(|| "local model".into(), |n| n.to_string_lossy().into_owned());
    }
    model.path = None;
    model.detail = model.detail.as_ref().map(|_| {
        match model.state {
            ModelState::Missing => {
                "not downloaded yet; an admin can fetch it (server download-models, or AUTO_DOWNLOAD_MODELS=true)"
            }
            ModelState::Error => "failed to load; an admin can see why on /health or in the server log",
            _ => "an admin can see the details on /health",
        }
        .to_string()
    });
}
