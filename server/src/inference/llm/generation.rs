//! One generation, driven by the engine thread one unit of work at a time: a chunk of the prompt,
//! or one new token. Between units the engine serves other conversations, and cancellation is
//! checked before every unit.

use super::{
    backend::{Backend, Cache},
    detok::{Decode, IncrementalDetokenizer},
    reasoning::{Part, ReasoningSplitter},
    sampler::{Sampler, SamplingOverrides, SamplingParams},
    stop::StopMatcher,
    template::ChatMessage,
};
use crate::inference::InferenceError;
use serde::Serialize;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone, Debug)]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template and its generation prompt.
    Messages(Vec<ChatMessage>),
    /// Exact token ids, run as they are.
    Ids(Vec<u32>),
}

#[derive(Clone, Debug)]
pub struct GenerationParams {
    /// Left-out settings come from the model's `generation_config.json`.
    pub sampling: SamplingOverrides,
    pub max_new_tokens: usize,
    /// Generation ends before the first of these strings; it is not part of the reply.
    pub stop: Vec<String>,
    /// Keep going past end-of-sequence until `max_new_tokens` (for benchmarks).
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            sampling: SamplingOverrides::default(),
            max_new_tokens: 1024,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// Conversation key: its KV cache is kept for the next turn. `None`: a one-off request.
    pub conversation: Option<String>,
    pub prompt: Prompt,
    pub params: GenerationParams,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its reply (end-of-sequence token).
    Eos,
    /// A stop string was generated.
    Stop,
    /// `max_new_tokens` reached.
    Length,
    /// The context window is full.
    ContextLimit,
    /// Cancelled by the caller (or the caller went away).
    Cancelled,
}

impl FinishReason {
    /// The name it serializes to.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContextLimit => "context_limit",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Completion {
    /// Generated token ids, including the end-of-sequence token when the model stopped on one.
    pub token_ids: Vec<u32>,
    /// The generated text (reasoning and answer as the model wrote them, without a stop string).
    pub text: String,
    pub reasoning: String,
    pub answer: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens found in the conversation's KV cache and not run again.
    pub reused_tokens: usize,
    pub completion_tokens: usize,
    /// Oldest messages left out to fit the context.
    pub dropped_messages: usize,
    pub seed: u64,
    pub ttft_ms: f64,
    pub total_ms: f64,
}

#[derive(Clone, Debug)]
pub enum GenerationEvent {
    /// The request was admitted; its prompt is being run.
    Started {
        prompt_tokens: usize,
        reused_tokens: usize,
        dropped_messages: usize,
    },
    /// New text, and which part of the reply it belongs to.
    Delta {
        part: Part,
        text: String,
    },
    /// The final result. Its `reasoning`/`answer` are authoritative: when the model never closed
    /// `<think>` but ended on its own, text streamed as reasoning becomes the answer.
    Done(Completion),
    Failed(String),
}

/// Everything a generation needs from admission.
pub(super) struct Setup {
    pub key: Option<String>,
    pub cache: Cache,
    pub feed: Vec<u32>,
    pub first_position: usize,
    pub prompt_tokens: usize,
    pub dropped_messages: usize,
    pub params: GenerationParams,
    pub sampling: SamplingParams,
    pub prompt_opens_think: bool,
    pub eos: Vec<u32>,
    pub context_limit: usize,
    pub events: UnboundedSender<GenerationEvent>,
    pub cancel: Arc<AtomicBool>,
}

pub(super) enum Step {
    Continue,
    Finished,
}

pub(super) struct Generation {
    pub key: Option<String>,
    pub cache: Cache,
    pending: Vec<u32>,
    next_input: Option<u32>,
    position: usize,
    params: GenerationParams,
    sampler: Sampler,
    seed: u64,
    eos: Vec<u32>,
    context_limit: usize,
    detok: IncrementalDetokenizer,
    stop: StopMatcher,
    splitter: ReasoningSplitter,
    text: String,
    /// The end-of-sequence token the model stopped on: counted as generated, adds no text.
    eos_token: Option<u32>,
    prompt_tokens: usize,
    reused: usize,
    dropped: usize,
    events: UnboundedSender<GenerationEvent>,
    cancel: Arc<AtomicBool>,
    started: Instant,
    first_token: Option<Instant>,
}

impl Generation {
    pub fn new(s: Setup, prompt: &[u32]) -> Self {
        let reused = s.first_position;
        let _ = s.events.send(GenerationEvent::Started {
            prompt_tokens: s.prompt_tokens,
            reused_tokens: reused,
            dropped_messages: s.dropped_messages,
        });
        Generation {
            key: s.key,
            cache: s.cache,
            pending: s.feed,
            next_input: None,
            position: s.first_position,
            sampler: Sampler::new(s.sampling.clone(), prompt),
            seed: s.sampling.seed,
            stop: StopMatcher::new(s.params.stop.iter().cloned()),
            params: s.params,
            eos: s.eos,
            context_limit: s.context_limit,
            detok: IncrementalDetokenizer::new(),
            splitter: ReasoningSplitter::new(s.prompt_opens_think),
            text: String::new(),
            eos_token: None,
            prompt_tokens: s.prompt_tokens,
            reused,
            dropped: s.dropped_messages,
            events: s.events,
            cancel: s.cancel,
            started: Instant::now(),
            first_token: None,
        }
    }

    /// Run one unit: up to `max_prefill` prompt tokens, or the last token to get the next one.
    /// On an error nothing is consumed, so the same unit can be tried again (after the engine
    /// freed cache blocks, say).
    pub fn step(
        &mut self,
        backend: &mut Backend,
        decoder: &impl Decode,
        max_prefill: usize,
    ) -> Result<Step, InferenceError> {
        if self.is_cancelled() {
            return Ok(self.finish(FinishReason::Cancelled, decoder));
        }
        let feed = self.feed(max_prefill);
        let logits = backend.forward(&mut self.cache, &feed, self.position)?;
        Ok(self.advance(feed.len(), logits, decoder))
    }

    /// The caller stopped it, or went away.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.events.is_closed()
    }

    /// Past its prompt: each unit runs one token.
    pub fn is_decoding(&self) -> bool {
        self.next_input.is_some()
    }

    /// Position of the next unit's first token.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What the next unit runs (nothing is consumed until [`Self::advance`]).
    pub fn feed(&self, max_prefill: usize) -> Vec<u32> {
        match self.next_input {
            Some(token) => vec![token],
            None => self.pending[..self.pending.len().min(max_prefill.max(1))].to_vec(),
        }
    }

    /// The unit of `fed` tokens ran and gave `logits`: consume it, and at the end of the prompt
    /// or in decoding pick and stream the next token.
    pub fn advance(&mut self, fed: usize, mut logits: Vec<f32>, decoder: &impl Decode) -> Step {
        if self.next_input.take().is_none() {
            self.pending.drain(..fed);
        }
        self.position += fed;
        if !self.pending.is_empty() {
            return Step::Continue;
        }

        let token = self.sampler.sample(&mut logits);
        self.first_token.get_or_insert_with(Instant::now);
        self.sampler.accept(token);
        if !self.params.ignore_eos && self.eos.contains(&token) {
            self.eos_token = Some(token);
            return self.finish(FinishReason::Eos, decoder);
        }
        let piece = self.detok.push(token, decoder);
        if !piece.is_empty() {
            let released = self.stop.push(&piece);
            self.emit(&released.text);
            if released.stopped {
                return self.finish(FinishReason::Stop, decoder);
            }
        }
        if self.detok.ids().len() >= self.params.max_new_tokens {
            return self.finish(FinishReason::Length, decoder);
        }
        if self.position >= self.context_limit {
            return self.finish(FinishReason::ContextLimit, decoder);
        }
        self.next_input = Some(token);
        Step::Continue
    }

    /// The engine failed on this request: tell the caller, and hand back the cache to release.
    pub fn fail(self, err: &InferenceError) -> Cache {
        let _ = self.events.send(GenerationEvent::Failed(err.to_string()));
        self.cache
    }

    fn emit(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.text.push_str(text);
        for (part, text) in self.splitter.push(text) {
            let _ = self.events.send(GenerationEvent::Delta { part, text });
        }
    }

    fn finish(&mut self, mut reason: FinishReason, decoder: &impl Decode) -> Step {
        if reason != FinishReason::Stop {
            let tail = self.detok.flush(decoder);
            let released = self.stop.push(&tail);
            self.emit(&released.text);
            if released.stopped {
                reason = FinishReason::Stop;
            } else {
                let held = self.stop.flush();
                self.emit(&held);
            }
        }
        let ended_by_model = matches!(reason, FinishReason::Eos | FinishReason::Stop);
        let split = std::mem::replace(&mut self.splitter, ReasoningSplitter::new(false)).finish(ended_by_model);
        let mut token_ids = self.detok.ids().to_vec();
        token_ids.extend(self.eos_token.take());
        let now = Instant::now();
        let ms = |t: Instant| t.duration_since(self.started).as_secs_f64() * 1000.0;
        let completion = Completion {
            completion_tokens: token_ids.len(),
            token_ids,
            text: std::mem::take(&mut self.text),
            reasoning: split.reasoning,
            answer: split.answer,
            finish_reason: reason,
            prompt_tokens: self.prompt_tokens,
            reused_tokens: self.reused,
            dropped_messages: self.dropped,
            seed: self.seed,
            ttft_ms: self.first_token.map_or(0.0, ms),
            total_ms: ms(now),
        };
        let _ = self.events.send(GenerationEvent::Done(completion));
        Step::Finished
    }
}
