//! One message as the thread shows it: signals, so a streaming reply grows in place and the
//! page never rebuilds what is already on screen.

use crate::types::{ChatEvent, JobInfo, JobStatus, MessageView};
use leptos::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Clone, Copy)]
pub struct Entry {
    /// Stable for the page's life (the list's key); the server id arrives later.
    pub key: u64,
    pub role: Role,
    pub id: RwSignal<Option<String>>,
    pub content: RwSignal<String>,
    pub reasoning: RwSignal<String>,
    /// The reasoning is still streaming.
    pub thinking: RwSignal<bool>,
    /// How long the model thought, when this page watched it.
    pub thought_ms: RwSignal<Option<f64>>,
    pub images: RwSignal<Vec<String>>,
    pub job: RwSignal<Option<JobInfo>>,
    pub finish: RwSignal<Option<String>>,
    pub error: RwSignal<Option<String>>,
    pub streaming: RwSignal<bool>,
    /// While the turn waits for the chat engine: its place in line, as a sentence.
    pub queued: RwSignal<Option<String>>,
}

// `apply` runs only in the browser (and the tests).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl Entry {
    pub fn new(key: u64, role: Role, content: &str) -> Entry {
        Entry {
            key,
            role,
            id: RwSignal::new(None),
            content: RwSignal::new(content.to_string()),
            reasoning: RwSignal::new(String::new()),
            thinking: RwSignal::new(false),
            thought_ms: RwSignal::new(None),
            images: RwSignal::new(Vec::new()),
            job: RwSignal::new(None),
            finish: RwSignal::new(None),
            error: RwSignal::new(None),
            streaming: RwSignal::new(false),
            queued: RwSignal::new(None),
        }
    }

    pub fn stored(key: u64, m: MessageView) -> Entry {
        let role = if m.role == "user" { Role::User } else { Role::Assistant };
        let entry = Entry::new(key, role, &m.content);
        entry.id.set(Some(m.id));
        entry.reasoning.set(m.reasoning.unwrap_or_default());
        entry.images.set(m.image_ids);
        entry.job.set(m.image_job);
        entry.finish.set(m.finish_reason);
        entry.thought_ms.set(m.thought_ms.map(|ms| ms as f64));
        entry
    }

    /// Apply one event of this reply's stream; `elapsed_ms` is the time since the turn began.
    pub fn apply(&self, event: &ChatEvent, elapsed_ms: f64) {
        match event {
            ChatEvent::Queued { position, waiting, eta_s } => {
                self.queued.set(Some(queue_line(*position, *waiting, *eta_s)))
            }
            ChatEvent::Start { message_id, .. } => {
                self.queued.set(None);
                self.id.set(Some(message_id.clone()));
                self.thinking.set(true);
            }
            ChatEvent::Reasoning { text } => self.reasoning.update(|r| r.push_str(text)),
            ChatEvent::Answer { text } => {
                self.stop_thinking(elapsed_ms);
                self.content.update(|c| c.push_str(text));
            }
            ChatEvent::Reply { reply, reasoning, finish_reason } => {
                self.stop_thinking(elapsed_ms);
                self.content.set(reply.clone());
                self.reasoning.set(reasoning.clone());
                self.finish.set(Some(finish_reason.clone()));
            }
            ChatEvent::ImageJob { job } => {
                if job.status == JobStatus::Done {
                    let id = job.job_id.clone();
                    self.images.update(|ids| {
                        if !ids.contains(&id) {
                            ids.push(id)
                        }
                    });
                }
                self.job.set(Some(job.clone()));
            }
            ChatEvent::Done { response } => {
                self.stop_thinking(elapsed_ms);
                self.finish.set(Some(response.finish_reason.clone()));
                self.streaming.set(false);
            }
            ChatEvent::Error { error } => {
                self.queued.set(None);
                self.stop_thinking(elapsed_ms);
                self.error.set(Some(error.message.clone()));
                self.streaming.set(false);
            }
        }
    }

    fn stop_thinking(&self, elapsed_ms: f64) {
        if self.thinking.get_untracked() {
            self.thinking.set(false);
            if !self.reasoning.with_untracked(String::is_empty) {
                self.thought_ms.set(Some(elapsed_ms));
            }
        }
    }
}

/// "Waiting for the model: 3rd in line of 12, about 40 s".
pub fn queue_line(position: u32, waiting: u32, eta_s: Option<u64>) -> String {
    let place = match position {
        1 => "next in line".to_string(),
        n => format!("{n}{} in line", ordinal_suffix(n)),
    };
    let eta = match eta_s {
        Some(s) if s >= 90 => format!(", about {} min", s.div_ceil(60)),
        Some(s) => format!(", about {s} s"),
        None => String::new(),
    };
    format!("Waiting for the model: {place} of {waiting}{eta}")
}

fn ordinal_suffix(n: u32) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ChatResponse, ErrorDetail};

    #[test]
    fn a_streamed_reply_thinks_then_answers_then_finishes() {
        let owner = Owner::new();
        owner.set();
        let e = Entry::new(1, Role::Assistant, "");
        e.streaming.set(true);
        let start =
            ChatEvent::Start { conversation_id: "c".into(), message_id: "m".into(), model: "x".into(), mock: true };
        e.apply(&start, 0.0);
        assert_eq!((e.id.get_untracked().as_deref(), e.thinking.get_untracked()), (Some("m"), true));
        e.apply(&ChatEvent::Reasoning { text: "hmm, ".into() }, 10.0);
        e.apply(&ChatEvent::Reasoning { text: "yes".into() }, 20.0);
        assert!(e.thinking.get_untracked(), "still thinking until the answer starts");
        e.apply(&ChatEvent::Answer { text: "Hi".into() }, 1500.0);
        assert!(!e.thinking.get_untracked(), "the answer folds the thinking block");
        assert_eq!(e.thought_ms.get_untracked(), Some(1500.0));
        e.apply(&ChatEvent::Answer { text: " there".into() }, 1600.0);
        assert_eq!(e.content.get_untracked(), "Hi there");
        assert_eq!(e.reasoning.get_untracked(), "hmm, yes");
        let response = ChatResponse {
            conversation_id: "c".into(),
            message_id: "m".into(),
            reply: "Hi there".into(),
            reasoning: "hmm, yes".into(),
            image_job: None,
            usage: Default::default(),
            timings: Default::default(),
            model: "x".into(),
            mock: true,
            finish_reason: "eos".into(),
            provider: "local".into(),
        };
        e.apply(&ChatEvent::Done { response }, 1700.0);
        assert!(!e.streaming.get_untracked());
        assert_eq!(e.finish.get_untracked().as_deref(), Some("eos"));
        assert_eq!(e.thought_ms.get_untracked(), Some(1500.0), "measured once");
    }

    #[test]
    fn no_reasoning_means_no_thinking_time_and_errors_end_the_stream() {
        let owner = Owner::new();
        owner.set();
        let e = Entry::new(1, Role::Assistant, "");
        e.streaming.set(true);
        e.thinking.set(true);
        e.apply(&ChatEvent::Answer { text: "Hi".into() }, 5.0);
        assert_eq!(e.thought_ms.get_untracked(), None);
        let error = ErrorDetail { message: "boom".into(), kind: "server_error".into(), param: None, code: None };
        e.apply(&ChatEvent::Error { error }, 6.0);
        assert_eq!((e.error.get_untracked().as_deref(), e.streaming.get_untracked()), (Some("boom"), false));
    }

    #[test]
    fn a_queued_turn_says_its_place_until_it_starts() {
        let owner = Owner::new();
        owner.set();
        let e = Entry::new(1, Role::Assistant, "");
        e.apply(&ChatEvent::Queued { position: 3, waiting: 12, eta_s: Some(40) }, 0.0);
        assert_eq!(e.queued.get_untracked().as_deref(), Some("Waiting for the model: 3rd in line of 12, about 40 s"));
        e.apply(&ChatEvent::Queued { position: 1, waiting: 2, eta_s: None }, 0.0);
        assert_eq!(e.queued.get_untracked().as_deref(), Some("Waiting for the model: next in line of 2"));
        let start =
            ChatEvent::Start { conversation_id: "c".into(), message_id: "m".into(), model: "x".into(), mock: true };
        e.apply(&start, 10.0);
        assert_eq!(e.queued.get_untracked(), None);
        assert_eq!(queue_line(12, 40, Some(200)), "Waiting for the model: 12th in line of 40, about 4 min");
        assert_eq!(queue_line(22, 40, Some(5)), "Waiting for the model: 22nd in line of 40, about 5 s");
    }
}
