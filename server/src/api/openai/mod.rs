//! The OpenAI-compatible API, so existing clients (the official libraries, Open WebUI) work
//! unchanged: `GET /v1/models`, `POST /v1/chat/completions` (reasoning in `reasoning_content`,
//! as DeepSeek's API sends it) and `POST /v1/images/generations`. Stateless: the caller keeps
//! the conversation. Errors use the same body as the rest of the API, which is OpenAI's.

use super::{
    error::{ApiError, Result},
    json::ApiJson,
};
use crate::{
    auth::Caller,
    inference::llm::{Canceller, ChatMessage, FinishReason, GenerationEvent, GenerationParams, Part},
    service::AppState,
    service::{self, error::ServiceError, validate},
};
use app::types::{ErrorBody, ErrorDetail, ImageGenerationRequest, JobStatus};
use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Json,
};
use base64::Engine as _;
use std::{convert::Infallible, time::Duration};
pub use wire::*;

mod wire;

pub const MAX_IMAGES: u32 = 4;

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ServiceError::invalid(param, message).into()
}

/// An unknown model is 404, as OpenAI answers it, with the ids that exist.
fn check_model(requested: Option<&str>, ours: &str) -> Result<()> {
    match requested {
        Some(m) if m != ours => Err(ApiError::BadRequest {
            status: StatusCode::NOT_FOUND,
            param: Some("model".into()),
            code: "model_not_found",
            message: format!("the model {m:?} does not exist here; use {ours:?} (GET /v1/models lists them)"),
        }),
        _ => Ok(()),
    }
}

/// `GET /v1/models`
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, description = "The chat and the image model", body = ModelList)))]
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    let model = |id: String| Model { id, object: "model", created: 0, owned_by: "duet" };
    let models = &state.config.models;
    Json(ModelList {
        object: "list",
        data: vec![model(models.llm_model.to_string()), model(models.sd_model.to_string())],
    })
}

/// The conversation as our template takes it. `developer` is OpenAI's newer name for `system`.
/// Its length is bounded here, before any work: older turns beyond the context window are
/// dropped later, but every message sent is read.
fn messages(input: Option<Vec<InMessage>>) -> Result<Vec<ChatMessage>> {
    let input = input.filter(|m| !m.is_empty()).ok_or_else(|| invalid("messages", "must hold at least one message"))?;
    if input.len() > validate::MAX_MESSAGES {
        return Err(invalid(
            "messages",
            format!("at most {} messages, got {}; leave out the oldest", validate::MAX_MESSAGES, input.len()),
        ));
    }
    let mut out = Vec::with_capacity(input.len());
    let mut chars = 0;
    for (i, m) in input.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(invalid(
                    format!("messages[{i}].role"),
                    format!("{other:?} is not supported; use system, developer, user or assistant"),
                ))
            }
        };
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(text)) => text,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.into_iter().enumerate() {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(invalid(
                                format!("messages[{i}].content[{j}]"),
                                format!("only text parts are supported, got {kind:?}"),
                            ))
                        }
                    }
                }
                text
            }
        };
        chars += content.chars().count();
        if chars > validate::MAX_CONVERSATION_CHARS {
            return Err(invalid(
                format!("messages[{i}].content"),
                format!(
                    "the messages may hold at most {} characters in all; this one brings them past it",
                    validate::MAX_CONVERSATION_CHARS
                ),
            ));
        }
        out.push(ChatMessage::new(role, content));
    }
    if out.last().is_some_and(|m| m.role == "assistant") {
        return Err(invalid("messages", "the last message must be the user's (or a system message)"));
    }
    Ok(out)
}

fn params(req: &ChatCompletionRequest, default_max: u32) -> Result<GenerationParams> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(invalid("n", "only 1 choice per request is supported"));
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(default_max);
    if !(1..=validate::MAX_TOKENS).contains(&max_tokens) {
        let field = if req.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" };
        return Err(invalid(field, format!("must be an integer from 1 to {}, got {max_tokens}", validate::MAX_TOKENS)));
    }
    let mut sampling = validate::sampling(req.temperature, req.top_p, req.top_k, req.repetition_penalty)?;
    sampling.seed = req.seed;
    let stop = match &req.stop {
        None => None,
        Some(Stop::One(s)) => Some(vec![s.clone()]),
        Some(Stop::Many(v)) => Some(v.clone()),
    };
    Ok(GenerationParams {
        sampling,
        max_new_tokens: max_tokens as usize,
        stop: validate::stop_strings(stop)?,
        ignore_eos: false,
    })
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length | FinishReason::ContextLimit => "length",
        FinishReason::Eos | FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// `POST /v1/chat/completions`
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "OpenAI's `chat.completion` (reasoning in `message.reasoning_content`), or with `stream: true` server-sent `chat.completion.chunk` events and `data: [DONE]`",
            content((ChatCompletion = "application/json"), (ChatCompletionChunk = "text/event-stream"))),
        (status = 400, description = "Malformed JSON or an empty body", body = ErrorBody), (status = 404, description = "Unknown model (`code: model_not_found`)", body = ErrorBody), (status = 415, description = "The body is not JSON (send Content-Type: application/json)", body = ErrorBody), (status = 422, description = "A field is invalid; `error.param` names it (a JSON path) and the message says what is allowed", body = ErrorBody), (status = 503, description = "A queue is full, or the model is missing, loading or failed; `Retry-After` says when to try again when waiting helps", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))), (status = 504, description = "Not finished within the configured timeout", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn chat_completions(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response> {
    let model = state.config.models.llm_model.to_string();
    check_model(req.model.as_deref(), &model)?;
    let params = params(&req, state.config.llm.chat_max_tokens)?;
    let messages = messages(req.messages)?;
    let running =
        service::completions::start(&state, &caller, messages, params, req.user.as_deref().unwrap_or("")).await?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    if req.stream {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        return Ok(stream(running, id, created, model, include_usage).into_response());
    }
    // The generation runs to its end in a task of its own, so however this request ends (done,
    // timed out, the client gone) it is stopped and what it generated is counted.
    let timeout = Duration::from_secs(state.config.llm.request_timeout_secs);
    let stop = CancelOnDrop(running.canceller());
    let completion = match tokio::time::timeout(timeout, tokio::spawn(running.completion())).await {
        Ok(Ok(done)) => done.map_err(|f| ServiceError::from_failure(f, "messages"))?,
        Ok(Err(join)) => return Err(ServiceError::Engine(format!("completion task: {join}")).into()),
        Err(_) => {
            stop.0.cancel();
            return Err(ServiceError::Timeout(format!("no complete reply within {} s", timeout.as_secs())).into());
        }
    };
    drop(stop);
    let reasoning = completion.reasoning.trim();
    Ok(Json(ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: completion.answer.clone(),
                reasoning_content: (!reasoning.is_empty()).then(|| reasoning.to_string()),
            },
            finish_reason: finish_reason(completion.finish_reason),
        }],
        usage: usage(&completion),
    })
    .into_response())
}

/// Cancels a generation when the request handling it is dropped (its client went away).
struct CancelOnDrop(Canceller);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// OpenAI's usage, with the prompt tokens the KV cache held as its `cached_tokens`.
fn usage(c: &crate::inference::llm::Completion) -> CompletionUsage {
    CompletionUsage {
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.completion_tokens,
        total_tokens: c.prompt_tokens + c.completion_tokens,
        prompt_tokens_details: PromptTokensDetails { cached_tokens: c.reused_tokens },
    }
}

fn send(body: &impl serde::Serialize) -> Event {
    Event::default().json_data(body).unwrap_or_default()
}

/// Chunks as OpenAI streams them: unnamed SSE events, then `[DONE]`. When the client hangs up
/// the generation is stopped, and what it generated is still counted.
fn stream(
    mut running: service::completions::Running,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
) -> Sse<impl tokio_stream::Stream<Item = std::result::Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let chunk = move |delta: Delta, finish_reason: Option<&'static str>, usage: Option<CompletionUsage>| {
        let choices = vec![ChunkChoice { index: 0, delta, finish_reason }];
        let chunk = ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk",
            created,
            model: model.clone(),
            choices,
            usage,
        };
        send(&chunk)
    };
    tokio::spawn(async move {
        let first = Delta { role: Some("assistant"), content: Some(String::new()), ..Default::default() };
        if tx.send(chunk(first, None, None)).await.is_err() {
            return running.abandon();
        }
        while let Some(event) = running.next().await {
            let event = match event {
                GenerationEvent::Delta { part: Part::Reasoning, text } => {
                    chunk(Delta { reasoning_content: Some(text), ..Default::default() }, None, None)
                }
                GenerationEvent::Delta { part: Part::Answer, text } => {
                    chunk(Delta { content: Some(text), ..Default::default() }, None, None)
                }
                GenerationEvent::Done(c) => {
                    let usage = include_usage.then(|| usage(&c));
                    let _ = tx.send(chunk(Delta::default(), Some(finish_reason(c.finish_reason)), usage)).await;
                    break;
                }
                GenerationEvent::Failed(failure) => {
                    tracing::warn!(error = %failure, "completion failed");
                    let detail = ErrorDetail {
                        message: failure.message,
                        kind: "server_error".into(),
                        param: None,
                        code: Some("internal".into()),
                    };
                    let _ = tx.send(send(&ErrorBody { error: detail })).await;
                    break;
                }
                GenerationEvent::Started { .. } => continue,
            };
            if tx.send(event).await.is_err() {
                return running.abandon();
            }
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    let events = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn size(text: Option<&str>) -> Result<(Option<u32>, Option<u32>)> {
    let Some(text) = text else { return Ok((None, None)) };
    // Plain decimal sides, as the API document's pattern says (no signs, spaces or leading zeros).
    let side = |s: &str| {
        (!s.is_empty() && !s.starts_with('0') && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let parsed = text.split_once('x').and_then(|(w, h)| Some((side(w)?, side(h)?)));
    match parsed {
        Some((w, h)) => Ok((Some(w), Some(h))),
        None => Err(invalid("size", format!("must be WIDTHxHEIGHT such as 512x512, got {text:?}"))),
    }
}

/// `POST /v1/images/generations`: waits for the images (they take a while on a CPU).
#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", request_body = ImagesRequest,
    responses(
        (status = 200, description = "Once every image is done", body = ImagesResponse),
        (status = 400, description = "Malformed JSON or an empty body", body = ErrorBody), (status = 404, description = "Unknown model", body = ErrorBody), (status = 415, description = "The body is not JSON (send Content-Type: application/json)", body = ErrorBody), (status = 422, description = "A field is invalid; `error.param` names it (a JSON path) and the message says what is allowed", body = ErrorBody), (status = 503, description = "A queue is full, or the model is missing, loading or failed; `Retry-After` says when to try again when waiting helps", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))), (status = 504, description = "Not finished within the configured timeout", body = ErrorBody), (status = 500, description = "Internal error; the log has the details under the response's x-request-id", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn images_generations(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ImagesRequest>,
) -> Result<Response> {
    check_model(req.model.as_deref(), &state.config.models.sd_model.to_string())?;
    let n = req.n.unwrap_or(1);
    if !(1..=MAX_IMAGES).contains(&n) {
        return Err(invalid("n", format!("must be from 1 to {MAX_IMAGES}, got {n}")));
    }
    let b64 = match req.response_format.as_deref() {
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(other) => return Err(invalid("response_format", format!("must be url or b64_json, got {other:?}"))),
    };
    let (width, height) = size(req.size.as_deref())?;
    let mut jobs = Vec::new();
    for i in 0..n {
        let one = ImageGenerationRequest {
            prompt: req.prompt.clone(),
            negative_prompt: req.negative_prompt.clone(),
            num_inference_steps: req.num_inference_steps,
            guidance_scale: req.guidance_scale,
            seed: req.seed.map(|s| s.wrapping_add(i)),
            width,
            height,
            scheduler: req.scheduler.clone(),
            // As on chat completions: an empty `user` is none.
            user_id: req.user.clone().filter(|u| !u.is_empty()),
        };
        let job = service::images::submit(&state, &caller, one).await.map_err(|e| match e {
            // Our field names are OpenAI's `size`.
            ServiceError::Invalid { field, message } if field == "width" || field == "height" => {
                invalid("size", format!("{field} {message}"))
            }
            other => other.into(),
        })?;
        jobs.push(job);
    }
    let timeout = Duration::from_secs(state.config.images.wait_timeout_secs);
    let base = base_url(&state.config, &headers);
    let mut data = Vec::new();
    for job in jobs {
        let done = service::images::wait(&state, &caller, &job.job_id, timeout).await?;
        if done.status != JobStatus::Done {
            let reason = done.error.unwrap_or_else(|| format!("{:?}", done.status).to_lowercase());
            return Err(ServiceError::Engine(format!("image job {} ended: {reason}", done.job_id)).into());
        }
        let prompt = done.parameters.prompt.clone();
        data.push(if b64 {
            let picture = service::images::file(&state, &caller, &done.job_id).await?;
            let bytes = state.pictures.read(&picture).await?.ok_or(ServiceError::NotFound("image"))?;
            let b64_json = base64::engine::general_purpose::STANDARD.encode(bytes);
            ImageData { url: None, b64_json: Some(b64_json), revised_prompt: prompt }
        } else {
            ImageData { url: Some(format!("{base}{}", done.image_url)), b64_json: None, revised_prompt: prompt }
        });
    }
    Ok(Json(ImagesResponse { created: unix_now(), data }).into_response())
}

/// `scheme://host` the client used, so image URLs are absolute as OpenAI's are: `PUBLIC_URL`
/// when set, else the request's host (one the server answers for); a proxy's `X-Forwarded-*`
/// headers count only when `TRUSTED_PROXIES` says there is one.
fn base_url(config: &crate::config::Config, headers: &HeaderMap) -> String {
    if let Some(public) = &config.server.public_url {
        return public.trim_end_matches('/').to_string();
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let proxied = !config.server.trusted_proxies.is_empty();
    let forwarded = |name: &str| if proxied { get(name) } else { None };
    let host = forwarded("x-forwarded-host").or_else(|| get(header::HOST.as_str())).unwrap_or("127.0.0.1:3000");
    let scheme = forwarded("x-forwarded-proto").filter(|s| matches!(*s, "http" | "https")).unwrap_or("http");
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn param_of<T: std::fmt::Debug>(r: Result<T>) -> Option<String> {
        r.unwrap_err().detail().0.param
    }

    #[test]
    fn messages_take_strings_and_text_parts() {
        let req = parse(json!({"messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        ]}));
        let m = messages(req.messages).unwrap();
        assert_eq!(m, [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi there")]);
        let bad = parse(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}));
        assert_eq!(param_of(messages(bad.messages)).as_deref(), Some("messages[0].content[0]"));
        let bad = parse(json!({"messages": [{"role": "tool", "content": "x"}]}));
        assert_eq!(param_of(messages(bad.messages)).as_deref(), Some("messages[0].role"));
        assert_eq!(param_of(messages(Some(vec![]))).as_deref(), Some("messages"));
    }

    #[test]
    fn options_map_to_generation_params() {
        let req =
            parse(json!({"max_completion_tokens": 5, "max_tokens": 9, "stop": "END", "seed": 3, "temperature": 0}));
        let p = params(&req, 100).unwrap();
        assert_eq!((p.max_new_tokens, p.stop.clone(), p.sampling.seed), (5, vec!["END".to_string()], Some(3)));
        assert_eq!(param_of(params(&parse(json!({"n": 2})), 100)).as_deref(), Some("n"));
        assert_eq!(param_of(params(&parse(json!({"max_tokens": 0})), 100)).as_deref(), Some("max_tokens"));
        assert_eq!(param_of(params(&parse(json!({"top_p": 1.5})), 100)).as_deref(), Some("top_p"));
    }

    #[test]
    fn sizes_and_models() {
        assert_eq!(size(Some("768x512")).unwrap(), (Some(768), Some(512)));
        assert_eq!(param_of(size(Some("large"))).as_deref(), Some("size"));
        assert!(check_model(None, "m").is_ok() && check_model(Some("m"), "m").is_ok());
        let err = check_model(Some("gpt-4o"), "m").unwrap_err();
        assert_eq!(err.status_code(), StatusCode::NOT_FOUND);
    }
}
