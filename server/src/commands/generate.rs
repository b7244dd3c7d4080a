//! `server generate`: one reply, streamed to the terminal or printed as one JSON line.

use super::{load_runtime, start_llm};
use crate::{
    cli::GenerateArgs,
    config::Config,
    inference::llm::{
        ChatMessage, GenerateRequest, GenerationEvent, GenerationParams, Part, Prompt, SamplingOverrides,
    },
};
use std::io::Write;

pub fn run(config: &Config, args: GenerateArgs) -> Result<(), String> {
    load_runtime(config)?;
    let (engine, _) = start_llm(&args.model, config.llm_engine_options())?;
    let prompt = match (&args.prompt, &args.prompt_ids) {
        (_, Some(ids)) => Prompt::Ids(ids.clone()),
        (Some(text), None) => {
            let mut messages: Vec<ChatMessage> =
                args.system.iter().map(|s| ChatMessage::new("system", s.clone())).collect();
            messages.push(ChatMessage::new("user", text.clone()));
            Prompt::Messages(messages)
        }
        (None, None) => return Err("give --prompt or --prompt-ids".into()),
    };
    let params = GenerationParams {
        sampling: SamplingOverrides {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
        },
        max_new_tokens: args.max_new_tokens,
        stop: args.stop.clone(),
        ignore_eos: false,
    };
    let mut handle =
        engine.generate(GenerateRequest { conversation: None, prompt, params }).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut shown = None;
    while let Some(event) = handle.blocking_next() {
        match event {
            GenerationEvent::Delta { part, text } if !args.json => {
                if shown != Some(part) {
                    let header = if part == Part::Reasoning { "[thinking]\n" } else { "\n[answer]\n" };
                    let _ = out.write_all(header.as_bytes());
                    shown = Some(part);
                }
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            GenerationEvent::Done(c) => {
                if args.json {
                    let line = serde_json::json!({
                        "token_ids": c.token_ids,
                        "text": c.text,
                        "reasoning": c.reasoning,
                        "answer": c.answer,
                        "finish_reason": c.finish_reason,
                        "prompt_tokens": c.prompt_tokens,
                        "seed": c.seed,
                        "ttft_ms": c.ttft_ms,
                        "total_ms": c.total_ms,
                    });
                    let _ = writeln!(out, "{line}");
                } else {
                    let _ = writeln!(out, "\n");
                }
                return Ok(());
            }
            GenerationEvent::Failed(err) => return Err(err.message),
            _ => {}
        }
    }
    Err("the engine stopped without an answer".into())
}
