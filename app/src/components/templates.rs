//! Saved prompt snippets beside a text box: click one to add it to the text, or drag it into the
//! box (the browser drops it where the pointer is); save the box's text as a new one.

use crate::types::PromptTemplate;
use leptos::prelude::*;

/// `text` is the box's content: clicking a template appends to it, saving reads it.
#[component]
pub fn Templates(text: RwSignal<String>) -> impl IntoView {
    let open = RwSignal::new(false);
    let list = RwSignal::new(None::<Vec<PromptTemplate>>);
    let error = RwSignal::new(None::<String>);
    let load = move || {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::browser::get_json::<Vec<PromptTemplate>>("/templates").await {
                Ok(l) => list.set(Some(l)),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let toggle = move |_| {
        open.update(|o| *o = !*o);
        if open.get_untracked() && list.with_untracked(Option::is_none) {
            load();
        }
    };
    let insert = move |body: String| {
        text.update(|t| {
            if !t.is_empty() && !t.ends_with(char::is_whitespace) {
                t.push(' ');
            }
            t.push_str(&body);
        })
    };
    let save = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let body = text.get_untracked();
            if body.trim().is_empty() {
                error.set(Some("Write something in the box first, then save it.".into()));
                return;
            }
            let Some(name) = web_sys::window()
                .and_then(|w| w.prompt_with_message("A name for this template").ok().flatten())
                .filter(|n| !n.trim().is_empty())
            else {
                return;
            };
            leptos::task::spawn_local(async move {
                let new = crate::types::NewPromptTemplate { name: Some(name), body: Some(body) };
                match crate::browser::send_json::<PromptTemplate>("POST", "/templates", &new).await {
                    Ok(t) => {
                        list.update(|l| l.get_or_insert_with(Vec::new).push(t));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        }
    };
    let remove = move |id: String| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::browser::delete(&format!("/templates/{id}")).await {
                Ok(()) => list.update(|l| {
                    if let Some(l) = l {
                        l.retain(|t| t.id != id)
                    }
                }),
                Err(e) => error.set(Some(e)),
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = id;
    };
    view! {
        <div class="templates">
            <button class="link-button" type="button" aria-expanded=move || open.get().to_string() on:click=toggle>
                "Templates"
            </button>
            <Show when=move || open.get()>
                <div class="template-panel" data-testid="templates">
                    {move || match list.get() {
                        None => view! { <span class="muted">"Loading…"</span> }.into_any(),
                        Some(l) if l.is_empty() => view! {
                            <span class="muted">"No templates yet: write something, then save it."</span>
                        }.into_any(),
                        Some(l) => l.into_iter().map(|t| {
                            let (id, body, drag_body) = (t.id.clone(), t.body.clone(), t.body.clone());
                            view! {
                                <span class="chip">
                                    <button type="button" class="chip-insert" draggable="true" title=t.body.clone()
                                        on:click=move |_| insert(body.clone())
                                        on:dragstart=move |ev| {
                                            #[cfg(feature = "hydrate")]
                                            if let Some(dt) = ev.data_transfer() {
                                                let _ = dt.set_data("text/plain", &drag_body);
                                            }
                                            #[cfg(not(feature = "hydrate"))]
                                            let _ = (ev, &drag_body);
                                        }>
                                        {t.name.clone()}
                                    </button>
                                    <button type="button" class="chip-remove" aria-label=format!("Delete template {}", t.name)
                                        on:click=move |_| remove(id.clone())>"✕"</button>
                                </span>
                            }
                        }).collect_view().into_any(),
                    }}
                    <button class="link-button" type="button" on:click=save>"Save the text as a template"</button>
                    {move || error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
                </div>
            </Show>
        </div>
    }
}
