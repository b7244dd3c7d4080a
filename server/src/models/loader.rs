//! Loading: each model whose files are on disk is compiled on its own engine thread, and its slot
//! moves from `loading` to `ready` (or `error` with the reason). A model downloaded while the
//! server runs is loaded the same way once its files are complete.

use super::ModelSlot;
use crate::inference::{
    diffusion::{SdCompileOptions, SdEngine},
    engine::{ChatEngine, ImageEngine},
    llm::{EngineOptions, EngineStats, LlmEngine},
    InferenceError,
};
use crate::telemetry::catalogue::MODEL_LOAD;
use app::types::EngineActivity;
use std::sync::{Arc, OnceLock};

/// The engines, real or mock; each is set once, when its model's files are there (at start-up,
/// or after a background download).
#[derive(Clone, Default)]
pub struct Engines {
    llm: Arc<OnceLock<Arc<dyn ChatEngine>>>,
    sd: Arc<OnceLock<Arc<dyn ImageEngine>>>,
}

impl Engines {
    pub fn new(llm: Option<Arc<dyn ChatEngine>>, sd: Option<Arc<dyn ImageEngine>>) -> Engines {
        let engines = Engines::default();
        if let Some(engine) = llm {
            let _ = engines.llm.set(engine);
        }
        if let Some(engine) = sd {
            let _ = engines.sd.set(engine);
        }
        engines
    }

    /// Set an engine that needs no loading here (a mock, workers, an endpoint).
    pub fn set_llm(&self, engine: Arc<dyn ChatEngine>) {
        let _ = self.llm.set(engine);
    }

    pub fn set_sd(&self, engine: Arc<dyn ImageEngine>) {
        let _ = self.sd.set(engine);
    }

    pub fn llm(&self) -> Option<Arc<dyn ChatEngine>> {
        self.llm.get().cloned()
    }

    pub fn sd(&self) -> Option<Arc<dyn ImageEngine>> {
        self.sd.get().cloned()
    }

    /// Start the chat engine thread, if the slot's files were all found.
    pub fn start_llm(&self, slot: &Arc<ModelSlot>, options: EngineOptions) -> std::io::Result<()> {
        let Some(dir) = loadable(slot) else { return Ok(()) };
        tracing::info!(model = %dir.display(), device = %slot.device, "loading chat model");
        let ready = slot.clone();
        let engine = LlmEngine::start(dir, options, move |outcome| match outcome {
            Ok(info) => {
                tracing::info!(
                    ms = info.load_ms as u64,
                    context = info.context_limit,
                    attention = ?info.attention,
                    sliced_logits = info.sliced_logits,
                    "chat model ready"
                );
                loaded_in(&ready, info.load_ms);
            }
            Err(err) => report_failure(&ready, err),
        })?;
        let watched = engine.clone();
        slot.watch_engine(move || activity(watched.stats()));
        let _ = self.llm.set(Arc::new(engine));
        Ok(())
    }

    /// Start the image engine thread, if the slot's files were all found; `started` gets the
    /// engine (the image queue's worker runs on it).
    pub fn start_sd(
        &self,
        slot: &Arc<ModelSlot>,
        options: SdCompileOptions,
        started: impl FnOnce(Arc<dyn ImageEngine>),
    ) -> std::io::Result<()> {
        let Some(dir) = loadable(slot) else { return Ok(()) };
        tracing::info!(model = %dir.display(), device = %slot.device, "loading image model");
        let ready = slot.clone();
        let engine = SdEngine::start(dir, options, move |outcome| match outcome {
            Ok(info) => {
                tracing::info!(ms = info.load_ms as u64, "image model ready");
                loaded_in(&ready, info.load_ms);
            }
            Err(err) => report_failure(&ready, err),
        })?;
        let engine: Arc<dyn ImageEngine> = Arc::new(engine);
        if self.sd.set(engine.clone()).is_ok() {
            started(engine);
        }
        Ok(())
    }
}

/// The folder to load, when the slot's files were all found.
fn loadable(slot: &ModelSlot) -> Option<std::path::PathBuf> {
    slot.path().filter(|_| slot.state() == app::types::ModelState::Loading)
}

fn loaded_in(slot: &ModelSlot, ms: f64) {
    metrics::gauge!(MODEL_LOAD, "role" => slot.role.as_str()).set(ms / 1000.0);
    slot.set_ready();
}

fn report_failure(slot: &ModelSlot, err: InferenceError) {
    tracing::error!(role = ?slot.role, error = %err, "model failed to load");
    slot.set_error(err.to_string());
}

fn activity(stats: EngineStats) -> EngineActivity {
    EngineActivity {
        running: stats.running as u64,
        kept_conversations: stats.kept_conversations as u64,
        kv_tokens_used: stats.kv_tokens_used as u64,
        kv_tokens_allocated: stats.kv_tokens_allocated as u64,
        kv_tokens_idle: stats.kv_tokens_idle as u64,
        shared_prefix_tokens: stats.shared_prefix_tokens,
        batched_steps: stats.batched_steps,
        max_batch: stats.max_batch as u64,
        mixed_steps: stats.mixed_steps,
        evicted_for_room: stats.evicted_for_room,
        evicted_for_limit: stats.evicted_for_limit,
    }
}
