//! The chat engine: one OS thread owns the compiled model, the tokenizer and every conversation's
//! KV cache. Callers send requests over a channel and read events from another. Work is done one
//! unit at a time, round-robin over the generations in flight, so several conversations advance
//! together and none starves: a unit is a prompt chunk of one generation, or — with paged
//! attention — the next token of every generation past its prompt plus a chunk of one prompt,
//! in one step (decoding is bound by reading the weights, so a step for several costs about what
//! one costs, and a newcomer's prompt does not stall the replies already running).

use super::{
    backend::{Attention, Backend, Cache},
    context::{fit, piece_end, ContextError, Measured, Tokens},
    files::LlmFiles,
    generation::{Completion, Failure, FailureKind, GenerateRequest, Generation, GenerationEvent, Prompt, Setup, Step},
    model::CompileOptions,
    schedule::{InFlight, Policy},
    session::SessionCache,
    template::ChatMessage,
};
use crate::inference::{engine::catch_panic, fresh_seed, new_core, InferenceError};
use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Instant,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Conversations whose window start (`context::fit`'s anchor) is remembered.
const MAX_ANCHORS: usize = 4096;

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub compile: CompileOptions,
    /// Paged attention (KV blocks we manage) or the stateful graph; see `backend`.
    pub attention: Attention,
    /// Context window in tokens; `None`: the model's own limit.
    pub max_context: Option<usize>,
    /// Idle conversations whose KV cache is kept.
    pub max_sessions: usize,
    /// Estimated KV bytes the idle conversations may hold together; with paged attention, the
    /// most the block pool grows to.
    pub max_session_bytes: usize,
    /// Tokens of a step shared by several generations (`LLM_STEP_TOKENS`): one per decoding
    /// generation, prompt chunks oldest first in the rest; also a prompt's chunk when it runs
    /// alone while others wait. Measured (`bench/run.sh serve`, full-size model, AVX-512 EPYC,
    /// 16 requests at 1/4 of the trace's lengths): 256 against 128 brought the P50 time to
    /// first token at 16 users from 6.3 s to 4.4 s (GenAI CB at 256: 4.1-4.5 s), tokens/s even.
    pub shared_prefill_chunk: usize,
    /// Prompt chunk size otherwise; `None` runs a whole prompt at once. Chunks bound the
    /// activation buffers each conversation's request keeps (measured: a 10-turn conversation
    /// peaks at 2148 MiB with 256-token chunks, 2638 MiB without) at no cost in speed.
    pub prefill_chunk: Option<usize>,
    /// Run prompt chunks in the same step as the decoding generations (paged attention), the
    /// step's tokens kept at `shared_prefill_chunk` in all. Measured (`server bench llm
    /// --newcomer [--unmixed]`, full-size model, a 512-token prompt arriving during a reply): its
    /// first token after 1.20-1.26 s instead of 1.34-1.44 s, the reply delayed 0.80-0.94 s
    /// instead of 1.08-1.24 s. A chunk that pushed the step one token past 128 made it slower
    /// than the two steps apart (2.0 s and 1.7 s): the CPU kernels work in blocks of tokens.
    pub mixed_steps: bool,
    /// A new prompt may start on KV blocks other conversations published (paged attention).
    pub share_prefixes: bool,
    /// Woken from idle, how long the engine waits for the next request of a burst before its
    /// first step (each arrival waits again, up to 5 gaps in all); see `Worker::gather_burst`.
    pub burst_gap: std::time::Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            compile: CompileOptions::default(),
            attention: Attention::Auto,
            max_context: None,
            max_sessions: 8,
            max_session_bytes: 1 << 30,
            shared_prefill_chunk: 256,
            prefill_chunk: Some(256),
            mixed_steps: true,
            share_prefixes: true,
            burst_gap: std::time::Duration::from_millis(2),
        }
    }
}

/// What the engine reports once the model is loaded.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    pub context_limit: usize,
    /// What `Attention::Auto` became.
    pub attention: Attention,
    pub sliced_logits: bool,
    pub load_ms: f64,
}

enum Command {
    Generate {
        request: GenerateRequest,
        events: UnboundedSender<GenerationEvent>,
        cancel: Arc<AtomicBool>,
        submitted: Instant,
    },
}

/// What the engine is doing now, and has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    /// Generations in flight.
    pub running: usize,
    /// Idle conversations whose KV cache is kept for their next turn.
    pub kept_conversations: usize,
    /// Paged attention: tokens the KV block pool holds now, and could hold as allocated.
    pub kv_tokens_used: usize,
    pub kv_tokens_allocated: usize,
    /// Paged attention: tokens in blocks no conversation holds, kept for the prompt prefix they
    /// hold (handed out when the pool needs room).
    pub kv_tokens_idle: usize,
    /// Prompt tokens that new prompts took from blocks other conversations published.
    pub shared_prefix_tokens: u64,
    /// Steps that decoded several generations at once (paged attention only).
    pub batched_steps: u64,
    /// Steps that ran a prompt chunk together with decoding generations (paged attention only).
    pub mixed_steps: u64,
    /// The most generations one step has decoded together.
    pub max_batch: usize,
    /// Conversations evicted to make room in a full KV block pool.
    pub evicted_for_room: u64,
    /// Conversations evicted past `max_sessions` or the idle conversations' memory budget.
    pub evicted_for_limit: u64,
    /// Every unit of work the engine ran, what went in it, and how long it took: what a
    /// scheduling policy is judged by (`server bench serve` prints the means).
    pub steps: StepTotals,
}

/// Sums over the engine's steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StepTotals {
    pub count: u64,
    /// Decoding generations' tokens (one each per step).
    pub decode_tokens: u64,
    /// Prompt tokens run.
    pub prompt_tokens: u64,
    /// Prompts that ran their last chunk, so gave a first token.
    pub prompts_finished: u64,
    pub micros: u64,
}

impl StepTotals {
    fn add(&mut self, decoding: usize, prompt_tokens: usize, prompts_finished: usize, took: std::time::Duration) {
        self.count += 1;
        self.decode_tokens += decoding as u64;
        self.prompt_tokens += prompt_tokens as u64;
        self.prompts_finished += prompts_finished as u64;
        self.micros += took.as_micros() as u64;
    }
}

/// Whether a unit just run was a prompt's last chunk: it has its first token now (or ended on it).
fn gave_first_token(was_decoding: bool, generation: &Generation, step: &Step) -> bool {
    !was_decoding && (generation.is_decoding() || matches!(step, Step::Finished))
}

/// A cheap, cloneable handle to the engine thread.
#[derive(Clone)]
pub struct LlmEngine {
    commands: mpsc::Sender<Command>,
    stats: Arc<Mutex<EngineStats>>,
}

/// The events of one generation. Dropping it cancels the generation.
pub struct GenerationHandle {
    events: UnboundedReceiver<GenerationEvent>,
    cancel: Arc<AtomicBool>,
    /// An event read by `admitted` that was not the admission.
    early: Option<GenerationEvent>,
}

/// Cancels one generation; see [`GenerationHandle::canceller`].
#[derive(Clone)]
pub struct Canceller(Arc<AtomicBool>);

impl Canceller {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl GenerationHandle {
    /// A handle over any event source (mock engines make their own).
    pub(crate) fn new(events: UnboundedReceiver<GenerationEvent>, cancel: Arc<AtomicBool>) -> Self {
        GenerationHandle { events, cancel, early: None }
    }

    pub async fn next(&mut self) -> Option<GenerationEvent> {
        match self.early.take() {
            Some(event) => Some(event),
            None => self.events.recv().await,
        }
    }

    /// For synchronous callers (the command line); never call on the async runtime.
    pub fn blocking_next(&mut self) -> Option<GenerationEvent> {
        self.events.blocking_recv()
    }

    /// Ask the engine to stop this generation before its next token.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Something that cancels this generation from elsewhere (a timeout, a guard), while the
    /// handle itself keeps reading the events to the end.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Wait until the engine has admitted the request (its prompt fits and it is queued to run),
    /// or refused it. Validate-then-run: nothing is stored for a request the engine refuses.
    pub async fn admitted(&mut self) -> Result<(), Failure> {
        match self.next().await {
            Some(GenerationEvent::Started { .. }) => Ok(()),
            Some(GenerationEvent::Failed(failure)) => Err(failure),
            // Not expected before `Started`; keep whatever it was for the reader.
            Some(other) => {
                self.early = Some(other);
                Ok(())
            }
            None => Err(Failure::internal(InferenceError::EngineGone.to_string())),
        }
    }

    /// Wait for the final result, ignoring the streamed pieces.
    pub async fn completion(mut self) -> Result<Completion, InferenceError> {
        while let Some(event) = self.next().await {
            match event {
                GenerationEvent::Done(c) => return Ok(c),
                GenerationEvent::Failed(e) => return Err(InferenceError::Failed(e)),
                _ => {}
            }
        }
        Err(InferenceError::EngineGone)
    }

    pub fn blocking_completion(mut self) -> Result<Completion, InferenceError> {
        while let Some(event) = self.blocking_next() {
            match event {
                GenerationEvent::Done(c) => return Ok(c),
                GenerationEvent::Failed(e) => return Err(InferenceError::Failed(e)),
                _ => {}
            }
        }
        Err(InferenceError::EngineGone)
    }
}

impl Drop for GenerationHandle {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl LlmEngine {
    /// Start the engine thread; it loads the model and reports through `loaded`. When loading
    /// fails the thread ends and every request gets `EngineGone`.
    pub fn start(
        dir: PathBuf,
        options: EngineOptions,
        loaded: impl FnOnce(Result<EngineInfo, InferenceError>) + Send + 'static,
    ) -> std::io::Result<LlmEngine> {
        let (commands, inbox) = mpsc::channel();
        let stats = Arc::new(Mutex::new(EngineStats::default()));
        let published = stats.clone();
        std::thread::Builder::new().name("llm-engine".into()).spawn(move || {
            let started = std::time::Instant::now();
            match Worker::load(&dir, options, published) {
                Ok(mut worker) => {
                    loaded(Ok(EngineInfo {
                        context_limit: worker.context_limit,
                        attention: worker.backend.attention(),
                        sliced_logits: worker.backend.sliced_logits(),
                        load_ms: started.elapsed().as_secs_f64() * 1000.0,
                    }));
                    worker.run(inbox);
                }
                Err(err) => loaded(Err(err)),
            }
        })?;
        Ok(LlmEngine { commands, stats })
    }

    pub fn generate(&self, request: GenerateRequest) -> Result<GenerationHandle, InferenceError> {
        let (events, receiver) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        self.commands
            .send(Command::Generate { request, events, cancel: cancel.clone(), submitted: Instant::now() })
            .map_err(|_| InferenceError::EngineGone)?;
        Ok(GenerationHandle { events: receiver, cancel, early: None })
    }
}

impl LlmEngine {
    /// What the engine thread last published (it does so after every unit of work), without
    /// waiting for it.
    pub fn stats(&self) -> EngineStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::inference::engine::ChatEngine for LlmEngine {
    fn generate(&self, request: GenerateRequest) -> Result<GenerationHandle, InferenceError> {
        LlmEngine::generate(self, request)
    }
}

struct Worker {
    backend: Backend,
    files: LlmFiles,
    options: EngineOptions,
    context_limit: usize,
    sessions: SessionCache<Cache>,
    /// Where each conversation's window started last time, so the next turn keeps it.
    anchors: hashlink::LruCache<String, u64>,
    active: VecDeque<Generation>,
    stats: EngineStats,
    /// Where `stats` is copied for the handles.
    published: Arc<Mutex<EngineStats>>,
}

impl Worker {
    fn load(
        dir: &std::path::Path,
        options: EngineOptions,
        published: Arc<Mutex<EngineStats>>,
    ) -> Result<Worker, InferenceError> {
        crate::inference::require_files(dir, super::REQUIRED_FILES)?;
        let files = LlmFiles::load(dir).map_err(|e| InferenceError::BadModel(e.to_string()))?;
        let model_limit = files.config.max_position_embeddings.min(files.model_max_length.unwrap_or(usize::MAX));
        let context_limit = options.max_context.map_or(model_limit, |c| c.min(model_limit));
        let backend = Backend::load(
            &mut new_core()?,
            dir,
            options.attention,
            &options.compile,
            options.max_session_bytes,
            context_limit,
        )?;
        let slot_bytes = files.config.kv_bytes_per_token(options.compile.kv_bytes_per_value());
        let sessions = SessionCache::new(options.max_sessions, options.max_session_bytes, slot_bytes);
        let stats = EngineStats::default();
        let anchors = hashlink::LruCache::new(MAX_ANCHORS);
        Ok(Worker {
            backend,
            files,
            options,
            context_limit,
            sessions,
            anchors,
            active: VecDeque::new(),
            stats,
            published,
        })
    }

    fn run(&mut self, inbox: mpsc::Receiver<Command>) {
        loop {
            self.publish();
            // Block only when there is nothing to do; otherwise take what has arrived and go on.
            if self.active.is_empty() {
                match inbox.recv() {
                    Ok(command) => {
                        self.handle(command);
                        self.gather_burst(&inbox);
                    }
                    Err(_) => return, // every handle is gone and no work is left
                }
            }
            while let Ok(command) = inbox.try_recv() {
                self.handle(command);
            }
            let Some(mut generation) = self.active.pop_front() else { continue };
            let policy = self.policy();
            if policy.leads_a_step(&generation, &self.active) {
                let (batch, waiting) = policy.join_step(generation, std::mem::take(&mut self.active));
                self.active = waiting;
                self.step_batch(batch);
                continue;
            }
            let chunk = policy.solo_chunk(!self.active.is_empty());
            // Blocks first, evicting idle conversations if the pool is full (paged attention).
            let more = generation.feed(chunk).len();
            if let Err(err) = self.reserve(&mut generation.cache, more) {
                self.fail(generation, &err);
                continue;
            }
            let decoder = |ids: &[u32]| self.files.tokenizer.decode(ids, true).unwrap_or_default();
            let (was_decoding, started) = (generation.is_decoding(), Instant::now());
            let step = catch_panic("engine", || generation.step(&mut self.backend, &decoder, chunk));
            if let Ok(done) = &step {
                let first = usize::from(gave_first_token(was_decoding, &generation, done));
                let (decoded, prompt) = if was_decoding { (1, 0) } else { (0, more) };
                self.stats.steps.add(decoded, prompt, first, started.elapsed());
            }
            match step {
                Ok(Step::Continue) => self.active.push_back(generation),
                Ok(Step::Finished) => self.keep_session(generation),
                Err(err) => {
                    tracing::error!(error = %err, "generation failed");
                    self.fail(generation, &err);
                }
            }
        }
    }

    /// After waking with nothing in flight, take the rest of a burst before the first step.
    /// Requests sent together (a page of users, a client's parallel calls) reach this thread
    /// microseconds to milliseconds apart; without the wait the first runs its prompt alone, a
    /// small, slow step every other request then waits behind (measured, 8 users at once: their
    /// first tokens 15-28% later than openvino-genai's, which admits between steps). A lone
    /// request pays one `burst_gap`.
    fn gather_burst(&mut self, inbox: &mpsc::Receiver<Command>) {
        if !self.backend.batches() || self.options.burst_gap.is_zero() {
            return;
        }
        let until = Instant::now() + 5 * self.options.burst_gap;
        loop {
            let gap = self.options.burst_gap.min(until.saturating_duration_since(Instant::now()));
            if gap.is_zero() {
                return; // what arrives from now on is taken by the loop between steps
            }
            match inbox.recv_timeout(gap) {
                Ok(command) => self.handle(command),
                Err(_) => return,
            }
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            batches: self.backend.batches(),
            mixed_steps: self.options.mixed_steps,
            prefill_chunk: self.options.prefill_chunk,
            shared_prefill_chunk: self.options.shared_prefill_chunk,
        }
    }

    /// One step that gives each decoding generation of `batch` its next token and runs each
    /// other's prompt chunk of the size the schedule gave it.
    fn step_batch(&mut self, batch: Vec<(Generation, usize)>) {
        // Blocks first: one that cannot get a block even after evicting every idle conversation
        // fails alone.
        let (mut ready, mut feeds) = (Vec::with_capacity(batch.len()), Vec::with_capacity(batch.len()));
        for (mut generation, chunk) in batch {
            let feed = generation.feed(chunk);
            match self.reserve(&mut generation.cache, feed.len()) {
                Ok(()) => {
                    generation.begin();
                    ready.push(generation);
                    feeds.push(feed);
                }
                Err(err) => self.fail(generation, &err),
            }
        }
        if ready.is_empty() {
            return;
        }
        if ready.len() > 1 {
            self.stats.batched_steps += 1;
            self.stats.max_batch = self.stats.max_batch.max(ready.len());
            if ready.iter().any(|g| !g.is_decoding()) {
                self.stats.mixed_steps += 1;
            }
            // Before any of them can finish, so a caller who saw the end sees this step counted.
            // They are out of `active` while the step runs, but still in flight.
            self.publish_with(ready.len());
        }
        let decoding = ready.iter().filter(|g| g.is_decoding()).count();
        let prompt_tokens: usize =
            ready.iter().zip(&feeds).filter(|(g, _)| !g.is_decoding()).map(|(_, f)| f.len()).sum();
        let started = Instant::now();
        let backend = &mut self.backend;
        let stepped = catch_panic("engine", || {
            let mut items: Vec<_> = ready
                .iter_mut()
                .zip(&feeds)
                .map(|(g, feed)| {
                    let position = g.position();
                    (&mut g.cache, feed.as_slice(), position)
                })
                .collect();
            backend.forward_batch(&mut items)
        });
        match stepped {
            Ok(rows) => {
                let mut finished = vec![];
                let decoder = |ids: &[u32]| self.files.tokenizer.decode(ids, true).unwrap_or_default();
                let mut prompts_finished = 0;
                for ((mut generation, row), feed) in ready.into_iter().zip(rows).zip(&feeds) {
                    let was_decoding = generation.is_decoding();
                    let step = generation.advance(feed.len(), row, &decoder);
                    prompts_finished += usize::from(gave_first_token(was_decoding, &generation, &step));
                    match step {
                        Step::Continue => self.active.push_back(generation),
                        Step::Finished => finished.push(generation),
                    }
                }
                self.stats.steps.add(decoding, prompt_tokens, prompts_finished, started.elapsed());
                for generation in finished {
                    self.keep_session(generation);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, batch = ready.len(), "batched step failed");
                for generation in ready {
                    self.fail(generation, &err);
                }
            }
        }
    }

    /// Room for `more` tokens in `cache`, evicting idle conversations while the pool is full.
    fn reserve(&mut self, cache: &mut Cache, more: usize) -> Result<(), InferenceError> {
        loop {
            match self.backend.reserve(cache, more) {
                Err(InferenceError::CacheFull(why)) => match self.sessions.pop_oldest() {
                    Some((key, evicted)) => {
                        tracing::debug!(conversation = %key, "KV cache evicted to make room");
                        self.stats.evicted_for_room += 1;
                        self.publish();
                        self.backend.release(evicted);
                    }
                    None => return Err(InferenceError::CacheFull(why)),
                },
                done => return done,
            }
        }
    }

    /// Let the handles (and `/health`) see the counters and what is held now.
    fn publish(&mut self) {
        self.publish_with(0);
    }

    /// `publish`, counting `stepping` generations taken out of the queue for a step as running.
    fn publish_with(&mut self, stepping: usize) {
        self.stats.running = self.active.len() + stepping;
        self.stats.kept_conversations = self.sessions.len();
        let kv = self.backend.kv_tokens();
        (self.stats.kv_tokens_used, self.stats.kv_tokens_idle, self.stats.kv_tokens_allocated) =
            (kv.used, kv.idle, kv.allocated);
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = self.stats;
    }

    /// Tell the caller, and give back the cache: it may be in a bad state, so it is not kept.
    fn fail(&mut self, generation: Generation, err: &InferenceError) {
        let cache = generation.fail(err);
        self.backend.release(cache);
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Generate { request, events, cancel, submitted } => {
                // A bug in tokenizing one request must not take the engine thread down.
                let admitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.admit(request, events.clone(), cancel, submitted)
                }));
                match admitted {
                    Ok(Ok(generation)) => self.active.push_back(generation),
                    Ok(Err(failure)) => {
                        let _ = events.send(GenerationEvent::Failed(failure));
                    }
                    Err(_) => {
                        tracing::error!("admitting a request panicked");
                        let _ = events.send(GenerationEvent::Failed(Failure::internal("admitting the request failed")));
                    }
                }
            }
        }
    }

    /// Tokenize, fit to the context, find the conversation's cache and plan what to run.
    fn admit(
        &mut self,
        request: GenerateRequest,
        events: UnboundedSender<GenerationEvent>,
        cancel: Arc<AtomicBool>,
        submitted: Instant,
    ) -> Result<Generation, Failure> {
        let invalid = |message: String| Failure::new(FailureKind::Invalid, message);
        let params = request.params;
        if params.max_new_tokens == 0 {
            return Err(invalid("max_new_tokens must be at least 1".into()));
        }
        let reserve = params.max_new_tokens.min(self.context_limit / 2);
        let budget = self.context_limit - reserve;
        let (prompt, dropped_messages) = match &request.prompt {
            Prompt::Messages(messages) => {
                let mut tokens = PromptTokens { files: &self.files, cancel: &cancel, events: &events };
                let key = request.conversation.as_deref();
                let anchor = key.and_then(|k| self.anchors.get(k).copied());
                let fitted = fit(messages, budget, anchor, &mut tokens).map_err(|e| match e {
                    ContextError::Count(e) => Failure::internal(e),
                    ContextError::Cancelled => Failure::new(FailureKind::Cancelled, e.to_string()),
                    ContextError::FarTooLong { .. } => Failure::new(FailureKind::ContextLength, e.to_string()),
                    too_long => Failure::new(FailureKind::ContextLength, too_long.to_string()),
                })?;
                if let (Some(key), Some(anchor)) = (key, fitted.anchor) {
                    self.anchors.insert(key.to_string(), anchor);
                }
                (fitted.ids, fitted.dropped)
            }
            Prompt::Ids(ids) if ids.len() > budget => {
                return Err(Failure::new(
                    FailureKind::ContextLength,
                    format!("the prompt has {} tokens but at most {budget} fit in the context", ids.len()),
                ))
            }
            Prompt::Ids(ids) => (ids.clone(), 0),
        };
        if prompt.is_empty() {
            return Err(invalid("the prompt is empty".into()));
        }
        let vocab = self.files.config.vocab_size;
        if let Some(bad) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(invalid(format!("prompt token id {bad} is outside the vocabulary (0..{vocab})")));
        }
        let tail = self.files.tokenizer.decode(&prompt[prompt.len().saturating_sub(4)..], false).unwrap_or_default();
        let prompt_opens_think = tail.trim_end().ends_with("<think>");

        let mut cache = match request.conversation.as_deref().and_then(|k| self.sessions.take(k)) {
            Some(cache) if cache.worth_keeping() => cache,
            stale => {
                if let Some(stale) = stale {
                    self.backend.release(stale);
                }
                self.backend.new_cache().map_err(|e| Failure::internal(e.to_string()))?
            }
        };
        let plan = self.backend.plan(&mut cache, &prompt, self.options.share_prefixes);
        self.stats.shared_prefix_tokens += plan.shared as u64;
        let sampling = self.files.defaults.resolve(&params.sampling, fresh_seed());
        Ok(Generation::new(
            Setup {
                key: request.conversation,
                cache,
                feed: plan.feed,
                first_position: plan.reused,
                prompt_tokens: prompt.len(),
                dropped_messages,
                params,
                sampling,
                prompt_opens_think,
                eos: self.files.defaults.eos_token_ids.clone(),
                context_limit: self.context_limit,
                events,
                cancel,
                submitted,
            },
            &prompt,
        ))
    }

    fn keep_session(&mut self, generation: Generation) {
        match generation.key {
            Some(key) => {
                for (evicted, cache) in self.sessions.put(key, generation.cache) {
                    tracing::debug!(conversation = %evicted, "KV cache evicted");
                    self.stats.evicted_for_limit += 1;
                    self.backend.release(cache);
                }
            }
            None => self.backend.release(generation.cache),
        }
    }
}

/// Text is counted in pieces of this many bytes, so a huge message is read only until it is
/// clearly too long (about one piece past the window), whatever its size.
const COUNT_PIECE: usize = 16 * 1024;

/// The tokenizer and template as context fitting sees them, for one request.
struct PromptTokens<'a> {
    files: &'a LlmFiles,
    cancel: &'a AtomicBool,
    events: &'a UnboundedSender<GenerationEvent>,
}

impl PromptTokens<'_> {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let encoding = self.files.tokenizer.encode(text, false).map_err(|e| format!("tokenizer: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Tokens of `text`, piece by piece; stops once past `limit` (`false`: it counted only so far).
    fn count_text(&self, text: &str, limit: usize) -> Result<(usize, bool), String> {
        let (mut total, mut rest) = (0, text);
        while !rest.is_empty() {
            let end = piece_end(rest, COUNT_PIECE);
            total += self.encode(&rest[..end])?.len();
            rest = &rest[end..];
            if total > limit && !rest.is_empty() {
                return Ok((total, false));
            }
        }
        Ok((total, true))
    }
}

impl Tokens for PromptTokens<'_> {
    type Error = String;

    fn count(&mut self, message: &ChatMessage, limit: usize) -> Result<usize, String> {
        Ok(self.count_text(&message.content, limit)?.0)
    }

    fn prompt(&mut self, messages: &[ChatMessage], limit: usize) -> Result<Measured, String> {
        let text = self.files.template.render(messages, true).map_err(|e| e.to_string())?;
        if text.len() > COUNT_PIECE {
            // Pieces may count a token or so differently from the whole at each cut: only a
            // prompt clearly past the limit is refused on the count.
            let slack = limit / 32 + text.len() / COUNT_PIECE + 16;
            let (counted, whole) = self.count_text(&text, limit + slack)?;
            if counted > limit + slack {
                return Ok(Measured::Exceeds { tokens: counted, exact: whole });
            }
        }
        let ids = self.encode(&text)?;
        Ok(match ids.len() <= limit {
            true => Measured::Fits(ids),
            false => Measured::Exceeds { tokens: ids.len(), exact: true },
        })
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.events.is_closed()
    }
}

impl InFlight for Generation {
    fn is_decoding(&self) -> bool {
        Generation::is_decoding(self)
    }

    fn is_cancelled(&self) -> bool {
        Generation::is_cancelled(self)
    }

    fn prompt_left(&self) -> usize {
        Generation::prompt_left(self)
    }

    fn arrival(&self) -> Instant {
        self.submitted
    }
}
