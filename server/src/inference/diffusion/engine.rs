//! The image engine: one thread owns the compiled pipeline; images are made one at a time, in
//! order. Callers get progress over a channel and can cancel between steps.

use super::{
    model::{SdCompileOptions, SdModel},
    pipeline::{self, ImageOutput, PipelineError, Progress},
    request::ImageRequest,
    scheduler::SchedulerKind,
};
use crate::inference::{
    engine::{catch_panic, BoxFuture, EngineHost, ImageEngine, StepHooks},
    InferenceError,
};
use std::{
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc, OnceLock},
    time::Instant,
};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone)]
pub struct SdEngine {
    host: EngineHost<SdModel>,
    /// The scheduler the model folder names (set once loaded), for requests that name none.
    default_scheduler: Arc<OnceLock<SchedulerKind>>,
}

/// What the engine reports once the pipeline is loaded.
#[derive(Clone, Debug)]
pub struct SdInfo {
    pub load_ms: f64,
}

impl SdEngine {
    pub fn start<F>(dir: PathBuf, options: SdCompileOptions, loaded: F) -> std::io::Result<Self>
    where
        F: FnOnce(Result<SdInfo, InferenceError>) + Send + 'static,
    {
        let started = Instant::now();
        let default_scheduler = Arc::new(OnceLock::new());
        let slot = default_scheduler.clone();
        let host = EngineHost::spawn(
            "sd-engine",
            move || {
                let model = SdModel::load(&dir, &options)?;
                let _ = slot.set(model.default_scheduler());
                Ok(model)
            },
            move |outcome| loaded(outcome.map(|()| SdInfo { load_ms: started.elapsed().as_secs_f64() * 1000.0 })),
        )?;
        Ok(SdEngine { host, default_scheduler })
    }

    /// The scheduler used when a request names none (PNDM until the model has loaded).
    pub fn default_scheduler(&self) -> SchedulerKind {
        self.default_scheduler.get().copied().unwrap_or(SchedulerKind::Pndm)
    }

    /// Make one image. Progress goes to `progress` (if given) after every step; setting `cancel`
    /// stops before the next step.
    pub async fn generate(
        &self,
        request: ImageRequest,
        latents: Option<Vec<f32>>,
        progress: Option<UnboundedSender<Progress>>,
        cancel: Arc<AtomicBool>,
    ) -> Result<ImageOutput, PipelineError> {
        self.generate_paced(request, latents, StepHooks { progress, cancel, pause: None }).await
    }

    /// As [`generate`](Self::generate), and `hooks.pause` runs on the engine thread between
    /// steps: it may block to give the CPU to other work.
    pub async fn generate_paced(
        &self,
        request: ImageRequest,
        latents: Option<Vec<f32>>,
        hooks: StepHooks,
    ) -> Result<ImageOutput, PipelineError> {
        self.host
            .run(move |model| {
                let StepHooks { progress, cancel, pause } = hooks;
                let mut report = |p: Progress| {
                    if let Some(tx) = &progress {
                        let _ = tx.send(p);
                    }
                    if let Some(pause) = &pause {
                        pause(&cancel);
                    }
                };
                catch_panic("image pipeline", || {
                    pipeline::generate(model, &request, latents.as_deref(), &mut report, &cancel)
                })
            })
            .await?
    }
}

impl ImageEngine for SdEngine {
    fn default_scheduler(&self) -> SchedulerKind {
        SdEngine::default_scheduler(self)
    }

    fn generate(&self, request: ImageRequest, hooks: StepHooks) -> BoxFuture<'_, Result<ImageOutput, PipelineError>> {
        Box::pin(self.generate_paced(request, None, hooks))
    }
}
