//! Start-up loading: each model found on disk is compiled on its own engine thread, and its slot
//! moves from `loading` to `ready` (or `error` with the reason).

use super::ModelSlot;
use crate::inference::{
    diffusion::SdModels, engine::EngineHost, llm::LlmModel, new_core, InferenceError,
};
use std::{path::Path, sync::Arc};

/// The engine threads that loaded successfully started (a slot that was missing has none).
#[derive(Clone, Default)]
pub struct Engines {
    pub llm: Option<EngineHost<LlmModel>>,
    pub sd: Option<EngineHost<SdModels>>,
}

/// Spawn one engine thread per model whose files are present.
pub fn start(llm: &Arc<ModelSlot>, sd: &Arc<ModelSlot>) -> std::io::Result<Engines> {
    Ok(Engines {
        llm: spawn(llm, "llm-engine", |dir, device| {
            LlmModel::load(&mut new_core()?, dir, device)
        })?,
        sd: spawn(sd, "sd-engine", |dir, device| {
            SdModels::load(&mut new_core()?, dir, device)
        })?,
    })
}

fn spawn<M: 'static>(
    slot: &Arc<ModelSlot>,
    thread: &str,
    load: fn(&Path, &str) -> Result<M, InferenceError>,
) -> std::io::Result<Option<EngineHost<M>>> {
    let Some(dir) = slot
        .path()
        .filter(|_| slot.state() == app::types::ModelState::Loading)
    else {
        return Ok(None);
    };
    let device = slot.device.clone();
    let report = slot.clone();
    let host = EngineHost::spawn(
        thread,
        move || {
            let started = std::time::Instant::now();
            tracing::info!(model = %dir.display(), %device, "loading model");
            let model = load(&dir, &device)?;
            tracing::info!(model = %dir.display(), ms = started.elapsed().as_millis() as u64, "model ready");
            Ok(model)
        },
        move |outcome| match outcome {
            Ok(()) => report.set_ready(),
            Err(err) => {
                tracing::error!(role = ?report.role, error = %err, "model failed to load");
                report.set_error(err.to_string());
            }
        },
    )?;
    Ok(Some(host))
}
