//! Rate limits and quotas (enforced by `service::limits`); 0 means no limit.

use clap::Args;

/// `Default` is every limit off, for tests of one limit at a time; the flags' defaults are
/// the ones a server starts with.
#[derive(Args, Clone, Copy, Debug, Default)]
#[command(next_help_heading = "Limits")]
pub struct LimitsConfig {
    /// Requests per minute per account (token bucket; 0: no limit, the default: one account may
    /// serve many end users, each held to `USER_REQUESTS_PER_MINUTE`, with the chat queue
    /// bounding the whole; set it for accounts whose keys are handed out).
    #[arg(long, env = "ACCOUNT_REQUESTS_PER_MINUTE", default_value_t = 0, global = true)]
    pub account_requests_per_minute: u32,

    /// Requests per minute per end user (`user_id`) of an account (0: no limit).
    #[arg(long, env = "USER_REQUESTS_PER_MINUTE", default_value_t = 120, global = true)]
    pub user_requests_per_minute: u32,

    /// Generations (chat replies and image jobs) running or queued at once per account (0: no
    /// limit, the default: one account may serve many end users, each held to their own limit,
    /// with the chat queue and `CHAT_CONCURRENCY` bounding the whole).
    #[arg(long, env = "ACCOUNT_CONCURRENT_GENERATIONS", default_value_t = 0, global = true)]
    pub account_concurrent_generations: u32,

    /// Generations running or queued at once per end user (0: no limit).
    #[arg(long, env = "USER_CONCURRENT_GENERATIONS", default_value_t = 2, global = true)]
    pub user_concurrent_generations: u32,

    /// Images per account per UTC day (0: no limit).
    #[arg(long, env = "ACCOUNT_IMAGES_PER_DAY", default_value_t = 0, global = true)]
    pub account_images_per_day: u32,

    /// Images per end user per UTC day (0: no limit).
    #[arg(long, env = "USER_IMAGES_PER_DAY", default_value_t = 0, global = true)]
    pub user_images_per_day: u32,

    /// Generated tokens per account per UTC day (0: no limit).
    #[arg(long, env = "ACCOUNT_TOKENS_PER_DAY", default_value_t = 0, global = true)]
    pub account_tokens_per_day: u64,

    /// Generated tokens per end user per UTC day (0: no limit).
    #[arg(long, env = "USER_TOKENS_PER_DAY", default_value_t = 0, global = true)]
    pub user_tokens_per_day: u64,

    /// WebSockets (`GET /ws`) one account may hold open at once (0: no limit).
    #[arg(long, env = "ACCOUNT_WEBSOCKETS", default_value_t = 8, global = true)]
    pub account_websockets: u32,

    /// Frames a second one WebSocket may send (bursts of twice that); more are refused (0: no limit).
    #[arg(long, env = "WS_MESSAGES_PER_SECOND", default_value_t = 10, global = true)]
    pub ws_messages_per_second: u32,

    /// Log-in and sign-up requests per minute per client address (0: no limit).
    #[arg(long, env = "AUTH_REQUESTS_PER_MINUTE", default_value_t = 30, global = true)]
    pub auth_requests_per_minute: u32,

    /// Log-in attempts per minute for one username from one client address (0: no limit).
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10, global = true)]
    pub login_attempts_per_minute: u32,
}
