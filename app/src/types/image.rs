//! Image requests, jobs and their states, shared by `POST /image`, the chat reply's `image_job`,
//! `GET /jobs/{id}` and the UI.

use serde::{Deserialize, Serialize};

/// Body of `POST /image`; also the `image` options of `POST /chat` (where `prompt` may be left out
/// and comes from the conversation). Anything left out takes the default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ImageGenerationRequest {
    /// What to draw: 1 to 1000 characters.
    #[serde(default)]
    pub prompt: Option<String>,
    /// What to keep out of the picture (at most 1000 characters).
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// Denoising steps, 1 to 100 (default 20).
    #[serde(default)]
    pub num_inference_steps: Option<u32>,
    /// Classifier-free guidance, 0 to 30 (default 7.5; 1 or less turns guidance off).
    #[serde(default)]
    pub guidance_scale: Option<f64>,
    /// Any u32; random when absent, and reported back so the image can be made again.
    #[serde(default)]
    pub seed: Option<u32>,
    /// Multiple of 8 from 256 to 1024 (default 512).
    #[serde(default)]
    pub width: Option<u32>,
    /// Multiple of 8 from 256 to 1024 (default 512).
    #[serde(default)]
    pub height: Option<u32>,
    /// `pndm` (the model's default), `ddim`, `euler`, `euler_a`, `dpmpp_2m_karras` or `lcm` (A1111 names too).
    #[serde(default)]
    pub scheduler: Option<String>,
    /// The end user the image is for (1 to 200 characters), for per-user limits; with `POST
    /// /chat` it comes from the chat request instead.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Every setting an image was (or will be) made with: enough to make it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ImageParameters {
    pub prompt: String,
    pub negative_prompt: String,
    pub num_inference_steps: u32,
    pub guidance_scale: f32,
    pub seed: u32,
    pub width: u32,
    pub height: u32,
    pub scheduler: String,
    /// The image model's id.
    pub model: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// An image job as the chat reply carries it: where to follow it and what it will draw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ImageJob {
    pub job_id: String,
    pub status: JobStatus,
    /// `GET` it for the job's state.
    pub status_url: String,
    /// Where the PNG will be once the job is done.
    pub image_url: String,
    #[serde(flatten)]
    pub parameters: ImageParameters,
}

/// Answer of `POST /image`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ImageGenerationResponse {
    pub job_id: String,
    pub status: JobStatus,
    pub image_url: String,
    pub status_url: String,
    /// `openvino`, or `mock` in mock mode.
    pub provider: String,
    pub mock: bool,
    pub parameters: ImageParameters,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Why the job failed (with `?wait=true`).
    pub error: Option<String>,
}

/// Answer of `GET /jobs/{id}`, and the payload of its progress events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct JobInfo {
    pub job_id: String,
    pub status: JobStatus,
    /// Jobs ahead of this one (0: next), while queued.
    pub position: Option<u32>,
    /// Estimated milliseconds until the image is done, once a job has been timed.
    pub eta_ms: Option<u64>,
    /// Steps done so far, while running and after.
    pub step: u32,
    pub total_steps: u32,
    /// Why the job failed.
    pub error: Option<String>,
    pub image_url: String,
    pub status_url: String,
    pub parameters: ImageParameters,
    /// `Some(true)` when the NSFW filter blacked the image out; `None` when no filter ran.
    pub nsfw: Option<bool>,
    pub mock: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The conversation whose reply asked for the picture; none for `POST /image` and the studio.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

/// Answer of `GET /jobs`: the caller's image jobs still queued or being drawn, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<JobInfo>,
}
