//! `POST /chat`: one user message in, the model's reply (and maybe an image job) out.

use super::{ImageGenerationRequest, ImageJob};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChatRequest {
    /// The end user this conversation belongs to (1 to 200 characters).
    #[serde(default)]
    pub user_id: Option<String>,
    /// The user's message (1 to 32000 characters). Starting it with `/imagine ` asks for a picture
    /// of the rest, without a reply from the chat model.
    #[serde(default)]
    pub message: Option<String>,
    /// Continue this conversation; absent: start a new one.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// The id of a user message in `conversation_id`: it and every later message are deleted
    /// before `message` is stored in its place (edit and resend, regenerate). Their images stay
    /// in the gallery.
    #[serde(default)]
    pub replace_from: Option<String>,
    /// Answer as server-sent events instead of one JSON body.
    #[serde(default)]
    pub stream: bool,
    /// Most tokens to generate, reasoning included (1 to 8192; default 2048).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// 0 (greedy) to 2; default from the model's generation_config.json.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Above 0, at most 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// 0 (off) or more.
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Above 0, at most 2 (1: off).
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    /// Sampling seed: the same seed and message give the same reply.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Up to 4 strings that end the reply.
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Ask for a picture with this turn, and how to make it.
    #[serde(default)]
    pub image: Option<ImageGenerationRequest>,
    /// Keep these chat settings with the conversation (new or continued; they replace its
    /// settings) and use them from this turn on. The fields above, when given, still win for
    /// this turn.
    #[serde(default)]
    pub settings: Option<super::ChatSettings>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens found in the conversation's KV cache (from the last turn) and not run again.
    #[serde(default)]
    pub cached_tokens: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Timings {
    pub ttft_ms: f64,
    pub total_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChatResponse {
    pub conversation_id: String,
    /// The assistant message's id.
    pub message_id: String,
    /// The answer shown to the user: no reasoning, no image-prompt block.
    pub reply: String,
    /// What the model thought before answering (never fed back into later turns).
    pub reasoning: String,
    pub image_job: Option<ImageJob>,
    pub usage: Usage,
    pub timings: Timings,
    /// The chat model's id.
    pub model: String,
    pub mock: bool,
    /// `eos`, `stop`, `length`, `context_limit` or `cancelled`.
    pub finish_reason: String,
    /// Who generated the reply: `local` (this process), or the URL of the worker or
    /// OpenAI-compatible endpoint that did.
    #[serde(default)]
    pub provider: String,
}

/// One server-sent event of a streamed chat. The SSE `event:` field is the variant's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChatEvent {
    /// The turn waits for the chat engine (which runs `CHAT_CONCURRENCY` replies at once):
    /// its place in line (1: next), how many wait, and the estimated seconds until it starts
    /// (none until a reply has finished to estimate from). Sent when the place changes; `start`
    /// follows once the turn begins.
    Queued { position: u32, waiting: u32, eta_s: Option<u64> },
    /// First event of a turn that begins: where the reply will be stored.
    Start { conversation_id: String, message_id: String, model: String, mock: bool },
    /// A piece of the model's reasoning.
    Reasoning { text: String },
    /// A piece of the answer (image-prompt blocks are held back and never sent).
    Answer { text: String },
    /// The reply is complete; an image may follow.
    Reply { reply: String, reasoning: String, finish_reason: String },
    /// An image job was queued for this turn, or moved on (queue position, steps, done, failed).
    ImageJob { job: super::JobInfo },
    /// Last event: the whole result.
    Done { response: ChatResponse },
    /// The request failed; nothing follows.
    Error { error: super::ErrorDetail },
}

impl ChatEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ChatEvent::Queued { .. } => "queued",
            ChatEvent::Start { .. } => "start",
            ChatEvent::Reasoning { .. } => "reasoning",
            ChatEvent::Answer { .. } => "answer",
            ChatEvent::Reply { .. } => "reply",
            ChatEvent::ImageJob { .. } => "image_job",
            ChatEvent::Done { .. } => "done",
            ChatEvent::Error { .. } => "error",
        }
    }
}
