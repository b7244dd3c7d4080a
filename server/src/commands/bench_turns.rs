//! `server bench llm --turns N [--window-turns K]`: a conversation of N turns, and at every turn
//! the time to first token with the conversation's KV cache (a live follow-up) beside the same
//! prompt run cold. With `--window-turns K` the turns sent are windowed as `POST /chat` windows
//! them (`CONTEXT_TURNS=K`, through the same `window::first_kept_turn`); with a low
//! `--llm-context-tokens` the engine's own token window slides too. A turn where a window's
//! start moved is marked: it runs its (shortened) window again by design.

use super::measure::complete;
use crate::inference::llm::{window, ChatMessage, GenerationParams, LlmEngine, Prompt, SamplingOverrides};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct TurnTiming {
    pub turn: usize,
    pub prompt_tokens: usize,
    pub reused_tokens: usize,
    /// Messages of the conversation before the prompt's first (both windows together).
    pub start: usize,
    /// The start moved at this turn.
    pub moved: bool,
    pub followup_ttft_ms: f64,
    pub cold_ttft_ms: f64,
}

impl TurnTiming {
    pub fn ratio(&self) -> f64 {
        self.followup_ttft_ms / self.cold_ttft_ms
    }
}

fn words(seed: usize, n: usize) -> String {
    const W: [&str; 12] = [
        "light", "river", "stone", "quiet", "market", "garden", "winter", "paper", "signal", "copper", "harbor",
        "window",
    ];
    (0..n).map(|i| W[(seed * 31 + i * 7) % W.len()]).collect::<Vec<_>>().join(" ")
}

/// Every turn of an N-turn conversation, timed live and cold.
pub fn conversation(engine: &LlmEngine, turns: usize, window_turns: Option<usize>) -> Result<Vec<TurnTiming>, String> {
    let params = GenerationParams {
        sampling: SamplingOverrides::greedy(),
        max_new_tokens: 16,
        ignore_eos: true,
        ..Default::default()
    };
    let cold_params = GenerationParams { max_new_tokens: 2, ..params.clone() };
    // Every message so far (user, assistant, ...), as the database holds them.
    let mut history: Vec<ChatMessage> = Vec::new();
    let mut timings: Vec<TurnTiming> = Vec::new();
    for turn in 0..turns {
        let first = window_turns.map_or(0, |w| window::first_kept_turn(turn, w));
        let mut messages = history[2 * first..].to_vec();
        messages.push(ChatMessage::new("user", format!("Question {turn}: {}?", words(turn, 30))));
        let live = complete(engine, Some("bench"), Prompt::Messages(messages.clone()), &params)?;
        // The very prompt the live turn ran, cold: no conversation, so no cache and no window memory.
        let kept = messages[live.dropped_messages..].to_vec();
        let cold = complete(engine, None, Prompt::Messages(kept), &cold_params)?;
        if cold.prompt_tokens != live.prompt_tokens || cold.reused_tokens != 0 {
            return Err(format!(
                "turn {turn}: the cold run did not run the same prompt ({} / {})",
                cold.prompt_tokens, live.prompt_tokens
            ));
        }
        let start = 2 * first + live.dropped_messages;
        let moved = timings.last().is_some_and(|t| t.start != start);
        tracing::info!(
            turn,
            fed = live.prompt_tokens - live.reused_tokens,
            reused = live.reused_tokens,
            start,
            moved,
            "turn"
        );
        timings.push(TurnTiming {
            turn,
            prompt_tokens: live.prompt_tokens,
            reused_tokens: live.reused_tokens,
            start,
            moved,
            followup_ttft_ms: live.ttft_ms,
            cold_ttft_ms: cold.ttft_ms,
        });
        history.push(messages.pop().expect("the new message"));
        history.push(ChatMessage::new("assistant", format!("Answer {turn}: {}.", words(turn + 5, 50))));
    }
    Ok(timings)
}

/// The turns after the first where the window did not move: the ones that should reuse the cache.
pub fn steady(timings: &[TurnTiming]) -> impl Iterator<Item = &TurnTiming> {
    timings.iter().skip(1).filter(|t| !t.moved)
}
