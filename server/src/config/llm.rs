//! How the chat model runs: its weights, KV caches and precision, and what one reply may use.

use crate::inference::{cpu::Precision, llm::Attention, weights::Placement};
use clap::Args;

// Two lines an option: what rustfmt makes of them is five to seven.
#[rustfmt::skip]
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Chat")]
pub struct LlmConfig {
    /// Where the chat model's weights live: memory (read in, on huge pages where the kernel offers
    /// them; decodes faster) or mapped (from the file: starts faster, the kernel may drop pages).
    #[arg(id = "llm_weights", long = "llm-weights", env = "LLM_WEIGHTS", value_enum,
          default_value_t = Placement::Memory, global = true)]
    pub weights: Placement,

    /// Chat model precision: fast (the plugin's choice for this CPU, bf16 where it has the
    /// units) or f32 (the same tokens on every machine, to check exactness).
    #[arg(id = "llm_precision", long = "llm-precision", env = "LLM_PRECISION", value_enum,
          default_value_t = Precision::Fast, global = true)]
    pub precision: Precision,

    /// Chat context window in tokens (default: the model's own limit).
    #[arg(id = "llm_context_tokens", long = "llm-context-tokens", env = "LLM_CONTEXT_TOKENS", global = true)]
    pub context_tokens: Option<usize>,

    /// Chat attention: paged (KV cache in blocks we manage; needs the shim built with the server),
    /// stateful (the exported graph as it is), or auto (paged when available).
    #[arg(id = "llm_attention", long = "llm-attention", env = "LLM_ATTENTION", value_enum,
          default_value_t = Attention::Auto, global = true)]
    pub attention: Attention,

    /// Prompts run in chunks of this many tokens, bounding each conversation's buffers; 0: whole.
    #[arg(id = "llm_prefill_chunk", long = "llm-prefill-chunk", env = "LLM_PREFILL_CHUNK", default_value_t = 256,
          global = true)]
    pub prefill_chunk: usize,

    /// Tokens one engine step runs while several conversations are in flight: each decoding
    /// reply's next token, and prompt chunks in the rest of the budget (a bigger budget gives
    /// new prompts their first token sooner and slows each step for the replies decoding).
    #[arg(id = "llm_step_tokens", long = "llm-step-tokens", env = "LLM_STEP_TOKENS", default_value_t = 256,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..=8192), global = true)]
    pub step_tokens: usize,

    /// A new conversation's prompt may start on the KV blocks of another that began the same
    /// way (paged attention). With accounts, a faster first token then tells that some
    /// conversation began with the same tokens; set false where that must not be seen.
    #[arg(id = "llm_share_prefixes", long = "llm-share-prefixes", env = "LLM_SHARE_PREFIXES",
          default_value = "true", action = clap::ArgAction::Set,
          value_parser = |s: &str| super::parse_bool("LLM_SHARE_PREFIXES", s), global = true)]
    pub share_prefixes: bool,

    /// Idle conversations whose KV cache stays in memory, so their next turn starts fast.
    #[arg(id = "llm_kv_sessions", long = "llm-kv-sessions", env = "LLM_KV_SESSIONS", default_value_t = 8,
          global = true)]
    pub kv_sessions: usize,

    /// Memory in MiB for KV caches: what idle conversations may keep, and with paged attention
    /// the most the shared block pool grows to.
    #[arg(id = "llm_kv_cache_mb", long = "llm-kv-cache-mb", env = "LLM_KV_CACHE_MB", default_value_t = 1024,
          global = true)]
    pub kv_cache_mb: usize,

    /// KV cache precision: u8 (quantized, least memory), f16, bf16 or f32.
    #[arg(id = "llm_kv_cache_precision", long = "llm-kv-cache-precision", env = "LLM_KV_CACHE_PRECISION",
          default_value = "u8", value_parser = ["u8", "f16", "bf16", "f32"], global = true)]
    pub kv_cache_precision: String,

    /// Recent turns (a message and its reply) sent to the chat model with each new message.
    #[arg(long, env = "CONTEXT_TURNS", default_value_t = 8, global = true)]
    pub context_turns: usize,

    /// Tokens a reply may use, reasoning included, when the request gives no `max_tokens`.
    #[arg(long, env = "CHAT_MAX_TOKENS", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..=8192), global = true)]
    pub chat_max_tokens: u32,

    /// Chat replies generated at once; more wait in the chat queue (`CHAT_QUEUE`).
    #[arg(long, env = "CHAT_CONCURRENCY", default_value_t = 8, global = true)]
    pub chat_concurrency: usize,

    /// Chat turns that may wait for the engine, served round-robin by end user (each user may
    /// hold their share of it); beyond it, 503 with Retry-After. 0: no queue, 503 at once.
    #[arg(long, env = "CHAT_QUEUE", default_value_t = 256, global = true)]
    pub chat_queue: usize,

    /// A turn whose estimated wait in the chat queue is longer gets 503 with Retry-After
    /// instead of waiting.
    #[arg(long, env = "CHAT_QUEUE_MAX_WAIT_S", default_value_t = 120, global = true)]
    pub chat_queue_max_wait_s: u64,

    /// Longest a non-streaming chat request may take before it gets 504.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 600, global = true)]
    pub request_timeout_secs: u64,

    /// Time each token of a mock reply takes, so streaming can be seen in mock mode.
    #[arg(long, env = "MOCK_TOKEN_MS", default_value_t = 0, global = true)]
    pub mock_token_ms: u64,
}
