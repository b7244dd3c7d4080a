//! The conversation list: new chat, search over titles and messages, rename, delete.

use crate::{
    api::{delete_conversation, list_conversations, rename_conversation, search_conversations},
    types::{ConversationSummary, SearchHit},
};
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

#[component]
pub fn Sidebar(
    /// The conversation the address names.
    current: Memo<Option<String>>,
    /// Bumped whenever the list may have changed (a turn ended, a rename, a delete).
    version: RwSignal<u32>,
    /// Shown on narrow screens.
    open: RwSignal<bool>,
) -> impl IntoView {
    let list = Resource::new(move || version.get(), |_| list_conversations(None));
    let query = RwSignal::new(String::new());
    let searched = RwSignal::new(String::new());
    let hits = Resource::new(
        move || searched.get(),
        |q| async move {
            if q.trim().is_empty() {
                Ok(None)
            } else {
                search_conversations(q).await.map(Some)
            }
        },
    );
    view! {
        <aside class="sidebar" class:open=move || open.get() aria-label="Conversations">
            <a class="button primary new-chat" href="/" on:click=move |_| open.set(false)>"New chat"</a>
            <form class="search" role="search" on:submit=move |ev| {
                ev.prevent_default();
                searched.set(query.get_untracked());
            }>
                <label class="visually-hidden" for="history-search">"Search conversations"</label>
                <input
                    id="history-search"
                    type="search"
                    placeholder="Search conversations"
                    prop:value=move || query.get()
                    on:input=move |ev| {
                        let value = event_target_value(&ev);
                        if value.is_empty() {
                            searched.set(String::new());
                        }
                        query.set(value);
                    }
                />
            </form>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match hits.await {
                        Ok(Some(results)) => view! { <SearchHits hits=results.hits/> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                        Ok(None) => match list.await {
                            Ok(page) => view! {
                                <ConversationList
                                    conversations=page.conversations
                                    next_offset=page.next_offset
                                    current
                                    version
                                />
                            }
                                .into_any(),
                            Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                        },
                    }
                })}
            </Transition>
        </aside>
    }
}

#[component]
fn SearchHits(hits: Vec<SearchHit>) -> impl IntoView {
    if hits.is_empty() {
        return view! { <p class="muted" data-testid="no-hits">"Nothing found."</p> }.into_any();
    }
    view! {
        <ul class="conversations hits" data-testid="search-hits">
            {hits
                .into_iter()
                .map(|hit| {
                    let snippet = hit
                        .snippet
                        .into_iter()
                        .map(|part| if part.hit {
                            view! { <mark>{part.text}</mark> }.into_any()
                        } else {
                            view! { <span>{part.text}</span> }.into_any()
                        })
                        .collect_view();
                    view! {
                        <li>
                            <a href=format!("/c/{}", hit.conversation_id)>
                                <span class="title">{hit.title}</span>
                                <span class="snippet">{snippet}</span>
                            </a>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

/// The newest conversations, and older ones a page at a time on request.
#[component]
fn ConversationList(
    conversations: Vec<ConversationSummary>,
    /// Where the next page starts, when there are more.
    next_offset: Option<u32>,
    current: Memo<Option<String>>,
    version: RwSignal<u32>,
) -> impl IntoView {
    if conversations.is_empty() {
        return view! { <p class="muted">"No conversations yet."</p> }.into_any();
    }
    let shown: Vec<String> = conversations.iter().map(|c| c.id.clone()).collect();
    let older = RwSignal::new(Vec::<ConversationSummary>::new());
    let next = RwSignal::new(next_offset);
    let loading = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let load_older = move |_| {
        let Some(offset) = next.get_untracked() else { return };
        let shown = shown.clone();
        loading.set(true);
        leptos::task::spawn_local(async move {
            match list_conversations(Some(offset)).await {
                Ok(page) => {
                    // A conversation that moved up meanwhile may come again: show it once.
                    older.update(|list| {
                        for c in page.conversations {
                            if !shown.contains(&c.id) && !list.iter().any(|o| o.id == c.id) {
                                list.push(c);
                            }
                        }
                    });
                    next.set(page.next_offset);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            loading.set(false);
        });
    };
    view! {
        <ul class="conversations" data-testid="conversations">
            {conversations.into_iter().map(|c| view! { <ConversationItem c current version/> }).collect_view()}
            <For each=move || older.get() key=|c| c.id.clone() let:c>
                <ConversationItem c current version/>
            </For>
        </ul>
        <Show when=move || next.get().is_some()>
            <button class="link-button older" type="button" on:click=load_older.clone() disabled=move || loading.get()>
                "Older conversations"
            </button>
        </Show>
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
    }
    .into_any()
}

#[component]
fn ConversationItem(c: ConversationSummary, current: Memo<Option<String>>, version: RwSignal<u32>) -> impl IntoView {
    let id = c.id.clone();
    let editing = RwSignal::new(false);
    let title = RwSignal::new(c.title.clone());
    let error = RwSignal::new(None::<String>);
    let is_current = {
        let id = id.clone();
        move || current.get().as_deref() == Some(id.as_str())
    };
    let rename = {
        let id = id.clone();
        move || {
            let (id, new_title) = (id.clone(), title.get_untracked());
            editing.set(false);
            leptos::task::spawn_local(async move {
                match rename_conversation(id, new_title).await {
                    Ok(_) => version.update(|v| *v += 1),
                    Err(e) => error.set(Some(e.to_string())),
                }
            });
        }
    };
    let navigate = use_navigate();
    let delete = {
        let id = id.clone();
        move |_| {
            let confirmed = {
                #[cfg(feature = "hydrate")]
                {
                    web_sys::window()
                        .and_then(|w| w.confirm_with_message("Delete this conversation? This cannot be undone.").ok())
                        .unwrap_or(false)
                }
                #[cfg(not(feature = "hydrate"))]
                false
            };
            if !confirmed {
                return;
            }
            let id = id.clone();
            let navigate = navigate.clone();
            leptos::task::spawn_local(async move {
                match delete_conversation(id.clone()).await {
                    Ok(()) => {
                        if current.get_untracked().as_deref() == Some(id.as_str()) {
                            navigate("/", Default::default());
                        }
                        version.update(|v| *v += 1);
                    }
                    Err(e) => error.set(Some(e.to_string())),
                }
            });
        }
    };
    view! {
        <li class:current=is_current.clone()>
            <Show
                when=move || editing.get()
                fallback={
                    let id = id.clone();
                    let is_current = is_current.clone();
                    move || {
                        let is_current = is_current.clone();
                        view! {
                        <a href=format!("/c/{id}") aria-current=move || is_current().then_some("page")>
                            <span class="title">{move || title.get()}</span>
                        </a>
                        }
                    }
                }
            >
                <form class="rename" on:submit={
                    let rename = rename.clone();
                    move |ev| {
                        ev.prevent_default();
                        rename();
                    }
                }>
                    <label class="visually-hidden" for=format!("rename-{}", c.id)>"New title"</label>
                    <input id=format!("rename-{}", c.id) type="text" maxlength="200" prop:value=move || title.get()
                        on:input=move |ev| title.set(event_target_value(&ev))/>
                    <button class="link-button" type="submit">"Save"</button>
                </form>
            </Show>
            <div class="item-actions">
                <button class="link-button" type="button" aria-label="Rename" title="Rename"
                    on:click=move |_| editing.set(true)>"✎"</button>
                <button class="link-button" type="button" aria-label="Delete" title="Delete" on:click=delete>"✕"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error">{e}</p> })}
        </li>
    }
}
