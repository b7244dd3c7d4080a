//! The chat page: the conversation list beside the thread and the message box. The first paint
//! is rendered on the server (history readable before the WASM loads); replies stream in over
//! `POST /chat` with server-sent events, read with `fetch` so Stop can abort them.

mod entry;
mod lightbox;
pub use lightbox::Parameters;
mod message;
mod settings;
mod sidebar;
#[cfg(feature = "hydrate")]
mod turn;

use super::load_into;
use crate::{
    api::load_chat,
    types::{ChatData, ChatDefaults, ChatSettings},
};
use entry::{Entry, Role};
use leptos::{html::Textarea, prelude::*};
use leptos_router::{
    hooks::{use_location, use_navigate},
    NavigateOptions,
};
use message::{Actions, Message};
use settings::ChatSettingsPanel;
use sidebar::Sidebar;

/// The conversation id in `/c/{id}`; none on `/`.
fn id_in(path: &str) -> Option<String> {
    path.strip_prefix("/c/").filter(|id| !id.is_empty() && !id.contains('/')).map(str::to_string)
}

/// What the page holds; `Copy`, so every handler can take it.
#[derive(Clone, Copy)]
pub struct Chat {
    pub entries: RwSignal<Vec<Entry>>,
    /// The conversation on screen (set by the stream's first event for a new one).
    pub conversation: RwSignal<Option<String>>,
    /// The end-user id the conversation belongs to.
    pub user_id: RwSignal<String>,
    pub busy: RwSignal<bool>,
    /// The conversation's chat settings (for a new one: what its first message will carry).
    pub settings: RwSignal<ChatSettings>,
    /// What settings left empty come to.
    pub defaults: RwSignal<ChatDefaults>,
    /// Ends the running turn (aborts its request).
    pub stop: StoredValue<Option<Callback<()>>>,
    pub error: RwSignal<Option<String>>,
    pub sidebar_version: RwSignal<u32>,
    /// The conversation the page last loaded (or moved to itself), and a count of loads: the
    /// count makes a load happen even when the id is the one the loader last saw.
    pub load_key: RwSignal<(Option<String>, u32)>,
    /// Move the address to a path without reloading (a new conversation's own URL).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub go: Callback<String>,
    next_key: StoredValue<u64>,
    /// The page's owner: entries and callbacks made in a click handler are made under it, not
    /// under the clicked message, which the same click may remove (regenerate, edit).
    owner: StoredValue<Owner>,
}

impl Chat {
    fn key(&self) -> u64 {
        self.next_key.update_value(|k| *k += 1);
        self.next_key.get_value()
    }

    /// Run `make` under the page's owner, so what it makes lives as long as the page.
    fn in_page<T>(&self, make: impl FnOnce() -> T) -> T {
        self.owner.with_value(|owner| owner.with(make))
    }

    fn adopt(&self, data: ChatData) {
        let (conversation, user_id, messages, settings) = match data.conversation {
            Some(c) => (Some(c.conversation.id), c.conversation.user_id, c.messages, c.conversation.settings),
            None => (None, data.user_id, Vec::new(), ChatSettings::default()),
        };
        load_into(self.conversation, conversation);
        load_into(self.settings, settings);
        load_into(self.defaults, data.defaults);
        load_into(self.user_id, user_id);
        load_into(self.error, None);
        let entries: Vec<Entry> = self.in_page(|| messages.into_iter().map(|m| Entry::stored(self.key(), m)).collect());
        // A picture still queued or being drawn (the page was loaded meanwhile) is followed.
        #[cfg(feature = "hydrate")]
        for entry in &entries {
            if let Some(job) = entry.job.get_untracked().filter(|j| !j.status.is_final()) {
                turn::follow_job(*entry, job.job_id);
            }
        }
        load_into(self.entries, entries);
    }

    /// Send `text`; with `replace`, in place of that user message and everything after it.
    fn send(&self, text: String, replace: Option<Entry>) {
        if self.busy.get_untracked() || text.trim().is_empty() {
            return;
        }
        #[cfg(feature = "hydrate")]
        turn::run(*self, text, replace);
        #[cfg(not(feature = "hydrate"))]
        let _ = replace;
    }
}

#[component]
pub fn ChatPage() -> impl IntoView {
    let location = use_location();
    let path_id = move || id_in(&location.pathname.get());
    let chat = Chat {
        entries: RwSignal::new(Vec::new()),
        conversation: RwSignal::new(None),
        user_id: RwSignal::new(String::new()),
        settings: RwSignal::new(ChatSettings::default()),
        defaults: RwSignal::new(ChatDefaults::default()),
        // The footer's "Generating" is this very signal.
        busy: use_context::<super::status::Activity>().map_or_else(|| RwSignal::new(false), |a| a.generating),
        stop: StoredValue::new(None),
        error: RwSignal::new(None),
        sidebar_version: RwSignal::new(0),
        load_key: RwSignal::new((id_in(&location.pathname.get_untracked()), 0)),
        go: {
            let navigate = use_navigate();
            Callback::new(move |path: String| navigate(&path, NavigateOptions { replace: true, ..Default::default() }))
        },
        next_key: StoredValue::new(0),
        owner: StoredValue::new(Owner::current().expect("the chat page renders inside the app")),
    };

    // Loads what the address names; not when the page itself moved to a conversation it just
    // started (its messages are already on screen).
    let load_key = chat.load_key;
    Effect::new(move |_| {
        let id = path_id();
        if id != chat.conversation.get_untracked() && load_key.with_untracked(|(key, _)| *key != id) {
            if let Some(stop) = chat.stop.get_value() {
                stop.run(());
            }
            load_key.update(|(key, loads)| {
                *key = id;
                *loads += 1;
            });
        }
    });
    let data = Resource::new(move || load_key.get(), |(id, _)| load_chat(id));
    // Leaving the page ends a running reply, as Stop does.
    on_cleanup(move || {
        if let Some(stop) = chat.stop.try_get_value().flatten() {
            stop.run(());
        }
    });
    // The list marks what the address names: fixed while the server renders (so no part of the
    // page re-renders there), and in the browser it moves as soon as the address does.
    let on_screen = Memo::new(move |_| path_id());
    let sidebar_open = RwSignal::new(false);
    // On a phone the list covers the thread: moving to a conversation closes it.
    Effect::new(move |_| {
        location.pathname.track();
        sidebar_open.set(false);
    });

    view! {
        <div class="chat-layout">
            <Sidebar current=on_screen version=chat.sidebar_version open=sidebar_open/>
            <section class="chat-main" aria-label="Chat">
                <button class="button sidebar-toggle" type="button" aria-expanded=move || sidebar_open.get().to_string()
                    on:click=move |_| sidebar_open.update(|o| *o = !*o)>"Conversations"</button>
                <Transition fallback=|| view! { <p class="muted">"Loading the conversation…"</p> }>
                    {move || Suspend::new(async move {
                        match data.await {
                            Ok(d) => {
                                chat.adopt(d);
                                view! { <Thread chat/> }.into_any()
                            }
                            Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                        }
                    })}
                </Transition>
                <ChatSettingsPanel chat/>
                <Composer chat/>
            </section>
        </div>
    }
}

#[component]
fn Thread(chat: Chat) -> impl IntoView {
    let resend = Callback::new(move |(entry, text): (Entry, String)| {
        let entries = chat.entries.get_untracked();
        let Some(at) = entries.iter().position(|e| e.key == entry.key) else { return };
        // Regenerate: the user message before this reply, sent again as it was.
        let (user, text) = match entry.role {
            Role::User => (entry, text),
            Role::Assistant => match entries[..at].iter().rev().find(|e| e.role == Role::User) {
                Some(user) => (*user, user.content.get_untracked()),
                None => return,
            },
        };
        chat.send(text, Some(user));
    });
    let last_user = move || chat.entries.with(|es| es.iter().rev().find(|e| e.role == Role::User).map(|e| e.key));
    let last = move || chat.entries.with(|es| es.last().map(|e| e.key));
    let thread = NodeRef::<leptos::html::Div>::new();
    // Follow a growing reply, unless the reader scrolled up to read something else.
    Effect::new(move |_| {
        chat.entries.with(|es| es.last().map(|e| (e.content.track(), e.reasoning.track(), e.job.track())));
        if let Some(el) = thread.get() {
            if el.scroll_height() - el.scroll_top() - el.client_height() < 120 {
                el.set_scroll_top(el.scroll_height());
            }
        }
    });
    view! {
        <div class="thread" data-testid="thread" node_ref=thread>
            <Show when=move || chat.entries.with(Vec::is_empty)>
                <div class="empty-thread">
                    <h2>"What shall we make?"</h2>
                    <p class="muted">
                        "Ask anything. Ask for a picture, or start with " <code>"/imagine"</code>
                        " to draw without a reply."
                    </p>
                </div>
            </Show>
            <For each=move || chat.entries.get() key=|e| e.key let:entry>
                {
                    let key = entry.key;
                    let is_last = Signal::derive(move || {
                        !chat.busy.get()
                            && match entry.role {
                                Role::User => last_user() == Some(key),
                                Role::Assistant => last() == Some(key),
                            }
                    });
                    view! { <Message entry actions=Actions { resend, is_last }/> }
                }
            </For>
            {move || chat.error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </div>
    }
}

#[component]
fn Composer(chat: Chat) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let area = NodeRef::<Textarea>::new();
    let submit = move || {
        let message = text.get_untracked();
        if !message.trim().is_empty() && !chat.busy.get_untracked() {
            text.set(String::new());
            chat.send(message, None);
        }
    };
    view! {
        <form class="composer" on:submit=move |ev| {
            ev.prevent_default();
            submit();
        }>
            <crate::components::templates::Templates text/>
            <label class="visually-hidden" for="message">"Message"</label>
            <textarea
                id="message"
                node_ref=area
                rows="2"
                placeholder="Message Duet (Enter sends, Shift+Enter for a new line)"
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
                on:keydown=move |ev| {
                    // Enter sends; Shift+Enter (or Enter while an input method composes) is a new line.
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        submit();
                    }
                }
            ></textarea>
            <Show
                when=move || chat.busy.get()
                fallback=move || view! {
                    <button class="button primary" type="submit" disabled=move || text.with(|t| t.trim().is_empty())>
                        "Send"
                    </button>
                }
            >
                <button class="button danger" type="button" on:click=move |_| {
                    if let Some(stop) = chat.stop.get_value() {
                        stop.run(());
                    }
                }>"Stop"</button>
            </Show>
        </form>
    }
}
