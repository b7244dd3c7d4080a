//! `server bench llm`: load time, time to first token, time per output token and peak memory of
//! the chat engine, as one JSON line (medians; the first run is a discarded warm-up).
//! bench/llm.py runs this beside openvino-genai on the same model and prompt ids.

use super::{
    load_runtime,
    measure::{complete, median, peak_rss_mb},
    override_properties, start_llm,
};
use crate::{
    cli::{BenchCommand, BenchLlmArgs},
    config::Config,
    inference::llm::{Completion, GenerateRequest, GenerationParams, LlmEngine, Prompt, SamplingOverrides},
};

pub fn run(config: &Config, command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Llm(args) => llm(config, args),
        BenchCommand::Sd(args) => super::bench_sd::run(config, args),
        BenchCommand::Safety(args) => super::bench_safety::run(config, args),
        BenchCommand::Serve(args) => super::bench_serve::run(config, args),
    }
}

/// The prompt of run `run`: deterministic ids, valid in any vocabulary of 940+ tokens, different
/// for every run so that no prefix cache can serve one run from another. bench/llm.py computes
/// the same lists.
pub fn bench_prompt(n: usize, run: usize) -> Vec<u32> {
    (0..n).map(|i| 3 + ((i * 7919 + 13 + run * 104_729) % 937) as u32).collect()
}

fn llm(config: &Config, args: BenchLlmArgs) -> Result<(), String> {
    load_runtime(config)?;
    let mut options = config.llm_engine_options();
    options.compile.slice_logits = !args.no_slice;
    if args.no_cache {
        options.compile.cache_dir = None;
    }
    if let Some(chunk) = args.prefill_chunk {
        options.prefill_chunk = (chunk > 0).then_some(chunk);
    }
    options.mixed_steps = !args.unmixed;
    if let Some(chunk) = args.shared_chunk {
        options.shared_prefill_chunk = chunk.max(2);
    }
    override_properties(&mut options.compile.properties, &args.property);
    // A conversation's cold runs (`--turns`) must be cold: its own cache only, nothing shared.
    options.share_prefixes &= args.turns.is_none();
    let (engine, info) = start_llm(&args.model, options.clone())?;
    let params = GenerationParams {
        sampling: SamplingOverrides::greedy(),
        max_new_tokens: args.new_tokens.max(2),
        ignore_eos: true,
        ..Default::default()
    };
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    for run in 0..=args.runs {
        let c = complete(&engine, None, Prompt::Ids(bench_prompt(args.prompt_tokens, run)), &params)?;
        if run > 0 {
            ttft.push(c.ttft_ms);
            tpot.push((c.total_ms - c.ttft_ms) / (c.completion_tokens - 1) as f64);
        }
    }
    let tpot_ms = median(&mut tpot);
    let mut line = serde_json::json!({
        "ttft_ms": median(&mut ttft),
        "tpot_ms": tpot_ms,
        "tokens_per_s": 1000.0 / tpot_ms,
        "load_ms": info.load_ms,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": params.max_new_tokens,
        "runs": args.runs,
        "sliced_logits": info.sliced_logits,
        "attention": info.attention,
        "prefill_chunk": options.prefill_chunk,
        "properties": options.compile.properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "cpu_class": crate::inference::cpu::CpuClass::detect().name(),
        "precision": config.llm.precision.name(),
    });
    if let Some(turns) = args.turns {
        let timings = super::bench_turns::conversation(&engine, turns.max(2), args.window_turns)?;
        let last = timings.last().expect("at least two turns");
        line["turns"] = turns.into();
        line["window_turns"] = args.window_turns.into();
        line["history_tokens"] = last.prompt_tokens.into();
        line["followup_ttft_ms"] = last.followup_ttft_ms.into();
        line["reprefill_ttft_ms"] = last.cold_ttft_ms.into();
        line["followup_ratio"] = last.ratio().into();
        let steady: Vec<f64> = super::bench_turns::steady(&timings).map(|t| t.ratio()).collect();
        line["moves"] = timings.iter().filter(|t| t.moved).count().into();
        line["max_steady_ratio"] = steady.iter().copied().fold(0.0, f64::max).into();
        line["turn_ttft"] = serde_json::to_value(&timings).unwrap_or_default();
    }
    if let Some(n) = args.parallel.filter(|&n| n > 1) {
        let (tokens_per_s, single) = parallel(&engine, n, &args, &params)?;
        line["parallel"] = n.into();
        line["parallel_tokens_per_s"] = tokens_per_s.into();
        line["parallel_speedup"] = (tokens_per_s / single).into();
    }
    if args.newcomer {
        let arrival = newcomer(&engine, args.prompt_tokens)?;
        line["newcomer_ttft_ms"] = arrival.ttft_ms.into();
        line["replying_delay_ms"] = arrival.delay_ms.into();
        line["mixed_steps"] = options.mixed_steps.into();
        line["shared_chunk"] = options.shared_prefill_chunk.into();
    }
    line["peak_rss_mb"] = peak_rss_mb().into();
    println!("{line}");
    Ok(())
}

/// Decode throughput with `n` generations in flight at once, and with one: (tokens/s for all n
/// together, tokens/s alone). Prompts differ per generation; time runs from the first token of
/// the last to start to the end of the last to finish, so prefills do not count.
fn parallel(
    engine: &LlmEngine,
    n: usize,
    args: &BenchLlmArgs,
    params: &GenerationParams,
) -> Result<(f64, f64), String> {
    let decode_rate = |completions: &[Completion], started: std::time::Instant| {
        let first = completions.iter().map(|c| c.ttft_ms).fold(0.0, f64::max);
        let last = started.elapsed().as_secs_f64() * 1000.0;
        let tokens: usize = completions.iter().map(|c| c.completion_tokens - 1).sum();
        tokens as f64 * 1000.0 / (last - first)
    };
    let run = |count: usize, offset: usize| -> Result<f64, String> {
        let started = std::time::Instant::now();
        let handles = (0..count)
            .map(|i| {
                let prompt = Prompt::Ids(bench_prompt(args.prompt_tokens, 1000 + offset + i));
                engine.generate(GenerateRequest { conversation: None, prompt, params: params.clone() })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let completions = handles
            .into_iter()
            .map(|h| h.blocking_completion().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(decode_rate(&completions, started))
    };
    let single = run(1, 0)?;
    Ok((run(n, 1)?, single))
}

struct Arrival {
    ttft_ms: f64,
    /// How much longer the replying conversation took over its tokens than alone.
    delay_ms: f64,
}

/// A prompt of `prompt_tokens` arriving while another conversation replies: the newcomer's time
/// to first token, and how much it delayed the other. (Streamed pieces cannot time the other's
/// tokens: a random-weight model's tokens seldom make whole UTF-8 text.)
fn newcomer(engine: &LlmEngine, prompt_tokens: usize) -> Result<Arrival, String> {
    const REPLY: usize = 48;
    let start = |ids, max_new_tokens| {
        let params = GenerationParams {
            sampling: SamplingOverrides::greedy(),
            max_new_tokens,
            ignore_eos: true,
            ..Default::default()
        };
        engine
            .generate(GenerateRequest { conversation: None, prompt: Prompt::Ids(ids), params })
            .map_err(|e| e.to_string())
    };
    let finish =
        |handle: crate::inference::llm::GenerationHandle| handle.blocking_completion().map_err(|e| e.to_string());
    let decoding = |c: &Completion| c.total_ms - c.ttft_ms;
    let alone = finish(start(bench_prompt(64, 2000), REPLY)?)?;
    let replying = start(bench_prompt(64, 2001), REPLY)?;
    // A third of the way into its reply.
    let into = alone.ttft_ms + decoding(&alone) / 3.0;
    std::thread::sleep(std::time::Duration::from_secs_f64(into / 1000.0));
    let arriving = start(bench_prompt(prompt_tokens, 3000), 2)?;
    let (replied, arrived) = (finish(replying)?, finish(arriving)?);
    if into + arrived.ttft_ms > replied.total_ms {
        return Err("the newcomer's prompt ran after the other's reply had ended: use fewer prompt tokens".into());
    }
    Ok(Arrival { ttft_ms: arrived.ttft_ms, delay_ms: decoding(&replied) - decoding(&alone) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_prompt_is_stable_and_in_range() {
        assert_eq!(bench_prompt(4, 0), vec![16, 439, 862, 348]);
        assert_eq!(bench_prompt(2, 1), vec![738, 224]);
        assert!(bench_prompt(2000, 7).iter().all(|&id| (3..940).contains(&id)));
    }
}
