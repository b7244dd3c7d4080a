//! One chat turn: check, store the user's message, run the model with the conversation's recent
//! turns, stream reasoning and answer, store the reply, and queue an image when the reply (or the
//! caller) asks for one. The turn runs in its own task and speaks through a channel of
//! `ChatEvent`s; when the caller goes away (the channel closes) the generation is cancelled and
//! what was said so far is still stored.

use super::{
    error::{Result, ServiceError},
    image_prompt::{self, StreamFilter},
    limits::{Admission, Generation, Made},
    load::{Entry, Slot, Waited, Waiter},
    presence::ReplyInFlight,
    validate::{self, ValidChat},
};
use crate::{
    auth::Caller,
    inference::{
        engine::ChatEngine,
        llm::{
            window, ChatMessage, Completion, Failure, GenerateRequest, GenerationEvent, GenerationHandle, Part, Prompt,
        },
    },
    jobs::Origin,
    service::AppState,
    storage::{ChatSettingsRow, MessageRow, NewMessage, ReplyStarted},
};
use app::types::{ChatEvent, ChatRequest, ChatResponse, ChatSettings, ErrorDetail, ImageJob, JobInfo, Timings, Usage};
use tokio::sync::mpsc;

/// Asks for answers without the image block unless a picture is wanted, and for the block's
/// exact shape when it is. Kept short: every token of it is prefilled on every new conversation.
pub const SYSTEM_PROMPT: &str = "You are Duet, a helpful assistant running on the user's own computer. \
You can also make pictures. When the user asks for a picture, reply briefly and end your answer with \
one block <image_prompt>...</image_prompt> holding a short English description of the picture for \
Stable Diffusion (subject, setting, style, lighting). Never write that block otherwise.";

/// Start a turn. Everything that can fail fast (input, models, room in the queue, the
/// conversation, a prompt too long for the context window) fails here, before anything is stored
/// (a conversation made for this turn is removed again). A turn that must wait for the chat
/// engine streams its place in the queue (`queued` events) and is checked as it leaves the queue;
/// a refusal then is its stream's `error` event.
pub async fn start(state: &AppState, caller: &Caller, request: ChatRequest) -> Result<mpsc::Receiver<ChatEvent>> {
    let valid = validate::chat(request, state.config.llm.chat_max_tokens, &state.prompts)?;
    let engine = match valid.imagine {
        None => Some(state.chat_engine()?),
        Some(_) => None,
    };
    if valid.imagine.is_some() || valid.image.is_some() {
        state.image_engine()?;
    }
    state.limits.user_request(&caller.account_id, &valid.user_id).await?;
    let what = if valid.imagine.is_some() { Generation::Image } else { Generation::Chat };
    let (admission, tokens_left) =
        state.limits.admit(&state.db, &caller.account_id, Some(&valid.user_id), what).await?;
    let checked = Checked { valid, engine, admission: (admission, what), tokens_left };
    let fairness = format!("{}/{}", caller.account_id, checked.valid.user_id);
    match checked.engine.as_ref().map(|_| state.chat_slots.enter(&fairness)).transpose()? {
        None => begin(state, caller, checked, None).await,
        Some(Entry::Now(slot)) => begin(state, caller, checked, Some(slot)).await,
        Some(Entry::Queued(waiter)) => Ok(wait_then_begin(state.clone(), caller.clone(), checked, waiter)),
    }
}

/// A turn that passed the checks that need no conversation.
struct Checked {
    valid: ValidChat,
    engine: Option<std::sync::Arc<dyn ChatEngine>>,
    admission: (Admission, Generation),
    tokens_left: Option<u64>,
}

/// Stream the turn's place until the engine has room for it, then begin it and pass its events
/// on. A caller who goes away while waiting leaves the queue.
fn wait_then_begin(state: AppState, caller: Caller, checked: Checked, mut waiter: Waiter) -> mpsc::Receiver<ChatEvent> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let slot = loop {
            let waited = tokio::select! {
                waited = waiter.next() => waited,
                _ = tx.closed() => return,
            };
            match waited {
                Some(Waited::Moved(place)) => {
                    let queued = ChatEvent::Queued {
                        position: place.ahead as u32 + 1,
                        waiting: place.waiting as u32,
                        eta_s: place.eta_s,
                    };
                    if tx.send(queued).await.is_err() {
                        return;
                    }
                }
                Some(Waited::Ready(slot)) => break slot,
                None => {
                    let error =
                        ServiceError::Unavailable { message: "the server is stopping".into(), retry_after_s: None };
                    let _ = tx.send(ChatEvent::Error { error: error.detail().0 }).await;
                    return;
                }
            }
        };
        drop(waiter);
        match begin(&state, &caller, checked, Some(slot)).await {
            Ok(mut events) => {
                // Dropping `events` when the caller has gone tells the turn to stop.
                while let Some(event) = events.recv().await {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                err.log_if_internal();
                let _ = tx.send(ChatEvent::Error { error: err.detail().0 }).await;
            }
        }
    });
    rx
}

/// Open (or make) the conversation, fit the prompt, store the user's message and run the turn.
async fn begin(
    state: &AppState,
    caller: &Caller,
    checked: Checked,
    slot: Option<Slot>,
) -> Result<mpsc::Receiver<ChatEvent>> {
    let Checked { mut valid, engine, admission, tokens_left } = checked;
    let (conversation_id, created, kept) = open_conversation(state, caller, &valid).await?;
    let settings = valid.settings.clone().unwrap_or(kept);
    apply_settings(&mut valid, &settings);
    if let Some(left) = tokens_left {
        // The reply may use what the day's quota has left, and no more.
        valid.params.max_new_tokens = valid.params.max_new_tokens.min(left.try_into().unwrap_or(usize::MAX));
    }
    let opened = Opened { state, account_id: &caller.account_id, id: &conversation_id, created };
    // An edit or a regenerate keeps what came before the message it replaces.
    let before = match &valid.replace_from {
        None => i32::MAX,
        Some(from) => match opened.or_undo(state.db.user_message_seq(&conversation_id, from).await).await? {
            Some(seq) => seq,
            None => return Err(ServiceError::NotFound("message (replace_from)")),
        },
    };
    let history = opened.or_undo(recent_turns(state, &conversation_id, before).await).await?;
    let message_id = new_id();
    let handle = match &engine {
        Some(engine) => {
            let system = system_prompt(settings.system_prompt.as_deref());
            let turn =
                TurnPrompt { valid: &valid, system: &system, conversation_id: &conversation_id, history: &history };
            Some(opened.or_undo(admit(engine.as_ref(), turn, &message_id).await).await?)
        }
        None => None,
    };
    if let Some(from) = &valid.replace_from {
        if !state.db.truncate_conversation(&conversation_id, from).await? {
            return Err(ServiceError::NotFound("message (replace_from)"));
        }
    }
    if let Some(new) = &valid.settings {
        // Kept only once the turn is under way, so a refused turn changes nothing.
        state.db.set_chat_settings(&caller.account_id, &conversation_id, &settings_row(new)).await?;
    }
    state
        .db
        .append_message(&NewMessage {
            id: &new_id(),
            conversation_id: &conversation_id,
            role: "user",
            content: &valid.message,
            ..Default::default()
        })
        .await?;
    let (tx, rx) = mpsc::channel(256);
    let reply = ReplyStarted {
        message_id: &message_id,
        conversation_id: &conversation_id,
        account_id: &caller.account_id,
        user_id: &valid.user_id,
        process: &state.process,
        at: 0,
    };
    let in_flight = ReplyInFlight::start(&state.db, reply).await;
    let turn = Turn {
        state: state.clone(),
        account_id: caller.account_id.clone(),
        valid,
        conversation_id,
        message_id,
        _in_flight: in_flight,
        handle,
        slot,
        admission: Some(admission),
    };
    tokio::spawn(turn.run(Events { tx, gone: false }));
    Ok(rx)
}

/// The `finish_reason` of a reply the server never finished: it stopped (or was killed) while
/// the reply was being written.
pub const INTERRUPTED: &str = "interrupted";

/// Give every turn left without a reply by a server that stopped mid-reply one that says so
/// (empty: a reply is stored when it ends), so the conversation does not look unfinished
/// forever. Run at start, on SQLite only: a Postgres database may be shared with servers that
/// are writing replies right now.
pub async fn mark_interrupted(db: &crate::storage::Database) -> Result<usize> {
    let unanswered = db.unanswered_conversations().await?;
    for conversation_id in &unanswered {
        let id = new_id();
        let reply = NewMessage {
            id: &id,
            conversation_id,
            role: "assistant",
            content: "",
            finish_reason: Some(INTERRUPTED),
            ..Default::default()
        };
        db.append_message(&reply).await?;
    }
    if !unanswered.is_empty() {
        tracing::info!(conversations = unanswered.len(), "replies cut off by the last stop marked interrupted");
    }
    Ok(unanswered.len())
}

/// Store the replies whose process has not been seen since `alive_since` (Postgres: another
/// process died mid-reply), under the id the reply was to have, when its conversation still ends
/// with the user's turn: with `state`, the reply as the worker that generated it finished it when
/// one did (its tokens counted, its picture queued), otherwise empty and marked interrupted. Each
/// is taken by one process only.
pub async fn mark_orphan_replies(
    db: &crate::storage::Database,
    alive_since: i64,
    state: Option<&AppState>,
) -> Result<usize> {
    let mut marked = 0;
    for orphan in db.take_orphan_replies(alive_since).await? {
        let engine = state.and_then(|s| s.engines.llm());
        let finished = match &engine {
            Some(engine) => engine.recover(&orphan.conversation_id, &orphan.message_id).await,
            None => None,
        };
        let Some((_, role)) = db.last_message(&orphan.conversation_id).await? else { continue };
        if role != "user" {
            continue;
        }
        let reply = match (finished, state) {
            (Some(completion), Some(state)) => {
                tracing::info!(message = %orphan.message_id, provider = ?completion.provider, "a reply finished by a worker stored");
                let (text, image_prompt) = answer_parts(&completion.answer, || None, &state.prompts);
                Recovered { text, image_prompt, completion: Some(completion) }
            }
            _ => Recovered { text: String::new(), image_prompt: None, completion: None },
        };
        let c = reply.completion.as_ref();
        db.append_message(&NewMessage {
            id: &orphan.message_id,
            conversation_id: &orphan.conversation_id,
            role: "assistant",
            content: &reply.text,
            reasoning: c.map(|c| c.reasoning.trim()).filter(|r| !r.is_empty()),
            image_prompt: reply.image_prompt.as_deref(),
            prompt_tokens: c.map(|c| c.prompt_tokens as i32),
            completion_tokens: c.map(|c| c.completion_tokens as i32),
            ttft_ms: c.map(|c| c.ttft_ms as i64),
            total_ms: c.map(|c| c.total_ms as i64),
            finish_reason: Some(c.map_or(INTERRUPTED, |c| c.finish_reason.as_str())),
            ..Default::default()
        })
        .await?;
        marked += 1;
        if let (Some(state), Some(c)) = (state, c) {
            let meter = state.limits.meter(&state.db, &orphan.account_id, &orphan.user_id);
            if let Err(err) = meter.count(Made::tokens(c.completion_tokens as u64)).await {
                tracing::warn!(error = %err, "could not count a recovered reply against the daily quota");
            }
            if let Some(prompt) = &reply.image_prompt {
                let origin = Origin {
                    account_id: orphan.account_id.clone(),
                    user_id: orphan.user_id.clone(),
                    conversation_id: Some(orphan.conversation_id.clone()),
                    message_id: Some(orphan.message_id.clone()),
                };
                queue_picture(state, origin, &Default::default(), prompt, false).await;
            }
        }
    }
    Ok(marked)
}

/// Queue the picture a reply asked for, drawn with `options`. A full queue or a used-up quota
/// gives a job that failed at once (the reply itself is fine and already stored). `admitted`: the
/// owner's limits were checked already (an `/imagine` turn); otherwise they are checked here.
async fn queue_picture(
    state: &AppState,
    origin: Origin,
    options: &app::types::ImageGenerationRequest,
    prompt: &str,
    admitted: bool,
) -> Option<JobInfo> {
    let engine = match state.image_engine() {
        Ok(engine) => engine,
        Err(err) => {
            tracing::warn!(error = %err, "the reply asked for a picture but the image model is not ready");
            return None;
        }
    };
    let request = match validate::image(options, Some(prompt), engine.default_scheduler(), "image.", &state.prompts) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(error = %err, "the reply's image prompt was not usable");
            return None;
        }
    };
    let result = if admitted {
        state.jobs.submit(request.clone(), origin.clone(), |_| Ok(())).await
    } else {
        let user = Some(origin.user_id.as_str());
        match state.limits.image_gate(&state.db, &origin.account_id, user).await {
            Ok(gate) => state.jobs.submit(request.clone(), origin.clone(), |jobs| gate.check(jobs)).await,
            Err(err) => Err(err),
        }
    };
    Some(match result {
        Ok(info) => info,
        Err(err) => state.jobs.reject(request, origin, err.to_string()).await,
    })
}

struct Recovered {
    text: String,
    image_prompt: Option<String>,
    completion: Option<Completion>,
}

/// A reply's text and the picture it asks for (its block's, or else `wanted`'s) once the prompt
/// policy has passed it; a refused prompt is said in the reply.
fn answer_parts(
    answer: &str,
    wanted: impl FnOnce() -> Option<String>,
    prompts: &super::sanitize::PromptPolicy,
) -> (String, Option<String>) {
    let extracted = image_prompt::extract(answer);
    let mut reply = extracted.reply;
    let image_prompt = match extracted.prompt.or_else(wanted).map(|prompt| prompts.check(&prompt)) {
        Some(Ok(prompt)) => Some(prompt).filter(|p| !p.is_empty()),
        Some(Err(blocked)) => {
            tracing::info!(rule = %blocked.rule, "the reply's image prompt was refused");
            let sep = if reply.is_empty() { "" } else { "\n\n" };
            reply.push_str(&format!("{sep}(No picture: its prompt was {blocked}.)"));
            None
        }
        None => None,
    };
    (reply, image_prompt)
}

/// The turns sent with a new message: at most `CONTEXT_TURNS`, the window moving in blocks
/// (`window::first_kept_turn`) so that the turns between two moves share their prompt's start and
/// reuse the conversation's KV cache.
async fn recent_turns(state: &AppState, conversation_id: &str, before: i32) -> Result<Vec<MessageRow>> {
    let turns = state.db.user_turn_seqs(conversation_id, before).await?;
    let first = window::first_kept_turn(turns.len(), state.config.llm.context_turns);
    match turns.get(first) {
        Some(&from) => Ok(state.db.messages_between(conversation_id, from, before).await?),
        None => Ok(Vec::new()),
    }
}

/// Hand the prompt to the chat engine and wait until it has taken it: its context fitted, or
/// refused (too long even alone: the caller's `message` to shorten).
async fn admit(engine: &dyn ChatEngine, turn: TurnPrompt<'_>, reply_id: &str) -> Result<GenerationHandle> {
    let request = GenerateRequest {
        conversation: Some(turn.conversation_id.to_string()),
        prompt: Prompt::Messages(context(turn.system, turn.history, &turn.valid.message)),
        params: turn.valid.params.clone(),
    };
    let mut handle = engine.generate_reply(request, reply_id).map_err(|e| ServiceError::Engine(e.to_string()))?;
    handle.admitted().await.map_err(|f| ServiceError::from_failure(f, "message"))?;
    Ok(handle)
}

/// What a turn's prompt is made of.
struct TurnPrompt<'a> {
    valid: &'a ValidChat,
    system: &'a str,
    conversation_id: &'a str,
    history: &'a [MessageRow],
}

/// A conversation opened for a turn that may still be refused: one made for it goes again.
struct Opened<'a> {
    state: &'a AppState,
    account_id: &'a str,
    id: &'a str,
    created: bool,
}

impl Opened<'_> {
    async fn or_undo<T, E: Into<ServiceError>>(&self, result: std::result::Result<T, E>) -> Result<T> {
        let err = match result {
            Ok(value) => return Ok(value),
            Err(err) => err.into(),
        };
        if self.created {
            if let Err(undo) = self.state.db.delete_conversation(self.account_id, self.id).await {
                tracing::warn!(conversation = %self.id, error = %undo, "could not remove a refused turn's new conversation");
            }
        }
        Err(err)
    }
}

/// Wait for the turn's final answer (for callers that do not stream).
pub async fn finish(mut events: mpsc::Receiver<ChatEvent>) -> Result<ChatResponse> {
    while let Some(event) = events.recv().await {
        match event {
            ChatEvent::Done { response } => return Ok(response),
            ChatEvent::Error { error } => return Err(ServiceError::from_detail(error)),
            _ => {}
        }
    }
    Err(ServiceError::Engine("the chat turn ended without an answer".into()))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The caller's conversation with its chat settings, or a new one titled after the first
/// message (and `true`: made now). A conversation of another account, or of another end user of
/// this one, is "not found", exactly like one that does not exist.
async fn open_conversation(
    state: &AppState,
    caller: &Caller,
    valid: &ValidChat,
) -> Result<(String, bool, ChatSettings)> {
    if let Some(id) = &valid.conversation_id {
        return match state.db.conversation(&caller.account_id, id).await? {
            Some(c) if c.user_id == valid.user_id => {
                let settings = super::history::settings_of(&c);
                Ok((c.id, false, settings))
            }
            _ => Err(ServiceError::NotFound("conversation")),
        };
    }
    let id = new_id();
    state.db.create_conversation(&id, &caller.account_id, &valid.user_id, &title(&valid.message)).await?;
    Ok((id, true, ChatSettings::default()))
}

/// The conversation's settings fill in what the turn itself left out.
fn apply_settings(valid: &mut ValidChat, settings: &ChatSettings) {
    let sampling = &mut valid.params.sampling;
    sampling.temperature = sampling.temperature.or(settings.temperature.map(|t| t as f32));
    sampling.top_p = sampling.top_p.or(settings.top_p.map(|p| p as f32));
    if let (false, Some(n)) = (valid.max_tokens_given, settings.max_tokens) {
        valid.params.max_new_tokens = n as usize;
    }
}

/// Duet's system prompt, then the conversation's own instructions.
pub fn system_prompt(custom: Option<&str>) -> String {
    match custom {
        Some(custom) => format!("{SYSTEM_PROMPT}\n\n{custom}"),
        None => SYSTEM_PROMPT.to_string(),
    }
}

pub(super) fn settings_row(settings: &ChatSettings) -> ChatSettingsRow<'_> {
    ChatSettingsRow {
        system_prompt: settings.system_prompt.as_deref(),
        temperature: settings.temperature,
        top_p: settings.top_p,
        max_tokens: settings.max_tokens.map(|n| n as i32),
    }
}

/// A conversation's title: its first message's first line, at most 60 characters.
pub fn title(message: &str) -> String {
    let line = message.trim().lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line.to_string(),
    }
}

/// The prompt: the system prompt, the stored recent turns (answers only, with the image blocks
/// they asked for; never the reasoning), then the new message.
pub fn context(system: &str, history: &[MessageRow], message: &str) -> Vec<ChatMessage> {
    let mut messages = vec![ChatMessage::new("system", system)];
    // Start at a user message, so the window never opens with a reply to something cut off.
    let start = history.iter().position(|m| m.role == "user").unwrap_or(history.len());
    for m in &history[start..] {
        match (m.role.as_str(), &m.image_prompt) {
            ("assistant", Some(prompt)) => {
                let block = format!("<image_prompt>{prompt}</image_prompt>");
                let content = if m.content.is_empty() { block } else { format!("{}\n\n{block}", m.content) };
                messages.push(ChatMessage::new("assistant", content));
            }
            // A reply cut off by a stop has nothing to send back.
            ("assistant", None) if m.content.is_empty() => {}
            ("assistant" | "user", _) => messages.push(ChatMessage::new(&m.role, m.content.clone())),
            _ => {}
        }
    }
    messages.push(ChatMessage::new("user", message));
    messages
}

/// The turn's output channel; remembers when the caller has gone.
struct Events {
    tx: mpsc::Sender<ChatEvent>,
    gone: bool,
}

impl Events {
    async fn send(&mut self, event: ChatEvent) {
        if !self.gone && self.tx.send(event).await.is_err() {
            self.gone = true;
        }
    }
}

struct Turn {
    state: AppState,
    account_id: String,
    valid: ValidChat,
    conversation_id: String,
    message_id: String,
    /// The chat engine's generation, admitted (none for `/imagine`).
    handle: Option<GenerationHandle>,
    slot: Option<Slot>,
    /// This turn counted against the caller's limits: the chat reply while it is written, or for
    /// `/imagine` the image job it hands this to.
    admission: Option<(Admission, Generation)>,
    /// Recorded while the reply is written, so a reply cut off by this process dying is marked.
    _in_flight: ReplyInFlight,
}

/// What the model (or `/imagine`) answered.
struct Reply {
    reply: String,
    reasoning: String,
    image_prompt: Option<String>,
    usage: Usage,
    timings: Timings,
    /// How long the model reasoned before its answer began.
    thought_ms: Option<i64>,
    finish_reason: String,
    /// Who generated it: `local`, or a worker's or endpoint's URL.
    provider: String,
}

impl Turn {
    async fn run(mut self, mut out: Events) {
        let state = self.state.clone();
        out.send(ChatEvent::Start {
            conversation_id: self.conversation_id.clone(),
            message_id: self.message_id.clone(),
            model: state.config.models.llm_model.to_string(),
            mock: state.config.models.use_mocks,
        })
        .await;
        let reply = match (&self.valid.imagine, self.handle.take()) {
            (Some(prompt), _) => Reply {
                reply: String::new(),
                reasoning: String::new(),
                image_prompt: Some(prompt.clone()),
                usage: Usage::default(),
                timings: Timings::default(),
                thought_ms: None,
                finish_reason: "image".into(),
                provider: "local".into(),
            },
            (None, Some(handle)) => match self.generate(handle, &mut out).await {
                Ok((completion, thought_ms)) => self.reply_from(completion, thought_ms),
                Err(failure) => {
                    // What it generated before failing still counts.
                    self.record(failure.completion_tokens).await;
                    return self.fail(&mut out, "server_error", failure.message).await;
                }
            },
            (None, None) => return self.fail(&mut out, "server_error", "no chat engine".into()).await,
        };
        self.slot = None; // the chat engine is free for the next turn
        self.record(reply.usage.completion_tokens as usize).await;
        if self.admission.as_ref().is_some_and(|(_, what)| *what == Generation::Chat) {
            self.admission = None;
        }
        if let Err(err) = self.store(&reply).await {
            tracing::error!(error = %err, "could not store the reply");
            return self.fail(&mut out, "server_error", "could not store the reply".into()).await;
        }
        out.send(ChatEvent::Reply {
            reply: reply.reply.clone(),
            reasoning: reply.reasoning.clone(),
            finish_reason: reply.finish_reason.clone(),
        })
        .await;
        let mut job = self.queue_image(&reply).await;
        if let Some(info) = &job {
            out.send(ChatEvent::ImageJob { job: info.clone() }).await;
            if self.valid.stream {
                job = Some(self.follow(info.clone(), &mut out).await);
            }
        }
        let response = ChatResponse {
            conversation_id: self.conversation_id.clone(),
            message_id: self.message_id.clone(),
            reply: reply.reply,
            reasoning: reply.reasoning,
            image_job: job.map(|j| ImageJob {
                job_id: j.job_id,
                status: j.status,
                status_url: j.status_url,
                image_url: j.image_url,
                parameters: j.parameters,
            }),
            usage: reply.usage,
            timings: reply.timings,
            model: state.config.models.llm_model.to_string(),
            mock: state.config.models.use_mocks,
            finish_reason: reply.finish_reason,
            provider: reply.provider,
        };
        out.send(ChatEvent::Done { response }).await;
    }

    /// Count generated tokens against the caller's daily quota.
    async fn record(&self, tokens: usize) {
        let Some((admission, _)) = &self.admission else { return };
        if let Err(err) = admission.count(Made::tokens(tokens as u64)).await {
            tracing::warn!(error = %err, "could not count the reply against the daily quota");
        }
    }

    async fn fail(&self, out: &mut Events, kind: &str, message: String) {
        tracing::warn!(conversation = %self.conversation_id, error = %message, "chat turn failed");
        let error = ErrorDetail { message, kind: kind.into(), param: None, code: Some("internal".into()) };
        out.send(ChatEvent::Error { error }).await;
    }

    /// Run the model, streaming its pieces; cancel it when the caller goes away (and read on to
    /// its end, so what it wrote is stored and counted).
    async fn generate(
        &self,
        mut handle: GenerationHandle,
        out: &mut Events,
    ) -> std::result::Result<(Completion, Option<i64>), Failure> {
        let _generating = self.state.chat_slots.generating();
        let mut filter = StreamFilter::default();
        // Thinking lasts from the start until the answer's first piece (or the end, for a reply
        // cut off while it thought), as the page measures it while the reply streams.
        let began = std::time::Instant::now();
        let (mut reasoned, mut thought_ms) = (false, None);
        while let Some(event) = handle.next().await {
            match event {
                GenerationEvent::Delta { part: Part::Reasoning, text } => {
                    reasoned |= !text.is_empty();
                    out.send(ChatEvent::Reasoning { text }).await
                }
                GenerationEvent::Delta { part: Part::Answer, text } => {
                    if reasoned && thought_ms.is_none() {
                        thought_ms = Some(began.elapsed().as_millis() as i64);
                    }
                    let shown = filter.push(&text);
                    if !shown.is_empty() {
                        out.send(ChatEvent::Answer { text: shown }).await;
                    }
                }
                GenerationEvent::Done(completion) => {
                    let rest = filter.finish();
                    if !rest.is_empty() {
                        out.send(ChatEvent::Answer { text: rest }).await;
                    }
                    let thought_ms = thought_ms.or(reasoned.then(|| began.elapsed().as_millis() as i64));
                    return Ok((completion, thought_ms));
                }
                GenerationEvent::Failed(failure) => return Err(failure),
                GenerationEvent::Started { .. } => {}
            }
            if out.gone {
                handle.cancel(); // the engine answers with what it has, marked cancelled
            }
        }
        Err(Failure::internal("the chat engine stopped"))
    }

    fn reply_from(&self, c: Completion, thought_ms: Option<i64>) -> Reply {
        // The caller asked for a picture but the model wrote no block: draw what the user said.
        let wanted = || {
            let options = self.valid.image.as_ref()?;
            Some(options.prompt.clone().unwrap_or_else(|| self.valid.message.clone()))
        };
        let (reply, image_prompt) = answer_parts(&c.answer, wanted, &self.state.prompts);
        Reply {
            reply,
            reasoning: c.reasoning.trim().to_string(),
            image_prompt,
            usage: Usage {
                prompt_tokens: c.prompt_tokens as u32,
                completion_tokens: c.completion_tokens as u32,
                cached_tokens: c.reused_tokens as u32,
            },
            timings: Timings { ttft_ms: c.ttft_ms, total_ms: c.total_ms },
            thought_ms,
            finish_reason: c.finish_reason.as_str().to_string(),
            provider: c.provider.unwrap_or_else(|| "local".into()),
        }
    }

    async fn store(&self, reply: &Reply) -> Result<()> {
        let model = self.state.config.models.llm_model.to_string();
        let generated = self.valid.imagine.is_none();
        self.state
            .db
            .append_message(&NewMessage {
                id: &self.message_id,
                conversation_id: &self.conversation_id,
                role: "assistant",
                content: &reply.reply,
                reasoning: Some(reply.reasoning.as_str()).filter(|r| !r.is_empty()),
                image_prompt: reply.image_prompt.as_deref(),
                model: generated.then_some(model.as_str()),
                prompt_tokens: generated.then_some(reply.usage.prompt_tokens as i32),
                completion_tokens: generated.then_some(reply.usage.completion_tokens as i32),
                ttft_ms: generated.then_some(reply.timings.ttft_ms as i64),
                total_ms: generated.then_some(reply.timings.total_ms as i64),
                thought_ms: reply.thought_ms,
                finish_reason: Some(&reply.finish_reason),
            })
            .await?;
        Ok(())
    }

    /// Queue the picture the reply asked for (see `queue_picture`).
    async fn queue_image(&mut self, reply: &Reply) -> Option<JobInfo> {
        let prompt = reply.image_prompt.as_deref()?;
        let origin = Origin {
            account_id: self.account_id.clone(),
            user_id: self.valid.user_id.clone(),
            conversation_id: Some(self.conversation_id.clone()),
            message_id: Some(self.message_id.clone()),
        };
        // An "imagine" turn was let in as an image: its job goes in with no second look at its
        // owner's limits (the job's row counts against them from now on).
        let admitted = matches!(self.admission.take(), Some((_, Generation::Image)));
        let options = self.valid.image.clone().unwrap_or_default();
        queue_picture(&self.state, origin, &options, prompt, admitted).await
    }

    /// Relay the job's progress until it ends; cancel it if the caller leaves first.
    async fn follow(&self, mut last: JobInfo, out: &mut Events) -> JobInfo {
        let Ok(Some((now, mut updates))) = self.state.jobs.watch(&self.account_id, &last.job_id).await else {
            return last;
        };
        if now != last {
            out.send(ChatEvent::ImageJob { job: now.clone() }).await;
            last = now;
        }
        while !last.status.is_final() {
            let Some(info) = crate::jobs::next_update(&mut updates).await else { break };
            out.send(ChatEvent::ImageJob { job: info.clone() }).await;
            last = info;
            if out.gone {
                if let Err(err) = self.state.jobs.cancel(&self.account_id, &last.job_id).await {
                    tracing::warn!(job = %last.job_id, error = %err, "could not cancel the picture of a reply left");
                }
                break;
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_settings_fill_in_only_what_the_turn_left_out() {
        let request = |temperature: Option<f64>, max_tokens: Option<u32>| {
            let request = ChatRequest {
                user_id: Some("u".into()),
                message: Some("hi".into()),
                temperature,
                max_tokens,
                ..Default::default()
            };
            validate::chat(request, 2048, &Default::default()).unwrap()
        };
        let settings =
            ChatSettings { system_prompt: None, temperature: Some(0.25), top_p: Some(0.5), max_tokens: Some(7) };
        let mut plain = request(None, None);
        apply_settings(&mut plain, &settings);
        assert_eq!((plain.params.sampling.temperature, plain.params.sampling.top_p), (Some(0.25), Some(0.5)));
        assert_eq!(plain.params.max_new_tokens, 7);
        let mut own = request(Some(1.5), Some(100));
        apply_settings(&mut own, &settings);
        assert_eq!((own.params.sampling.temperature, own.params.max_new_tokens), (Some(1.5), 100));
        let mut none = request(None, None);
        apply_settings(&mut none, &ChatSettings::default());
        assert_eq!((none.params.sampling.temperature, none.params.max_new_tokens), (None, 2048));
        assert_eq!(system_prompt(None), SYSTEM_PROMPT);
        assert!(
            system_prompt(Some("Be brief.")).starts_with(SYSTEM_PROMPT)
                && system_prompt(Some("Be brief.")).ends_with("\n\nBe brief.")
        );
    }

    fn row(role: &str, content: &str, reasoning: Option<&str>, image_prompt: Option<&str>) -> MessageRow {
        MessageRow {
            id: "x".into(),
            seq: 0,
            role: role.into(),
            content: content.into(),
            reasoning: reasoning.map(String::from),
            image_prompt: image_prompt.map(String::from),
        }
    }

    #[test]
    fn context_keeps_answers_and_image_blocks_but_never_reasoning() {
        let history = [
            row("assistant", "cut-off reply", None, None),
            row("user", "draw a fox", None, None),
            row("assistant", "Here it is.", Some("They want a fox."), Some("a red fox")),
            row("user", "/imagine a cat", None, None),
            row("assistant", "", None, Some("a cat")),
            row("user", "and a dog", None, None),
            row("assistant", "", None, None),
        ];
        let messages = context("SYS", &history, "thanks");
        let got: Vec<(&str, &str)> = messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect();
        assert_eq!(
            got,
            [
                ("system", "SYS"),
                ("user", "draw a fox"),
                ("assistant", "Here it is.\n\n<image_prompt>a red fox</image_prompt>"),
                ("user", "/imagine a cat"),
                ("assistant", "<image_prompt>a cat</image_prompt>"),
                ("user", "and a dog"),
                ("user", "thanks"),
            ]
        );
    }

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(title("  Hello there\nsecond line"), "Hello there");
        let long = "word ".repeat(30);
        let t = title(&long);
        assert!(t.ends_with('…') && t.chars().count() <= 61, "{t}");
    }
}
