//! Types shared by the browser, the server functions and the REST API.
//! The REST `/health` route and the `get_health` server function return the same `HealthReport`.

mod account;
mod chat;
mod error;
mod gallery;
mod history;
mod image;
mod ws;

pub use account::*;
pub use chat::*;
pub use error::*;
pub use gallery::*;
pub use history::*;
pub use image::*;
pub use ws::*;

use serde::{Deserialize, Serialize};

/// Overall state of the service, as reported by `GET /health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// Database reachable and every model ready (or mock engines in use).
    Ok,
    /// The server answers, but some model is missing, loading or failed.
    Degraded,
}

/// Life cycle of one model, from the files on disk to a compiled engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    Missing,
    Downloading,
    Loading,
    Ready,
    Error,
}

impl ModelState {
    pub const ALL: [ModelState; 5] =
        [ModelState::Missing, ModelState::Downloading, ModelState::Loading, ModelState::Ready, ModelState::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Missing => "missing",
            ModelState::Downloading => "downloading",
            ModelState::Loading => "loading",
            ModelState::Ready => "ready",
            ModelState::Error => "error",
        }
    }
}

/// Which engine a model feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// The chat model (DeepSeek-R1-Distill-Qwen).
    Llm,
    /// The image model (Stable Diffusion 1.5).
    Sd,
}

impl ModelRole {
    /// The name it serializes to.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelRole::Llm => "llm",
            ModelRole::Sd => "sd",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ModelHealth {
    pub role: ModelRole,
    /// Hugging Face repo id or local directory, as configured.
    pub id: String,
    /// Local folder the model is loaded from, once known.
    pub path: Option<String>,
    pub state: ModelState,
    /// OpenVINO device name (`CPU`), or `mock` when mock engines answer.
    pub device: String,
    /// Why the model is in `error` (or what to do when `missing`).
    pub detail: Option<String>,
    /// Download progress in 0..=1 while `downloading`.
    pub progress: Option<f32>,
    /// Bytes, rate and time left while `downloading`.
    #[serde(default)]
    pub download: Option<DownloadProgress>,
    /// What the chat engine is doing, once it runs (not for mock engines or the image model).
    #[serde(default)]
    pub engine: Option<EngineActivity>,
    /// The CPU class, precision and layout the engine runs with, and why (not for mock engines).
    #[serde(default)]
    pub settings: Option<String>,
}

/// The chat engine's load and what it has done since it started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EngineActivity {
    /// Replies being generated now.
    pub running: u64,
    /// Idle conversations whose KV cache is kept, so their next turn runs only its new tokens.
    pub kept_conversations: u64,
    /// Paged attention: KV cache tokens in use, and room as allocated now (it grows up to
    /// `LLM_KV_CACHE_MB`); both 0 on the stateful graph.
    pub kv_tokens_used: u64,
    pub kv_tokens_allocated: u64,
    /// Paged attention: tokens in blocks no conversation holds, kept because they hold a prompt
    /// prefix a new conversation may start with (handed out first when room is needed).
    #[serde(default)]
    pub kv_tokens_idle: u64,
    /// Prompt tokens new prompts took from blocks other conversations had already run (a shared
    /// system prompt, a regenerated reply, a client resending history).
    #[serde(default)]
    pub shared_prefix_tokens: u64,
    /// Steps that decoded several replies at once, and the most at once.
    pub batched_steps: u64,
    pub max_batch: u64,
    /// Steps that ran a new prompt's chunk together with the replies being decoded.
    #[serde(default)]
    pub mixed_steps: u64,
    /// Idle conversations dropped to make room in a full KV cache.
    pub evicted_for_room: u64,
    /// Idle conversations dropped past `LLM_KV_SESSIONS` or `LLM_KV_CACHE_MB`.
    #[serde(default)]
    pub evicted_for_limit: u64,
}

/// Where a model download stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DownloadProgress {
    /// The file being fetched (path inside the repository).
    pub file: String,
    /// Of that file.
    pub file_bytes_done: u64,
    pub file_bytes_total: u64,
    pub files_done: u32,
    pub files_total: u32,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Over the last few seconds.
    pub bytes_per_second: u64,
    /// Seconds left at that rate; unknown until bytes flow.
    pub eta_seconds: Option<u64>,
}

impl DownloadProgress {
    /// 0..=1; 0 while the total is unknown.
    pub fn fraction(&self) -> f32 {
        if self.bytes_total == 0 {
            0.0
        } else {
            (self.bytes_done as f64 / self.bytes_total as f64).min(1.0) as f32
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DatabaseHealth {
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub ok: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RuntimeHealth {
    /// OpenVINO build number, e.g. `2026.4.1-...`.
    pub version: String,
    /// The `libopenvino_c` file that was loaded (shown to admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
}

/// Body of `GET /health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct HealthReport {
    pub status: ServiceStatus,
    /// Duet's version (the server crate's).
    pub version: String,
    pub use_mocks: bool,
    pub auto_download_models: bool,
    /// Repositories present in `MODELS_DIR` (Hugging Face cache layout).
    pub cached_models: Vec<String>,
    pub models: Vec<ModelHealth>,
    pub database: DatabaseHealth,
    /// `None` in mock mode, where OpenVINO is not loaded.
    pub openvino: Option<RuntimeHealth>,
    /// The engines in other processes this one uses: workers (`ROLE=web`) and OpenAI-compatible
    /// endpoints (`CHAT_ENDPOINTS`, `IMAGE_ENDPOINTS`); empty when the models run here.
    #[serde(default)]
    pub endpoints: Vec<EndpointHealth>,
}

/// A worker or an OpenAI-compatible endpoint, as this process last found it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EndpointHealth {
    /// What it answers for this process: `llm` (chat) or `sd` (pictures).
    pub role: ModelRole,
    /// `worker` (a Duet worker) or `openai` (an OpenAI-compatible server).
    pub kind: String,
    /// Its URL (for an admin, or with accounts off).
    pub url: Option<String>,
    /// `ok`, or `error` (skipped until it is healthy again).
    pub state: String,
    /// Why it is in `error`.
    pub detail: Option<String>,
}
