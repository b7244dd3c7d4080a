//! Every metric Duet exports, declared once: its name, type, labels, meaning and (for histograms)
//! buckets. The recorder is set up from this list, the README's table is checked against it, and
//! the code records through these constants, so a name cannot drift between the three.

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Upper bounds of a histogram's buckets, in the metric's base unit.
    pub buckets: &'static [f64],
}

// Seconds, for CPU inference: HTTP answers in milliseconds; a first token from a fraction of a
// second up to minutes (a long prompt, a busy engine); a picture up to tens of minutes.
const HTTP_SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
const FIRST_TOKEN_SECONDS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];
const TOKEN_SECONDS: &[f64] = &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0];
const REPLY_SECONDS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0];
const WAIT_SECONDS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
const STEP_SECONDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0];
const IMAGE_SECONDS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];
const IMAGE_WAIT_SECONDS: &[f64] = &[0.1, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

pub const BUILD_INFO: &str = "duet_build_info";

pub const HTTP_REQUESTS: &str = "duet_http_requests_total";
pub const HTTP_DURATION: &str = "duet_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "duet_http_requests_in_flight";

pub const CHAT_TTFT: &str = "duet_chat_time_to_first_token_seconds";
pub const CHAT_ITL: &str = "duet_chat_inter_token_latency_seconds";
pub const CHAT_DURATION: &str = "duet_chat_reply_duration_seconds";
pub const CHAT_QUEUE_WAIT: &str = "duet_chat_queue_wait_seconds";
pub const CHAT_TURN_WAIT: &str = "duet_chat_turn_wait_seconds";
pub const CHAT_TURNS_WAITING: &str = "duet_chat_turns_waiting";
pub const CHAT_PROMPT_TOKENS: &str = "duet_chat_prompt_tokens_total";
pub const CHAT_GENERATED_TOKENS: &str = "duet_chat_generated_tokens_total";
pub const CHAT_REPLIES: &str = "duet_chat_replies_total";
pub const CHAT_RUNNING: &str = "duet_chat_replies_running";
pub const CHAT_WAITING: &str = "duet_chat_replies_waiting";
pub const CHAT_KV_USED: &str = "duet_chat_kv_cache_tokens_used";
pub const CHAT_KV_ALLOCATED: &str = "duet_chat_kv_cache_tokens_allocated";
pub const CHAT_KV_IDLE: &str = "duet_chat_kv_cache_tokens_idle";
pub const CHAT_SHARED_PREFIX: &str = "duet_chat_shared_prefix_tokens_total";
pub const CHAT_KEPT: &str = "duet_chat_conversations_kept";
pub const CHAT_EVICTED: &str = "duet_chat_conversations_evicted_total";
pub const CHAT_BATCHED_STEPS: &str = "duet_chat_batched_steps_total";
pub const CHAT_MIXED_STEPS: &str = "duet_chat_mixed_steps_total";

pub const IMAGE_QUEUE_DEPTH: &str = "duet_image_queue_depth";
pub const IMAGE_RUNNING: &str = "duet_image_jobs_running";
pub const IMAGE_QUEUE_WAIT: &str = "duet_image_queue_wait_seconds";
pub const IMAGE_STEP: &str = "duet_image_step_duration_seconds";
pub const IMAGE_DURATION: &str = "duet_image_generation_duration_seconds";
pub const IMAGE_JOBS: &str = "duet_image_jobs_total";
pub const IMAGE_NSFW: &str = "duet_image_nsfw_flagged_total";

pub const MODEL_STATE: &str = "duet_model_state";
pub const MODEL_DOWNLOAD_BYTES: &str = "duet_model_download_bytes_total";
pub const MODEL_DOWNLOAD_FAILURES: &str = "duet_model_download_failures_total";
pub const MODEL_LOAD: &str = "duet_model_load_duration_seconds";

pub const LIMIT_REFUSALS: &str = "duet_limit_refusals_total";
pub const LOGIN_FAILURES: &str = "duet_login_failures_total";
pub const SESSIONS: &str = "duet_sessions_active";
pub const WEBSOCKETS: &str = "duet_websockets_open";

pub const DB_CONNECTIONS: &str = "duet_db_connections";
pub const DB_ERRORS: &str = "duet_db_query_errors_total";

const fn metric(name: &'static str, kind: Kind, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric { name, kind, labels, help, buckets: &[] }
}

const fn histogram(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    buckets: &'static [f64],
) -> Metric {
    Metric { name, kind: Kind::Histogram, labels, help, buckets }
}

use Kind::{Counter, Gauge};

pub const METRICS: &[Metric] = &[
    metric(BUILD_INFO, Gauge, &["version"], "Always 1; the running version in its label"),
    // HTTP
    metric(HTTP_REQUESTS, Counter, &["method", "route", "status"], "HTTP requests answered, by the route that matched (`(fallback)`: static files and unknown paths), method and status"),
    histogram(HTTP_DURATION, &["method", "route"], "Time to the answer's head (a stream's first byte, not its end)", HTTP_SECONDS),
    metric(HTTP_IN_FLIGHT, Gauge, &[], "HTTP requests being answered now (until the answer's head)"),
    // Chat
    histogram(CHAT_TTFT, &[], "From a reply's request reaching the chat engine to its first generated token (queue wait and prompt included)", FIRST_TOKEN_SECONDS),
    histogram(CHAT_ITL, &[], "Between two generated tokens of one reply", TOKEN_SECONDS),
    histogram(CHAT_DURATION, &[], "A whole reply, from reaching the chat engine to its last token", REPLY_SECONDS),
    histogram(CHAT_TURN_WAIT, &[], "A chat turn's wait for a place in the engine (CHAT_CONCURRENCY), in the chat queue; 0 for one that found a place", WAIT_SECONDS),
    metric(CHAT_TURNS_WAITING, Gauge, &[], "Chat turns waiting in the chat queue for a place in the engine"),
    histogram(CHAT_QUEUE_WAIT, &[], "From a reply reaching the chat engine to the engine starting on its prompt", WAIT_SECONDS),
    metric(CHAT_PROMPT_TOKENS, Counter, &["source"], "Prompt tokens of finished replies: `cache` were found in the KV cache (the conversation's own, or blocks another conversation published), `computed` were run (hit rate: cache / both)"),
    metric(CHAT_GENERATED_TOKENS, Counter, &[], "Tokens generated (replies that failed included)"),
    metric(CHAT_REPLIES, Counter, &["finish_reason"], "Replies ended: `stop` (the model ended or a stop string), `length` (max tokens or the context window), `cancelled` (stopped, or the caller left), `error`"),
    metric(CHAT_RUNNING, Gauge, &[], "Replies the chat engine is working on"),
    metric(CHAT_WAITING, Gauge, &[], "Replies admitted by the chat engine whose prompt it has not started yet"),
    metric(CHAT_KV_USED, Gauge, &[], "Tokens held in the KV block pool (paged attention; 0 otherwise)"),
    metric(CHAT_KV_ALLOCATED, Gauge, &[], "Tokens the KV block pool could hold as allocated now (paged attention; 0 otherwise)"),
    metric(CHAT_KV_IDLE, Gauge, &[], "Tokens in KV blocks no conversation holds, kept for the prompt prefix they hold (paged attention)"),
    metric(CHAT_SHARED_PREFIX, Counter, &[], "Prompt tokens taken from KV blocks other conversations had run, not run again (paged attention)"),
    metric(CHAT_KEPT, Gauge, &[], "Idle conversations whose KV cache is kept for their next turn"),
    metric(CHAT_EVICTED, Counter, &["reason"], "Kept KV caches dropped: `room` (the block pool was full), `limit` (past LLM_KV_SESSIONS or LLM_KV_CACHE_MB)"),
    metric(CHAT_BATCHED_STEPS, Counter, &[], "Engine steps that decoded several replies at once (paged attention)"),
    metric(CHAT_MIXED_STEPS, Counter, &[], "Engine steps that ran a prompt chunk together with decoding replies (paged attention)"),
    // Images
    metric(IMAGE_QUEUE_DEPTH, Gauge, &[], "Image jobs waiting in the queue shared by every process"),
    metric(IMAGE_RUNNING, Gauge, &[], "Image jobs being drawn now, by every process"),
    histogram(IMAGE_QUEUE_WAIT, &[], "From an image job being queued to it starting", IMAGE_WAIT_SECONDS),
    histogram(IMAGE_STEP, &[], "One UNet step (PNDM runs one more than `num_inference_steps`, as diffusers does; the wait for a running chat reply between steps not included)", STEP_SECONDS),
    histogram(IMAGE_DURATION, &[], "A finished picture, from its job starting to its file and row being stored", IMAGE_SECONDS),
    metric(IMAGE_JOBS, Counter, &["state"], "Image jobs ended: `done`, `failed`, `cancelled`, `rejected` (refused before running: a full queue or a used-up quota when a chat reply asked for a picture)"),
    metric(IMAGE_NSFW, Counter, &[], "Pictures the safety checker flagged and blacked out"),
    // Models
    metric(MODEL_STATE, Gauge, &["role", "model", "state"], "1 for each model's current state (`missing`, `downloading`, `loading`, `ready`, `error`), 0 for the others"),
    metric(MODEL_DOWNLOAD_BYTES, Counter, &["role"], "Bytes of model files fetched by the background download"),
    metric(MODEL_DOWNLOAD_FAILURES, Counter, &["role"], "Background model downloads that failed"),
    metric(MODEL_LOAD, Gauge, &["role"], "How long the model took to load and compile"),
    // Accounts and limits
    metric(LIMIT_REFUSALS, Counter, &["limit"], "Requests refused (429) by a rate limit or quota, by the limit's name as the error body gives it"),
    metric(LOGIN_FAILURES, Counter, &["reason"], "Log-ins refused: `credentials` (wrong name or password), `disabled` (account disabled)"),
    metric(SESSIONS, Gauge, &[], "Browser sessions not yet expired (absent when sessions live in Redis)"),
    metric(WEBSOCKETS, Gauge, &[], "WebSockets (`GET /ws`) open now"),
    // Database
    metric(DB_CONNECTIONS, Gauge, &["state"], "Database pool connections: `in_use`, `idle`"),
    metric(DB_ERRORS, Counter, &[], "Database queries that failed"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} declared twice", m.name);
            assert!(m.name.starts_with("duet_"), "{}", m.name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", m.name);
            assert_eq!(m.kind == Kind::Counter, m.name.ends_with("_total"), "{}: `_total` is for counters", m.name);
            assert_eq!(m.kind == Kind::Histogram, !m.buckets.is_empty(), "{}: histograms have buckets", m.name);
            assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{}: buckets increase", m.name);
            if m.kind == Kind::Histogram {
                assert!(m.name.ends_with("_seconds"), "{}: durations in seconds", m.name);
            }
            assert!(!m.help.is_empty() && !m.help.contains('\n'), "{}", m.name);
        }
    }
}

/// The README's table of metrics, one row per metric, as the catalogue says it.
pub fn readme_rows() -> Vec<String> {
    METRICS
        .iter()
        .map(|m| {
            let labels = m.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ");
            format!("| `{}` | {} | {} | {} |", m.name, m.kind.as_str(), labels, m.help)
        })
        .collect()
}

#[cfg(test)]
mod readme {
    /// The README's table lists exactly the catalogue, in its order, with its words.
    #[test]
    fn the_readme_table_is_the_catalogue() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `duet_")).collect();
        let expected = super::readme_rows();
        assert!(
            rows == expected.iter().map(String::as_str).collect::<Vec<_>>(),
            "README.md's metrics table differs from the catalogue; it should read:\n{}",
            expected.join("\n")
        );
    }
}
