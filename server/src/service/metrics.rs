//! What a scrape of `/metrics` answers: the recorded metrics, after the gauges that are read
//! from state (models, the chat engine's KV cache, the image queue, the database pool, sessions)
//! are set to what they are now.

use super::{
    error::{Result, ServiceError},
    AppState,
};
use crate::telemetry::catalogue::{
    CHAT_BATCHED_STEPS, CHAT_EVICTED, CHAT_KEPT, CHAT_KV_ALLOCATED, CHAT_KV_IDLE, CHAT_KV_USED, CHAT_MIXED_STEPS,
    CHAT_SHARED_PREFIX, CHAT_TURNS_WAITING, DB_CONNECTIONS, IMAGE_QUEUE_DEPTH, IMAGE_RUNNING, MODEL_STATE, SESSIONS,
    WEBSOCKETS,
};
use app::types::{ModelRole, ModelState};
use metrics::{counter, gauge};

/// The metrics in Prometheus' text format; not found when they are off.
pub async fn render(state: &AppState) -> Result<String> {
    let Some(exporter) = &state.metrics else {
        return Err(ServiceError::NotFound("metrics (they are off: set METRICS_ADDR)"));
    };
    gauge!(CHAT_TURNS_WAITING).set(state.chat_slots.waiting() as f64);
    for slot in [&state.llm, &state.sd] {
        let health = slot.health();
        let role = health.role.as_str();
        for s in ModelState::ALL {
            let value = if s == health.state { 1.0 } else { 0.0 };
            gauge!(MODEL_STATE, "role" => role, "model" => health.id.clone(), "state" => s.as_str()).set(value);
        }
        if let (ModelRole::Llm, Some(engine)) = (health.role, health.engine) {
            gauge!(CHAT_KV_USED).set(engine.kv_tokens_used as f64);
            gauge!(CHAT_KV_ALLOCATED).set(engine.kv_tokens_allocated as f64);
            gauge!(CHAT_KV_IDLE).set(engine.kv_tokens_idle as f64);
            gauge!(CHAT_KEPT).set(engine.kept_conversations as f64);
            // The engine counts these itself; they only ever grow.
            counter!(CHAT_BATCHED_STEPS).absolute(engine.batched_steps);
            counter!(CHAT_MIXED_STEPS).absolute(engine.mixed_steps);
            counter!(CHAT_SHARED_PREFIX).absolute(engine.shared_prefix_tokens);
            counter!(CHAT_EVICTED, "reason" => "room").absolute(engine.evicted_for_room);
            counter!(CHAT_EVICTED, "reason" => "limit").absolute(engine.evicted_for_limit);
        }
    }
    // The shared queue, every process's jobs: each process reports the same figures.
    match state.jobs.load().await {
        Ok((waiting, running)) => {
            gauge!(IMAGE_QUEUE_DEPTH).set(waiting as f64);
            gauge!(IMAGE_RUNNING).set(running as f64);
        }
        Err(err) => tracing::warn!(error = %err, "could not count the image queue for the metrics"),
    }
    let (in_use, idle) = state.db.connections();
    gauge!(DB_CONNECTIONS, "state" => "in_use").set(in_use as f64);
    gauge!(DB_CONNECTIONS, "state" => "idle").set(idle as f64);
    // Sessions in Redis are not counted: that would mean scanning its keys on every scrape.
    if state.redis.is_none() {
        match state.db.live_sessions().await {
            Ok(n) => gauge!(SESSIONS).set(n as f64),
            Err(err) => tracing::warn!(error = %err, "could not count the sessions for the metrics"),
        }
    }
    gauge!(WEBSOCKETS).set(state.limits.all_open_sockets() as f64);
    Ok(exporter.render())
}
