//! One chat turn in the browser: show the user's message and an empty reply, stream `POST /chat`
//! into the reply, then learn the stored ids (for edit and regenerate) and refresh the list.

use super::{
    entry::{Entry, Role},
    Chat,
};
use crate::{
    api::load_chat,
    browser,
    types::{ChatEvent, ChatRequest, ChatSettings, JobInfo},
    ui::sse::SseReader,
};
use leptos::prelude::*;

pub fn run(chat: Chat, text: String, replace: Option<Entry>) {
    let Some(abort) = browser::new_abort() else {
        chat.error.set(Some("this browser cannot stream replies (no AbortController)".into()));
        return;
    };
    let replace_from = replace.and_then(|e| e.id.get_untracked());
    if let Some(entry) = replace {
        chat.entries.update(|es| {
            if let Some(at) = es.iter().position(|e| e.key == entry.key) {
                es.truncate(at);
            }
        });
    }
    let (user, reply) =
        chat.in_page(|| (Entry::new(chat.key(), Role::User, &text), Entry::new(chat.key(), Role::Assistant, "")));
    reply.streaming.set(true);
    chat.entries.update(|es| es.extend([user, reply]));
    chat.busy.set(true);
    chat.error.set(None);
    let stop = abort.clone();
    chat.stop.set_value(Some(chat.in_page(|| Callback::new(move |()| stop.abort()))));

    let request = ChatRequest {
        user_id: Some(chat.user_id.get_untracked()),
        message: Some(text),
        conversation_id: chat.conversation.get_untracked(),
        replace_from,
        stream: true,
        // A new conversation keeps the settings chosen before its first message.
        settings: chat
            .conversation
            .get_untracked()
            .is_none()
            .then(|| chat.settings.get_untracked())
            .filter(|s| *s != ChatSettings::default()),
        ..Default::default()
    };
    let body = serde_json::to_string(&request).unwrap_or_default();
    let started = browser::now_ms();
    leptos::task::spawn_local(async move {
        let mut reader = SseReader::default();
        let streamed = browser::stream("POST", "/chat", Some(&body), &abort, |bytes| {
            for event in reader.push(bytes) {
                let Ok(event) = serde_json::from_str::<ChatEvent>(&event.data) else { continue };
                if let ChatEvent::Start { conversation_id, .. } = &event {
                    if chat.conversation.get_untracked().as_ref() != Some(conversation_id) {
                        chat.conversation.set(Some(conversation_id.clone()));
                        // The address moves to the new conversation; nothing needs loading.
                        chat.load_key.update_untracked(|(key, _)| *key = Some(conversation_id.clone()));
                        chat.go.run(format!("/c/{conversation_id}"));
                    }
                }
                reply.apply(&event, browser::now_ms() - started);
            }
        })
        .await;
        let stopped = abort.signal().aborted();
        reply.thinking.set(false);
        reply.queued.set(None);
        reply.streaming.set(false);
        match streamed {
            Err(_) if stopped => reply.finish.set(Some("cancelled".into())),
            Err(message) => reply.error.set(Some(message)),
            Ok(()) => {}
        }
        chat.busy.set(false);
        chat.stop.set_value(None);
        learn_ids(chat).await;
        chat.sidebar_version.update(|v| *v += 1);
    });
}

/// Follow a stored reply's picture that is still queued or being drawn: its position and steps,
/// then the picture. Stops when the job ends, or when the page that showed the reply is gone.
pub fn follow_job(entry: Entry, job_id: String) {
    let Some(abort) = browser::new_abort() else { return };
    leptos::task::spawn_local(async move {
        let mut reader = SseReader::default();
        let url = format!("/jobs/{job_id}/events");
        let _ = browser::stream("GET", &url, None, &abort, |bytes| {
            for event in reader.push(bytes) {
                let Ok(job) = serde_json::from_str::<JobInfo>(&event.data) else { continue };
                if entry.job.is_disposed() {
                    abort.abort();
                    return;
                }
                entry.apply(&ChatEvent::ImageJob { job }, 0.0);
            }
        })
        .await;
    });
}

/// The stored messages' ids, position by position (a stopped reply may be stored a moment later;
/// its user message, which edit and regenerate need, is stored before the model runs).
async fn learn_ids(chat: Chat) {
    let Some(id) = chat.conversation.get_untracked() else { return };
    let Ok(data) = load_chat(Some(id)).await else { return };
    let Some(detail) = data.conversation else { return };
    let entries = chat.entries.get_untracked();
    for (entry, message) in entries.iter().zip(detail.messages) {
        let role = if message.role == "user" { Role::User } else { Role::Assistant };
        if role != entry.role {
            break;
        }
        if entry.id.get_untracked().as_deref() != Some(message.id.as_str()) {
            entry.id.set(Some(message.id));
        }
    }
}
