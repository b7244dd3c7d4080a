//! Chat turns answered by Duet workers (`ROLE=worker`): each turn goes to the worker its
//! conversation hashes to (rendezvous hashing over the workers that are up), so follow-up turns
//! find their KV cache there; when that worker is unreachable the next one in the key's order
//! takes the turn (a cold prefill, the same greedy answer).

use super::{
    pool::{Node, Pool},
    wire::{GenerateCall, SECRET_HEADER},
    Lines,
};
use crate::inference::{
    engine::{BoxFuture, ChatEngine},
    fnv1a,
    llm::{Completion, Failure, FailureKind, GenerateRequest, GenerationEvent, GenerationHandle, Prompt},
    InferenceError, FNV_OFFSET,
};
use futures::StreamExt;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

#[derive(Clone)]
pub struct WorkerChat {
    pub pool: Pool,
    secret: Arc<str>,
    client: reqwest::Client,
}

impl WorkerChat {
    pub fn new(pool: Pool, secret: &str) -> WorkerChat {
        WorkerChat { pool, secret: secret.into(), client: super::client() }
    }

    fn start(&self, request: GenerateRequest, reply_id: Option<&str>) -> GenerationHandle {
        let (tx, rx) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let call = GenerateCall { id: uuid::Uuid::new_v4().to_string(), reply_id: reply_id.map(String::from), request };
        tokio::spawn(self.clone().run(call, tx, cancel.clone()));
        GenerationHandle::new(rx, cancel)
    }

    /// Try the workers in the key's order until one takes the turn, then relay its events.
    async fn run(self, call: GenerateCall, tx: UnboundedSender<GenerationEvent>, cancel: Arc<AtomicBool>) {
        let key = routing_key(&call.request);
        let body = match serde_json::to_vec(&call) {
            Ok(body) => body,
            Err(err) => return drop(tx.send(GenerationEvent::Failed(Failure::internal(err.to_string())))),
        };
        let mut refused = Vec::new();
        let mut started = false;
        for node in self.pool.ranked(&key) {
            if cancel.load(Ordering::Relaxed) || tx.is_closed() {
                let failure = Failure::new(FailureKind::Cancelled, "cancelled before a worker took it");
                return drop(tx.send(GenerationEvent::Failed(failure)));
            }
            let sent = self
                .client
                .post(format!("{}/internal/generate", node.url))
                .header(SECRET_HEADER, &*self.secret)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(r) if r.status().is_success() => r,
                Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    refused.push(format!("{}: {}", node.url, super::pool::REFUSED_SECRET));
                    self.pool.mark(&node, Err(super::pool::REFUSED_SECRET.into()));
                    continue;
                }
                Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    // Busy or still loading: the next worker may take it; this one stays up.
                    refused.push(format!("{} is busy", node.url));
                    continue;
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    // 422: the engine refused the prompt (too long, invalid), said as it said it.
                    let failure = match serde_json::from_str::<Failure>(&text) {
                        Ok(failure) if status.as_u16() == 422 => failure,
                        _ => Failure::internal(format!("worker {} answered {status}: {}", node.url, text.trim())),
                    };
                    return drop(tx.send(GenerationEvent::Failed(failure)));
                }
                Err(err) => {
                    let why = format!("unreachable: {}", super::cause(&err));
                    refused.push(format!("{} is {why}", node.url));
                    self.pool.mark(&node, Err(why));
                    continue;
                }
            };
            match self.relay(&node, &call.id, response, &tx, &cancel, &mut started).await {
                Relayed::Ended => return,
                // Gone before it wrote anything: the next worker runs the prompt again.
                Relayed::LostBeforeText(why) => refused.push(why),
            }
        }
        let message = if refused.is_empty() {
            "no chat worker is up; start one with ROLE=worker".to_string()
        } else {
            format!("no chat worker could take the turn ({})", refused.join("; "))
        };
        let _ = tx.send(GenerationEvent::Failed(Failure::new(FailureKind::Unavailable, message)));
    }

    /// Pass the worker's events on; `started`: the admission was passed on already (by a worker
    /// lost before it wrote anything), so another is not.
    async fn relay(
        &self,
        node: &Node,
        id: &str,
        response: reqwest::Response,
        tx: &UnboundedSender<GenerationEvent>,
        cancel: &AtomicBool,
        started: &mut bool,
    ) -> Relayed {
        let mut body = response.bytes_stream();
        let mut lines = Lines::default();
        let (mut asked_to_stop, mut wrote) = (false, false);
        let mut check = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                chunk = body.next() => {
                    let chunk = match chunk {
                        Some(Ok(chunk)) => chunk,
                        Some(Err(err)) => {
                            let message = format!("worker {} went away mid-reply: {}", node.url, super::cause(&err));
                            self.pool.mark(node, Err(message.clone()));
                            return self.lost(message, wrote || asked_to_stop, tx);
                        }
                        None => {
                            let message = format!("worker {} ended the reply without its result", node.url);
                            return self.lost(message, wrote || asked_to_stop, tx);
                        }
                    };
                    for line in lines.push(&chunk).into_iter().filter(|l| !l.is_empty()) {
                        let event = match serde_json::from_str::<GenerationEvent>(&line) {
                            Ok(GenerationEvent::Done(completion)) => {
                                GenerationEvent::Done(Completion { provider: Some(node.url.clone()), ..completion })
                            }
                            Ok(event) => event,
                            Err(err) => GenerationEvent::Failed(Failure::internal(format!(
                                "worker {} sent an unreadable event: {err}", node.url
                            ))),
                        };
                        match &event {
                            GenerationEvent::Started { .. } if std::mem::replace(started, true) => continue,
                            GenerationEvent::Delta { .. } => wrote = true,
                            _ => {}
                        }
                        let last = matches!(event, GenerationEvent::Done(_) | GenerationEvent::Failed(_));
                        let _ = tx.send(event);
                        if last {
                            return Relayed::Ended;
                        }
                    }
                }
                _ = check.tick() => {}
            }
            // Stopped here (or its reader gone): the worker stops and sends what it has.
            if !asked_to_stop && (cancel.load(Ordering::Relaxed) || tx.is_closed()) {
                asked_to_stop = true;
                let request = self
                    .client
                    .post(format!("{}/internal/cancel/{id}", node.url))
                    .header(SECRET_HEADER, &*self.secret)
                    .timeout(Duration::from_secs(5));
                if let Err(err) = request.send().await {
                    tracing::warn!(worker = %node.url, error = %super::cause(&err), "could not stop a generation");
                }
            }
        }
    }

    /// The worker went away: the turn fails, unless nothing of it was written yet (then the
    /// next worker may run it from the start).
    fn lost(&self, message: String, too_late: bool, tx: &UnboundedSender<GenerationEvent>) -> Relayed {
        if too_late {
            let _ = tx.send(GenerationEvent::Failed(Failure::internal(message)));
            Relayed::Ended
        } else {
            tracing::warn!(reason = %message, "a worker went away before the reply began: trying the next");
            Relayed::LostBeforeText(message)
        }
    }

    async fn recover_reply(&self, key: &str, reply_id: &str) -> Option<Completion> {
        // Every worker is asked, those marked down too: a reply finished by a worker is kept
        // there whatever this process last heard of it.
        let members = self.pool.members();
        let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
        for node in super::rendezvous::rank(key, &nodes, |n| n.name.as_str()) {
            let request = self
                .client
                .get(format!("{}/internal/replies/{reply_id}", node.url))
                .header(SECRET_HEADER, &*self.secret)
                .timeout(Duration::from_secs(300));
            let Ok(response) = request.send().await else { continue };
            if !response.status().is_success() {
                continue;
            }
            let Ok(bytes) = response.bytes().await else { continue };
            if let Ok(completion) = serde_json::from_slice::<Completion>(&bytes) {
                return Some(Completion { provider: Some(node.url.clone()), ..completion });
            }
        }
        None
    }
}

impl ChatEngine for WorkerChat {
    fn generate(&self, request: GenerateRequest) -> Result<GenerationHandle, InferenceError> {
        Ok(self.start(request, None))
    }

    fn generate_reply(&self, request: GenerateRequest, reply_id: &str) -> Result<GenerationHandle, InferenceError> {
        Ok(self.start(request, Some(reply_id)))
    }

    fn recover<'a>(&'a self, key: &'a str, reply_id: &'a str) -> BoxFuture<'a, Option<Completion>> {
        Box::pin(self.recover_reply(key, reply_id))
    }
}

/// How relaying one worker's answer ended.
enum Relayed {
    /// The generation's end (or failure) was passed on.
    Ended,
    /// The worker went away before any text: why.
    LostBeforeText(String),
}

/// What a request is routed by: its conversation (whose KV cache a worker keeps), or for a
/// one-off request its prompt.
pub fn routing_key(request: &GenerateRequest) -> String {
    match (&request.conversation, &request.prompt) {
        (Some(key), _) => key.clone(),
        (None, Prompt::Ids(ids)) => format!("ids:{:016x}", fnv1a(FNV_OFFSET, ids.iter().flat_map(|i| i.to_le_bytes()))),
        (None, Prompt::Messages(messages)) => {
            let bytes =
                messages.iter().flat_map(|m| m.role.bytes().chain([0xff]).chain(m.content.bytes()).chain([0xff]));
            format!("messages:{:016x}", fnv1a(FNV_OFFSET, bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::llm::{FinishReason, GenerationParams, Part};
    use axum::{body::Body, routing::post, Router};

    /// A fake worker answering every generation with `lines`, then ending the body with an error
    /// when `broken` (a process gone mid-stream).
    async fn fake_worker(lines: Vec<GenerationEvent>, broken: bool) -> String {
        let app = Router::new().route(
            "/internal/generate",
            post(move || {
                let lines = lines.clone();
                async move {
                    let mut items: Vec<Result<String, std::io::Error>> =
                        lines.iter().map(|e| Ok(format!("{}\n", serde_json::to_string(e).unwrap()))).collect();
                    if broken {
                        items.push(Err(std::io::Error::other("killed")));
                    }
                    // Each line gets out before the next (and before the break).
                    let paced = futures::stream::iter(items).then(|item| async move {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        item
                    });
                    Body::from_stream(paced)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn started() -> GenerationEvent {
        GenerationEvent::Started { prompt_tokens: 3, reused_tokens: 0, dropped_messages: 0 }
    }

    fn done(answer: &str) -> GenerationEvent {
        GenerationEvent::Done(Completion {
            token_ids: vec![1],
            text: answer.into(),
            reasoning: String::new(),
            answer: answer.into(),
            finish_reason: FinishReason::Eos,
            prompt_tokens: 3,
            reused_tokens: 0,
            completion_tokens: 1,
            dropped_messages: 0,
            seed: 0,
            ttft_ms: 1.0,
            total_ms: 1.0,
            provider: None,
        })
    }

    /// A conversation key that ranks `first` above the other node.
    fn key_preferring(first: &Node, nodes: &[Node]) -> String {
        (0..)
            .map(|i| format!("conversation-{i}"))
            .find(|k| super::super::rendezvous::rank(k, nodes, |n| n.name.as_str())[0] == first)
            .unwrap()
    }

    async fn answer(chat: &WorkerChat, key: &str) -> (Vec<GenerationEvent>, Option<Completion>) {
        let request = GenerateRequest {
            conversation: Some(key.into()),
            prompt: Prompt::Messages(vec![crate::inference::llm::ChatMessage::new("user", "hi")]),
            params: GenerationParams::default(),
        };
        let mut handle = chat.generate(request).unwrap();
        let mut events = Vec::new();
        while let Some(event) = handle.next().await {
            if let GenerationEvent::Done(c) = &event {
                return (events, Some(c.clone()));
            }
            let failed = matches!(event, GenerationEvent::Failed(_));
            events.push(event);
            if failed {
                break;
            }
        }
        (events, None)
    }

    #[tokio::test]
    async fn a_worker_gone_before_any_text_hands_the_turn_to_the_next_but_not_after() {
        let delta = GenerationEvent::Delta { part: Part::Answer, text: "Hel".into() };
        let gone_early = fake_worker(vec![started()], true).await;
        let gone_late = fake_worker(vec![started(), delta.clone()], true).await;
        let good = fake_worker(
            vec![started(), GenerationEvent::Delta { part: Part::Answer, text: "Hi".into() }, done("Hi")],
            false,
        )
        .await;
        let node = |url: &String| Node { name: url.clone(), url: url.clone() };

        let nodes = vec![node(&gone_early), node(&good)];
        let pool = Pool::new(super::super::Probe::Worker, None);
        pool.set_nodes(nodes.clone());
        let chat = WorkerChat::new(pool.clone(), "secret");
        let (events, completion) = answer(&chat, &key_preferring(&nodes[0], &nodes)).await;
        let completion = completion.expect("the next worker answered");
        assert_eq!((completion.answer.as_str(), completion.provider.as_deref()), ("Hi", Some(good.as_str())));
        let starts = events.iter().filter(|e| matches!(e, GenerationEvent::Started { .. })).count();
        assert_eq!(starts, 1, "one admission passed on: {events:?}");
        assert!(!pool.ranked("any").iter().any(|n| n.url == gone_early), "the lost worker is marked down");

        let nodes = vec![node(&gone_late), node(&good)];
        pool.set_nodes(nodes.clone());
        let (events, completion) = answer(&chat, &key_preferring(&nodes[0], &nodes)).await;
        assert!(completion.is_none(), "text was written: the turn fails instead of starting over");
        match events.last() {
            Some(GenerationEvent::Failed(f)) => assert!(f.message.contains(&gone_late), "{f:?}"),
            other => panic!("{other:?}"),
        }
    }
}
