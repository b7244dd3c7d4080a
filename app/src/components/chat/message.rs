//! One message: the user's text, or the model's reply with its folded reasoning, Markdown answer,
//! image job progress, picture and actions.

use super::{
    entry::{Entry, Role},
    lightbox::Lightbox,
};
use crate::{
    components::copy::CopyButton,
    types::{JobInfo, JobStatus},
    ui::markdown,
};
use leptos::prelude::*;

/// What the buttons under a message do; the page decides which apply.
#[derive(Clone, Copy)]
pub struct Actions {
    /// Send this (last) user message again in place of the last turn, or edited.
    pub resend: Callback<(Entry, String)>,
    /// This is the last turn and nothing is generating: regenerate / edit are offered.
    pub is_last: Signal<bool>,
}

#[component]
pub fn Message(entry: Entry, actions: Actions) -> impl IntoView {
    match entry.role {
        Role::User => view! { <UserMessage entry actions/> }.into_any(),
        Role::Assistant => view! { <Reply entry actions/> }.into_any(),
    }
}

#[component]
fn UserMessage(entry: Entry, actions: Actions) -> impl IntoView {
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(String::new());
    let save = move || {
        let text = draft.get_untracked();
        if !text.trim().is_empty() {
            editing.set(false);
            actions.resend.run((entry, text));
        }
    };
    view! {
        <article class="message user" data-testid="user-message">
            <Show
                when=move || editing.get()
                fallback=move || view! { <p class="user-text">{move || entry.content.get()}</p> }
            >
                <form class="edit-form" on:submit=move |ev| {
                    ev.prevent_default();
                    save();
                }>
                    <label class="visually-hidden" for=format!("edit-{}", entry.key)>"Edit your message"</label>
                    <textarea
                        id=format!("edit-{}", entry.key)
                        rows="3"
                        prop:value=move || draft.get()
                        on:input=move |ev| draft.set(event_target_value(&ev))
                    ></textarea>
                    <div class="row">
                        <button class="button primary" type="submit">"Save and send"</button>
                        <button class="button" type="button" on:click=move |_| editing.set(false)>"Cancel"</button>
                    </div>
                </form>
            </Show>
            <div class="message-actions">
                <CopyButton text=entry.content/>
                <Show when=move || actions.is_last.get() && !editing.get()>
                    <button class="link-button" type="button" on:click=move |_| {
                        draft.set(entry.content.get_untracked());
                        editing.set(true);
                    }>"Edit"</button>
                </Show>
            </div>
        </article>
    }
}

#[component]
fn Thinking(entry: Entry) -> impl IntoView {
    let summary = move || match (entry.thinking.get(), entry.thought_ms.get()) {
        (true, _) => "Thinking…".to_string(),
        (false, Some(ms)) => format!("Thought for {:.1} s", ms / 1000.0),
        (false, None) => "Thoughts".to_string(),
    };
    view! {
        <Show when=move || !entry.reasoning.with(String::is_empty)>
            // Open while the model thinks; folds itself when the answer starts.
            <details class="thinking" prop:open=move || entry.thinking.get() data-testid="thinking">
                <summary>{summary}</summary>
                <div class="reasoning">{move || entry.reasoning.get()}</div>
            </details>
        </Show>
    }
}

fn job_line(job: &JobInfo) -> String {
    match job.status {
        JobStatus::Queued => match job.position {
            Some(0) | None => "Queued: next".to_string(),
            Some(n) => format!("Queued: {n} ahead"),
        },
        JobStatus::Running => format!("Drawing: step {} of {}", job.step, job.total_steps),
        JobStatus::Done => "Done".to_string(),
        JobStatus::Failed => format!("The picture failed: {}", job.error.clone().unwrap_or_default()),
        JobStatus::Cancelled => "The picture was cancelled".to_string(),
    }
}

#[component]
fn JobProgress(entry: Entry) -> impl IntoView {
    let pending = move || entry.job.get().filter(|j| j.status != JobStatus::Done);
    move || {
        pending().map(|job| {
            let line = job_line(&job);
            let failed = matches!(job.status, JobStatus::Failed | JobStatus::Cancelled);
            view! {
                <div class="job" data-testid="image-job" data-status=format!("{:?}", job.status).to_lowercase()>
                    <p class=if failed { "error" } else { "muted" }>{line}</p>
                    <progress max=job.total_steps.max(1) value=job.step aria-label="Picture progress"></progress>
                </div>
            }
        })
    }
}

#[component]
fn Reply(entry: Entry, actions: Actions) -> impl IntoView {
    let html = move || markdown::to_html(&entry.content.get());
    let regenerate = move |_| actions.resend.run((entry, String::new()));
    let cut_short = move || match entry.finish.get().as_deref() {
        Some("cancelled") => Some("Stopped."),
        Some("interrupted") => {
            Some("Interrupted: the server stopped while writing this reply. Regenerate to try again.")
        }
        Some("length") => Some("Cut off at the token limit."),
        Some("context_limit") => Some("Cut off: the conversation filled the model's context."),
        _ => None,
    };
    view! {
        <article class="message assistant" data-testid="assistant-message" aria-busy=move || entry.streaming.get().to_string()>
            <Thinking entry/>
            <div class="answer markdown" inner_html=html></div>
            {move || entry.queued.get().map(|line| view! { <p class="muted queued" data-testid="queued" role="status">{line}</p> })}
            <Show when=move || {
                entry.streaming.get() && entry.content.with(String::is_empty) && !entry.thinking.get()
                    && entry.queued.with(Option::is_none)
            }>
                <p class="muted typing">"…"</p>
            </Show>
            <JobProgress entry/>
            <div class="pictures">
                <For each=move || entry.images.get() key=|id| id.clone() let:id>
                    <Lightbox image_id=id/>
                </For>
            </div>
            {move || cut_short().map(|note| view! { <p class="muted note">{note}</p> })}
            {move || entry.error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <Show when=move || !entry.streaming.get()>
                <div class="message-actions">
                    <CopyButton text=entry.content/>
                    <Show when=move || actions.is_last.get()>
                        <button class="link-button" type="button" on:click=regenerate>"Regenerate"</button>
                    </Show>
                </div>
            </Show>
        </article>
    }
}
