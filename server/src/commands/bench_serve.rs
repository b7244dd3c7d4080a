//! `server bench serve`: the chat engine under a stream of requests (bench/serve_trace.py's JSON:
//! prompt ids and exact output lengths), closed loop (`--users N`) or open loop (`--rate R`,
//! Poisson offsets given in the trace), greedy with end-of-sequence ignored. A request's time to
//! first token runs from its submission (time waiting for admission included); its time per output
//! token is its decoding time over its tokens after the first (the engine's own clock: streamed
//! text lags tokens, which the detokenizer and the reasoning split hold back). Prints one JSON
//! line like bench/serve_genai.py's: output tokens/s, requests/s, TTFT and TPOT percentiles, peak
//! memory.

use super::{load_runtime, measure::peak_rss_mb, start_llm};
use crate::{
    cli::BenchServeArgs,
    config::Config,
    inference::llm::{GenerateRequest, GenerationEvent, GenerationParams, Prompt, SamplingOverrides, StepTotals},
};
use serde::Deserialize;
use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

#[derive(Deserialize)]
struct TraceRequest {
    prompt_ids: Vec<u32>,
    max_new_tokens: usize,
    /// Seconds after the start (open loop).
    #[serde(default)]
    arrival_s: Option<f64>,
}

/// One request's times, in ms.
struct Timed {
    /// The request's place in the trace.
    index: usize,
    ttft: f64,
    tpot: f64,
}

pub fn run(config: &Config, args: BenchServeArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.trace).map_err(|e| format!("{}: {e}", args.trace.display()))?;
    let trace: Vec<TraceRequest> = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.trace.display()))?;
    load_runtime(config)?;
    let options = config.llm_engine_options();
    let (engine, info) = start_llm(&args.model, options)?;
    // A first inference pays for one-time work (kernels, allocations): not a request's cost.
    let warm = GenerationParams { sampling: SamplingOverrides::greedy(), max_new_tokens: 2, ..Default::default() };
    let warm = GenerateRequest { conversation: None, prompt: Prompt::Ids((3..67).collect()), params: warm };
    engine.generate(warm).map_err(|e| e.to_string())?.blocking_completion().map_err(|e| e.to_string())?;
    let users = args.users.unwrap_or(usize::MAX).max(1);
    let before = engine.stats().steps;
    let start = Instant::now();
    let ms = move || start.elapsed().as_secs_f64() * 1000.0;
    let (done_tx, done_rx) = mpsc::channel::<Result<Timed, String>>();
    let (mut next, mut live, mut results) = (0, 0, Vec::new());
    while results.len() < trace.len() {
        // Admit what is due: a free user (closed loop) or an arrival time reached (open loop).
        while next < trace.len() && live < users {
            let request = &trace[next];
            if let Some(at) = request.arrival_s.filter(|_| args.users.is_none()) {
                let wait = at * 1000.0 - ms();
                if wait > 0.0 {
                    if let Ok(timed) = done_rx.recv_timeout(Duration::from_secs_f64(wait / 1000.0)) {
                        results.push(timed?);
                        live -= 1;
                    }
                    continue;
                }
            }
            let params = GenerationParams {
                sampling: SamplingOverrides::greedy(),
                max_new_tokens: request.max_new_tokens.max(1),
                ignore_eos: true,
                ..Default::default()
            };
            let submitted = ms();
            let generate =
                GenerateRequest { conversation: None, prompt: Prompt::Ids(request.prompt_ids.clone()), params };
            let mut handle = engine.generate(generate).map_err(|e| e.to_string())?;
            let done = done_tx.clone();
            let index = next;
            std::thread::spawn(move || {
                let mut admitted = submitted;
                let result = loop {
                    match handle.blocking_next() {
                        Some(GenerationEvent::Started { .. }) => admitted = start.elapsed().as_secs_f64() * 1000.0,
                        Some(GenerationEvent::Done(c)) => {
                            let decoded = c.completion_tokens.saturating_sub(1).max(1) as f64;
                            break Ok(Timed {
                                index,
                                ttft: admitted - submitted + c.ttft_ms,
                                tpot: (c.total_ms - c.ttft_ms) / decoded,
                            });
                        }
                        Some(GenerationEvent::Failed(f)) => break Err(f.message),
                        Some(GenerationEvent::Delta { .. }) => {}
                        None => break Err("the engine stopped".to_string()),
                    }
                };
                let _ = done.send(result);
            });
            next += 1;
            live += 1;
        }
        if live > 0 {
            results.push(done_rx.recv().map_err(|e| e.to_string())??);
            live -= 1;
        }
    }
    let seconds = ms() / 1000.0;
    let ttft: Vec<f64> = results.iter().map(|t| t.ttft).collect();
    let tpot: Vec<f64> = results.iter().map(|t| t.tpot).collect();
    let tokens: usize = trace.iter().map(|r| r.max_new_tokens).sum();
    results.sort_by_key(|t| t.index);
    let ttft_each: Vec<f64> = results.iter().map(|t| t.ttft).collect();
    let mode = match args.users {
        Some(n) => format!("users={n}"),
        None => "rate".to_string(),
    };
    println!(
        "{}",
        serde_json::json!({
            "engine": "duet", "mode": mode, "requests": trace.len(), "seconds": seconds, "load_s": info.load_ms / 1000.0,
            "output_tokens_per_s": tokens as f64 / seconds, "requests_per_s": trace.len() as f64 / seconds,
            "ttft_ms": percentiles(ttft), "tpot_ms": percentiles(tpot), "ttft_each_ms": ttft_each,
            "peak_rss_mb": peak_rss_mb(), "steps": step_means(before, engine.stats().steps),
        })
    );
    Ok(())
}

/// What the engine's steps held and cost on average during the run: how the schedule split its
/// work between prompts and decoding (bench/serve_genai.py prints the same for GenAI).
fn step_means(before: StepTotals, after: StepTotals) -> serde_json::Value {
    let count = (after.count - before.count).max(1) as f64;
    let per_step = |a: u64, b: u64| (a - b) as f64 / count;
    serde_json::json!({
        "count": after.count - before.count,
        "mean_ms": per_step(after.micros, before.micros) / 1000.0,
        "decode_tokens": per_step(after.decode_tokens, before.decode_tokens),
        "prompt_tokens": per_step(after.prompt_tokens, before.prompt_tokens),
        "first_tokens": per_step(after.prompts_finished, before.prompts_finished),
    })
}

/// Nearest-rank P50/P95/P99, as bench/serve_trace.py computes them.
fn percentiles(mut values: Vec<f64>) -> serde_json::Value {
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if values.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0 * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    serde_json::json!({"p50": at(50.0), "p95": at(95.0), "p99": at(99.0)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_like_the_python_side() {
        let p = percentiles(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!((p["p50"].as_f64(), p["p95"].as_f64()), (Some(2.0), Some(4.0)));
        assert!(percentiles(Vec::new())["p50"].is_null(), "NaN serializes as null");
    }
}
