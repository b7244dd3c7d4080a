//! One open socket: read the client's frames, run what they ask through the service layer (the
//! same calls as the REST routes, so the same rules and limits), and write the answers. Replies and
//! job follows run as tasks of their own; closing the socket ends them, which stops a reply as a
//! hang-up does.

use crate::{
    api::error::ApiError,
    auth::Caller,
    service::{self, error::ServiceError, limits::SocketPlace, AppState},
};
use app::types::{ChatEvent, ClientFrame, ErrorDetail, ServerFrame};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};
use tokio::{sync::mpsc, task::AbortHandle};

/// Replies and job follows one socket may run at once.
const MAX_TASKS: usize = 64;
const BUSY: &str = "this socket runs 64 replies and follows at once at most";
const MAX_REF_CHARS: usize = 64;

pub async fn run(state: AppState, caller: Caller, socket: WebSocket, _place: SocketPlace) {
    let (mut sink, mut incoming) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
    });
    let mut session = Session::new(state, caller, out);
    let ping_every = Duration::from_secs(session.state.config.server.ws_ping_secs.max(1));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            frame = incoming.next() => {
                let Some(Ok(frame)) = frame else { break };
                heard = Instant::now();
                match frame {
                    Message::Text(text) => session.frame(text.as_str()).await,
                    Message::Binary(_) => session.refuse(None, None, "frames are JSON text").await,
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = ping.tick() => {
                // A peer that answered nothing, not even a ping, for three rounds is gone.
                if heard.elapsed() > ping_every * 3 {
                    tracing::info!("closing a WebSocket whose peer stopped answering");
                    let close = CloseFrame { code: 1001, reason: "no answer to pings".into() };
                    let _ = session.out.send(Message::Close(Some(close))).await;
                    break;
                }
                if session.out.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    session.end();
    drop(session);
    let _ = writer.await;
}

struct Session {
    state: AppState,
    caller: Caller,
    out: mpsc::Sender<Message>,
    /// Running replies by `ref`, and job follows by job id.
    replies: HashMap<String, AbortHandle>,
    follows: HashMap<String, AbortHandle>,
    next_ref: u64,
    budget: Budget,
}

impl Session {
    fn new(state: AppState, caller: Caller, out: mpsc::Sender<Message>) -> Session {
        let per_second = state.config.limits.ws_messages_per_second;
        Session {
            state,
            caller,
            out,
            replies: HashMap::new(),
            follows: HashMap::new(),
            next_ref: 1,
            budget: Budget::new(per_second),
        }
    }

    async fn frame(&mut self, text: &str) {
        if !self.budget.take() {
            let rate = self.state.config.limits.ws_messages_per_second;
            let message = format!("at most {rate} frames a second (WS_MESSAGES_PER_SECOND); this one was dropped");
            let error = crate::service::limits::limited("socket.messages_per_second", message, 1);
            return self.error(None, None, error.into()).await;
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(err) => {
                let message = format!(
                    "not a frame this socket takes ({err}); send {{\"type\": \"chat\" | \"stop\" | \"subscribe\" | \"cancel_job\" | \"ping\", …}}"
                );
                return self.refuse(None, None, &message).await;
            }
        };
        self.replies.retain(|_, task| !task.is_finished());
        self.follows.retain(|_, task| !task.is_finished());
        match frame {
            ClientFrame::Chat { reference, body } => self.chat(reference, *body).await,
            ClientFrame::Stop { reference } => self.stop(reference).await,
            ClientFrame::Subscribe { job_id } => self.subscribe(job_id).await,
            ClientFrame::CancelJob { job_id } => self.cancel(job_id).await,
            ClientFrame::Ping => self.send(&ServerFrame::Pong).await,
        }
    }

    async fn chat(&mut self, reference: Option<String>, mut body: app::types::ChatRequest) {
        let reference = match reference {
            Some(r) if r.is_empty() || r.chars().count() > MAX_REF_CHARS => {
                return self.refuse(Some(r), None, "ref must be 1 to 64 characters").await;
            }
            Some(r) if self.replies.contains_key(&r) => {
                return self.refuse(Some(r), None, "a reply with this ref is still running").await;
            }
            Some(r) => r,
            None => {
                self.next_ref += 1;
                format!("r{}", self.next_ref - 1)
            }
        };
        if self.busy() {
            return self.refuse(Some(reference), None, BUSY).await;
        }
        body.stream = true;
        let mut events = match service::chat::start(&self.state, &self.caller, body).await {
            Ok(events) => events,
            Err(err) => return self.error(Some(reference), None, err.into()).await,
        };
        let out = self.out.clone();
        let turn = reference.clone();
        let task = tokio::spawn(async move {
            let mut conversation_id = None;
            while let Some(event) = events.recv().await {
                if let ChatEvent::Start { conversation_id: id, .. } = &event {
                    conversation_id = Some(id.clone());
                }
                let frame = ServerFrame::Chat {
                    reference: turn.clone(),
                    conversation_id: conversation_id.clone(),
                    data: event,
                };
                if out.send(text(&frame)).await.is_err() {
                    break; // the socket closed: dropping `events` stops the reply
                }
            }
        });
        self.replies.insert(reference, task.abort_handle());
    }

    async fn stop(&mut self, reference: String) {
        match self.replies.remove(&reference) {
            Some(task) => {
                task.abort();
                self.send(&ServerFrame::Stopped { reference }).await;
            }
            None => self.error(Some(reference), None, ServiceError::NotFound("running reply").into()).await,
        }
    }

    async fn subscribe(&mut self, job_id: String) {
        if self.follows.contains_key(&job_id) {
            return; // already followed
        }
        if self.busy() {
            return self.refuse(None, Some(job_id), BUSY).await;
        }
        let (now, updates) = match service::images::watch(&self.state, &self.caller, &job_id).await {
            Ok(found) => found,
            Err(err) => return self.error(None, Some(job_id), err.into()).await,
        };
        let out = self.out.clone();
        let id = job_id.clone();
        let task = tokio::spawn(async move {
            let (mut last, mut updates) = (now, updates);
            loop {
                let done = last.status.is_final();
                if out.send(text(&ServerFrame::Job { job_id: id.clone(), data: last })).await.is_err() || done {
                    break;
                }
                let Some(updates) = updates.as_mut() else { break };
                match crate::jobs::next_update(updates).await {
                    Some(info) => last = info,
                    None => break,
                }
            }
        });
        self.follows.insert(job_id, task.abort_handle());
    }

    async fn cancel(&mut self, job_id: String) {
        match service::images::cancel(&self.state, &self.caller, &job_id).await {
            Ok(info) => self.send(&ServerFrame::Job { job_id, data: info }).await,
            Err(err) => self.error(None, Some(job_id), err.into()).await,
        }
    }

    fn busy(&self) -> bool {
        self.replies.len() + self.follows.len() >= MAX_TASKS
    }

    /// Closing: every reply stops before its next token, every follow ends.
    fn end(&mut self) {
        for (_, task) in self.replies.drain().chain(self.follows.drain()) {
            task.abort();
        }
    }

    async fn refuse(&self, reference: Option<String>, job_id: Option<String>, message: &str) {
        let error = ApiError::BadRequest {
            status: axum::http::StatusCode::BAD_REQUEST,
            param: None,
            code: "invalid_frame",
            message: message.to_string(),
        };
        self.error(reference, job_id, error).await
    }

    async fn error(&self, reference: Option<String>, job_id: Option<String>, error: ApiError) {
        error.log_if_internal();
        let (error, _) = error.detail();
        self.send(&ServerFrame::Error { reference, job_id, error }).await
    }

    async fn send(&self, frame: &ServerFrame) {
        let _ = self.out.send(text(frame)).await;
    }
}

fn text(frame: &ServerFrame) -> Message {
    let json = serde_json::to_string(frame).unwrap_or_else(|err| {
        let error = ErrorDetail { message: err.to_string(), kind: "server_error".into(), param: None, code: None };
        serde_json::to_string(&ServerFrame::Error { reference: None, job_id: None, error }).unwrap_or_default()
    });
    Message::Text(json.into())
}

/// Frames a client may send: a bucket of twice the rate per second, refilled continuously.
struct Budget {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new(per_second: u32) -> Budget {
        let per_second = per_second as f64;
        Budget { per_second, tokens: per_second * 2.0, at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        if self.per_second <= 0.0 {
            return true; // no limit
        }
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_second).min(self.per_second * 2.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
