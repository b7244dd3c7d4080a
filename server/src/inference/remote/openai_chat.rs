//! Chat turns answered by an OpenAI-compatible server (`CHAT_ENDPOINTS`): another Duet, OVMS,
//! vLLM, Ollama. Streams `POST {base}/chat/completions`; reasoning arrives as
//! `reasoning_content` (Duet, vLLM's and OVMS's reasoning parsers) or inside `<think>` in the
//! content. Conversations are spread over the endpoints by rendezvous hashing, like workers, so
//! a server that keeps prefixes cached sees a conversation's turns.

use super::{pool::Pool, worker_chat::routing_key, Lines};
use crate::inference::{
    engine::ChatEngine,
    llm::{
        reasoning::ReasoningSplitter, Completion, Failure, FailureKind, FinishReason, GenerateRequest, GenerationEvent,
        GenerationHandle, Part, Prompt,
    },
    InferenceError,
};
use futures::StreamExt;
use serde_json::{json, Value};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

#[derive(Clone)]
pub struct OpenAiChat {
    pub pool: Pool,
    /// The `model` field sent.
    model: Arc<str>,
    client: reqwest::Client,
}

impl OpenAiChat {
    pub fn new(pool: Pool, model: &str) -> OpenAiChat {
        OpenAiChat { pool, model: model.into(), client: super::client() }
    }

    fn body(&self, request: &GenerateRequest) -> Result<Value, Failure> {
        let Prompt::Messages(messages) = &request.prompt else {
            return Err(Failure::new(
                FailureKind::Invalid,
                "an OpenAI-compatible endpoint takes messages, not token ids",
            ));
        };
        let (params, sampling) = (&request.params, &request.params.sampling);
        let mut body = json!({
            "model": &*self.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": params.max_new_tokens,
        });
        let fields = [
            ("temperature", sampling.temperature.map(|v| json!(v))),
            ("top_p", sampling.top_p.map(|v| json!(v))),
            ("top_k", sampling.top_k.map(|v| json!(v))),
            ("repetition_penalty", sampling.repetition_penalty.map(|v| json!(v))),
            ("seed", sampling.seed.map(|v| json!(v))),
            ("stop", (!params.stop.is_empty()).then(|| json!(params.stop))),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                body[name] = value;
            }
        }
        Ok(body)
    }

    async fn run(self, request: GenerateRequest, tx: UnboundedSender<GenerationEvent>, cancel: Arc<AtomicBool>) {
        let body = match self.body(&request) {
            Ok(body) => body.to_string(),
            Err(failure) => return drop(tx.send(GenerationEvent::Failed(failure))),
        };
        let mut refused = Vec::new();
        for node in self.pool.ranked(&routing_key(&request)) {
            let call = self.pool.post_json(&self.client, &node, "chat/completions", body.clone());
            let submitted = Instant::now();
            match call.send().await {
                Ok(r) if r.status().is_success() => {
                    let _ =
                        tx.send(GenerationEvent::Started { prompt_tokens: 0, reused_tokens: 0, dropped_messages: 0 });
                    let mut reader = Reader::new(submitted, node.url.clone());
                    return reader.relay(r, &tx, &cancel, request.params.max_new_tokens).await;
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    refused.push(format!("{} answered {}", node.url, r.status()));
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    let kind = if status.as_u16() == 400 { FailureKind::Invalid } else { FailureKind::Internal };
                    let message = format!("{} answered {status}: {}", node.url, text.trim());
                    return drop(tx.send(GenerationEvent::Failed(Failure::new(kind, message))));
                }
                Err(err) => {
                    let why = format!("unreachable: {}", super::cause(&err));
                    refused.push(format!("{} is {why}", node.url));
                    self.pool.mark(&node, Err(why));
                }
            }
        }
        let message = if refused.is_empty() {
            "no chat endpoint is up (CHAT_ENDPOINTS)".to_string()
        } else {
            format!("no chat endpoint could take the turn ({})", refused.join("; "))
        };
        let _ = tx.send(GenerationEvent::Failed(Failure::new(FailureKind::Unavailable, message)));
    }
}

impl ChatEngine for OpenAiChat {
    fn generate(&self, request: GenerateRequest) -> Result<GenerationHandle, InferenceError> {
        let (tx, rx) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        tokio::spawn(self.clone().run(request, tx, cancel.clone()));
        Ok(GenerationHandle::new(rx, cancel))
    }
}

/// Reads one streamed completion (server-sent events of `chat.completion.chunk`s).
struct Reader {
    submitted: Instant,
    first: Option<Instant>,
    provider: String,
    splitter: ReasoningSplitter,
    reasoning: String,
    text: String,
    finish: Option<String>,
    usage: Option<Value>,
    pieces: usize,
}

impl Reader {
    fn new(submitted: Instant, provider: String) -> Reader {
        Reader {
            submitted,
            first: None,
            provider,
            splitter: ReasoningSplitter::new(false),
            reasoning: String::new(),
            text: String::new(),
            finish: None,
            usage: None,
            pieces: 0,
        }
    }

    async fn relay(
        &mut self,
        response: reqwest::Response,
        tx: &UnboundedSender<GenerationEvent>,
        cancel: &AtomicBool,
        max_tokens: usize,
    ) {
        let mut body = response.bytes_stream();
        let mut lines = Lines::default();
        let mut check = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                chunk = body.next() => match chunk {
                    Some(Ok(chunk)) => {
                        for line in lines.push(&chunk) {
                            let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
                            if data == "[DONE]" {
                                return self.done(tx, false, max_tokens);
                            }
                            match serde_json::from_str::<Value>(data) {
                                Ok(chunk) => self.chunk(&chunk, tx),
                                Err(err) => {
                                    let message = format!("{} sent an unreadable chunk: {err}", self.provider);
                                    return drop(tx.send(GenerationEvent::Failed(Failure::internal(message))));
                                }
                            }
                        }
                    }
                    Some(Err(err)) => {
                        let message = format!("{} went away mid-reply: {}", self.provider, super::cause(&err));
                        return drop(tx.send(GenerationEvent::Failed(Failure::internal(message))));
                    }
                    None => return self.done(tx, false, max_tokens),
                },
                _ = check.tick() => {}
            }
            // Stopping closes the stream: the server stops generating, and what came is the reply.
            if cancel.load(Ordering::Relaxed) || tx.is_closed() {
                return self.done(tx, true, max_tokens);
            }
        }
    }

    fn chunk(&mut self, chunk: &Value, tx: &UnboundedSender<GenerationEvent>) {
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk["choices"].get(0) else { return };
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(reason.to_string());
        }
        let delta = &choice["delta"];
        let mut pieces = Vec::new();
        if let Some(text) = delta["reasoning_content"].as_str().filter(|t| !t.is_empty()) {
            self.reasoning.push_str(text);
            pieces.push((Part::Reasoning, text.to_string()));
        }
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.text.push_str(text);
            pieces.extend(self.splitter.push(text));
        }
        for (part, text) in pieces {
            self.first.get_or_insert_with(Instant::now);
            self.pieces += 1;
            let _ = tx.send(GenerationEvent::Delta { part, text });
        }
    }

    fn done(&mut self, tx: &UnboundedSender<GenerationEvent>, cancelled: bool, max_tokens: usize) {
        let finish_reason = match (cancelled, self.finish.as_deref()) {
            (true, _) => FinishReason::Cancelled,
            (false, Some("length")) => FinishReason::Length,
            (false, Some("stop") | None) => FinishReason::Eos,
            (false, Some(_)) => FinishReason::Stop,
        };
        let ended_by_model = matches!(finish_reason, FinishReason::Eos | FinishReason::Stop);
        let split = std::mem::replace(&mut self.splitter, ReasoningSplitter::new(false)).finish(ended_by_model);
        let reasoning = if self.reasoning.is_empty() { split.reasoning } else { self.reasoning.trim().to_string() };
        let usage = self.usage.take().unwrap_or(Value::Null);
        let count = |v: &Value| v.as_u64().map(|n| n as usize);
        let completion_tokens = count(&usage["completion_tokens"]).unwrap_or(self.pieces.min(max_tokens));
        let ms = |t: Instant| t.duration_since(self.submitted).as_secs_f64() * 1000.0;
        let now = Instant::now();
        let completion = Completion {
            token_ids: Vec::new(),
            text: std::mem::take(&mut self.text),
            reasoning,
            answer: split.answer,
            finish_reason,
            prompt_tokens: count(&usage["prompt_tokens"]).unwrap_or(0),
            reused_tokens: count(&usage["prompt_tokens_details"]["cached_tokens"]).unwrap_or(0),
            completion_tokens,
            dropped_messages: 0,
            seed: 0,
            ttft_ms: ms(self.first.unwrap_or(now)),
            total_ms: ms(now),
            provider: Some(self.provider.clone()),
        };
        let _ = tx.send(GenerationEvent::Done(completion));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[Value]) -> (Vec<(Part, String)>, Completion) {
        let (tx, mut rx) = unbounded_channel();
        let mut reader = Reader::new(Instant::now(), "http://e/v1".into());
        for chunk in chunks {
            reader.chunk(chunk, &tx);
        }
        reader.done(&tx, false, 100);
        let (mut pieces, mut done) = (Vec::new(), None);
        while let Ok(event) = rx.try_recv() {
            match event {
                GenerationEvent::Delta { part, text } => pieces.push((part, text)),
                GenerationEvent::Done(c) => done = Some(c),
                _ => {}
            }
        }
        (pieces, done.unwrap())
    }

    fn delta(field: &str, text: &str) -> Value {
        json!({"choices": [{"index": 0, "delta": {field: text}, "finish_reason": null}]})
    }

    #[test]
    fn reasoning_content_and_think_tags_both_become_reasoning() {
        let usage = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8}}});
        let (pieces, c) = read(&[delta("reasoning_content", "Hmm."), delta("content", "Hello"), usage]);
        assert_eq!(pieces, vec![(Part::Reasoning, "Hmm.".into()), (Part::Answer, "Hello".into())]);
        assert_eq!((c.reasoning.as_str(), c.answer.as_str()), ("Hmm.", "Hello"));
        assert_eq!((c.prompt_tokens, c.completion_tokens, c.reused_tokens), (12, 5, 8));
        assert_eq!(c.finish_reason, FinishReason::Eos);
        assert_eq!(c.provider.as_deref(), Some("http://e/v1"));

        let (_, c) = read(&[delta("content", "<think>Let me"), delta("content", " see.</think>\n\nYes.")]);
        assert_eq!((c.reasoning.as_str(), c.answer.as_str()), ("Let me see.", "Yes."));
        let length = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]});
        assert_eq!(read(&[delta("content", "cut"), length]).1.finish_reason, FinishReason::Length);
    }

    #[test]
    fn token_ids_are_refused_by_name() {
        let chat = OpenAiChat::new(Pool::endpoints(&[], None), "m");
        let request = GenerateRequest { conversation: None, prompt: Prompt::Ids(vec![1]), params: Default::default() };
        assert_eq!(chat.body(&request).unwrap_err().kind, FailureKind::Invalid);
    }
}
