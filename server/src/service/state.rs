//! The one state every handler and server function sees.

use crate::{
    auth::{password::Hashing, signing::SigningKey},
    config::Config,
    inference::runtime::Runtime,
    jobs::ImageJobs,
    models::{loader::Engines, ModelSlot},
    service::{limits::Limits, load::ChatSlots, sanitize::PromptPolicy},
    storage::{Database, Pictures},
    telemetry::Exporter,
};
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub llm: Arc<ModelSlot>,
    pub sd: Arc<ModelSlot>,
    pub engines: Engines,
    /// The image queue in front of the image engine.
    pub jobs: ImageJobs,
    /// This process's name among those sharing the database (`service::presence`).
    pub process: Arc<str>,
    /// Workers and endpoints answering for models that do not run here.
    pub remote: super::cluster::Remote,
    /// A worker's generations for web processes.
    pub serving: super::serving::Serving,
    /// Where pictures are kept (a folder, or an S3-compatible bucket).
    pub pictures: Pictures,
    /// Shared sessions and rate-limit buckets, when `REDIS_URL` is set.
    pub redis: Option<fred::prelude::Pool>,
    /// Signs share links.
    pub signing: SigningKey,
    /// Rate limits and quotas per account and end user.
    pub limits: Limits,
    /// What every image prompt passes before it is drawn.
    pub prompts: Arc<PromptPolicy>,
    /// Password hashing, a bounded number at once.
    pub hashing: Hashing,
    /// Room for gallery zips being streamed (`service::gallery::ZIP_CONCURRENCY`).
    pub zip_slots: Arc<tokio::sync::Semaphore>,
    /// Room for chat replies, and whether one is being generated.
    pub chat_slots: Arc<ChatSlots>,
    /// The OpenVINO runtime; `None` in mock mode.
    pub runtime: Option<Runtime>,
    /// The Prometheus metrics, when on (`METRICS_ADDR`).
    pub metrics: Option<Exporter>,
    pub leptos: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
