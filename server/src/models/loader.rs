//! Start-up loading: each model found on disk is compiled on its own engine thread, and its slot
//! moves from `loading` to `ready` (or `error` with the reason).

use super::ModelSlot;
use crate::inference::{
    diffusion::{SdCompileOptions, SdEngine},
    engine::{ChatEngine, ImageEngine},
    llm::{EngineOptions, LlmEngine},
    InferenceError,
};
use std::sync::Arc;

/// The engines whose model files were found (a missing model has none), real or mock.
#[derive(Clone, Default)]
pub struct Engines {
    pub llm: Option<Arc<dyn ChatEngine>>,
    pub sd: Option<Arc<dyn ImageEngine>>,
}

/// Start one engine thread per model whose files are present.
pub fn start(
    llm: &Arc<ModelSlot>,
    sd: &Arc<ModelSlot>,
    llm_options: EngineOptions,
    sd_options: SdCompileOptions,
) -> std::io::Result<Engines> {
    let llm_engine = match loadable(llm) {
        Some(dir) => {
            tracing::info!(model = %dir.display(), device = %llm.device, "loading chat model");
            let slot = llm.clone();
            let engine = LlmEngine::start(dir, llm_options, move |outcome| match outcome {
                Ok(info) => {
                    tracing::info!(
                        ms = info.load_ms as u64,
                        context = info.context_limit,
                        sliced_logits = info.sliced_logits,
                        "chat model ready"
                    );
                    slot.set_ready();
                }
                Err(err) => report_failure(&slot, err),
            })?;
            Some(Arc::new(engine) as Arc<dyn ChatEngine>)
        }
        None => None,
    };
    let sd_engine = match loadable(sd) {
        Some(dir) => {
            tracing::info!(model = %dir.display(), device = %sd.device, "loading image model");
            let slot = sd.clone();
            let engine = SdEngine::start(dir, sd_options, move |outcome| match outcome {
                Ok(info) => {
                    tracing::info!(ms = info.load_ms as u64, "image model ready");
                    slot.set_ready();
                }
                Err(err) => report_failure(&slot, err),
            })?;
            Some(Arc::new(engine) as Arc<dyn ImageEngine>)
        }
        None => None,
    };
    Ok(Engines { llm: llm_engine, sd: sd_engine })
}

/// The folder to load, when the slot's files were all found.
fn loadable(slot: &ModelSlot) -> Option<std::path::PathBuf> {
    slot.path().filter(|_| slot.state() == app::types::ModelState::Loading)
}

fn report_failure(slot: &ModelSlot, err: InferenceError) {
    tracing::error!(role = ?slot.role, error = %err, "model failed to load");
    slot.set_error(err.to_string());
}
