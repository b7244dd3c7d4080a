//! OpenAI's request and response bodies as we read and write them, with schemas for the API
//! document. Field names and `object` values are OpenAI's, so its clients read them unchanged;
//! `reasoning_content` is DeepSeek's name for the reasoning.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<InMessage>>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ImagesRequest {
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub n: Option<u32>,
    /// `WIDTHxHEIGHT`, e.g. `512x512`.
    #[serde(default)]
    pub size: Option<String>,
    /// `url` (default) or `b64_json`.
    #[serde(default)]
    pub response_format: Option<String>,
    // Duet's own settings, beyond OpenAI's.
    #[serde(default)]
    pub negative_prompt: Option<String>,
    #[serde(default)]
    pub seed: Option<u32>,
    #[serde(default)]
    pub num_inference_steps: Option<u32>,
    #[serde(default)]
    pub guidance_scale: Option<f64>,
    #[serde(default)]
    pub scheduler: Option<String>,
    /// The end user the images are for (OpenAI's field), for per-user limits.
    #[serde(default)]
    pub user: Option<String>,
}

/// `GET /v1/models`
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: &'static str,
    /// The chat model, then the image model.
    pub data: Vec<Model>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    /// What `model` takes in requests.
    pub id: String,
    /// Always `model`.
    #[schema(example = "model")]
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

/// A whole reply (`stream: false`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// Always `chat.completion`.
    #[schema(example = "chat.completion")]
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
    /// Exactly one.
    pub choices: Vec<Choice>,
    pub usage: CompletionUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    /// `stop` (the model ended, a stop string, or the reply was stopped) or `length`.
    #[schema(example = "stop")]
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    #[schema(example = "assistant")]
    pub role: &'static str,
    pub content: String,
    /// The model's thinking, kept out of `content`; null when it had none.
    pub reasoning_content: Option<String>,
}

/// Tokens of one reply; `prompt_tokens_details.cached_tokens` came from a kept KV cache.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

/// One event of a streamed reply (`stream: true`); the stream ends with `data: [DONE]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// Always `chat.completion.chunk`.
    #[schema(example = "chat.completion.chunk")]
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// On the last chunk, when `stream_options.include_usage` asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    /// Null until the last chunk.
    pub finish_reason: Option<&'static str>,
}

/// What a chunk adds: the role first, then pieces of reasoning or of the answer.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// `POST /v1/images/generations`, once every image is done.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImagesResponse {
    /// Unix seconds.
    pub created: u64,
    pub data: Vec<ImageData>,
}

/// One picture: a URL (`response_format: url`) or the PNG in base64 (`b64_json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// The prompt the picture was drawn from.
    pub revised_prompt: String,
}
