//! The gallery: every picture of the account, newest first, with prompt search and a date range.
//! The address carries the filter (`/pictures?q=&from=&to=`), so the first page is rendered on the
//! server and a search works without the WASM. Select several to download as a zip; open one to
//! see everything.

mod viewer;

use crate::{
    api::load_gallery,
    types::{GalleryFilterForm, GalleryImage, GalleryPage as Page},
};
use leptos::prelude::*;
use leptos_router::{components::Form, hooks::use_query_map};
use viewer::Viewer;

fn filter_from_address() -> Memo<GalleryFilterForm> {
    let query = use_query_map();
    Memo::new(move |_| {
        query.with(|q| GalleryFilterForm {
            q: q.get("q").filter(|v| !v.is_empty()),
            from: q.get("from").filter(|v| !v.is_empty()),
            to: q.get("to").filter(|v| !v.is_empty()),
            offset: None,
        })
    })
}

#[component]
pub fn GalleryPage() -> impl IntoView {
    let filter = filter_from_address();
    let first = Resource::new(move || filter.get(), load_gallery);
    let selected = RwSignal::new(Vec::<String>::new());
    let open = RwSignal::new(None::<GalleryImage>);
    let removed = RwSignal::new(Vec::<String>::new());
    let error = RwSignal::new(None::<String>);
    let download_zip = move |_| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let ids = selected.get_untracked();
            let body = crate::types::ZipRequest { ids: Some(ids) };
            if let Err(e) = crate::browser::download_post("/gallery/zip", &body, "duet-images.zip").await {
                error.set(Some(e));
            }
        });
    };
    let value = move |pick: fn(&GalleryFilterForm) -> Option<String>| move || pick(&filter.get()).unwrap_or_default();

    view! {
        <section class="page gallery" aria-labelledby="gallery-heading">
            <div class="panel-head">
                <h2 id="gallery-heading">"Gallery"</h2>
            </div>
            <Form method="GET" action="" attr:class="filters" attr:role="search">
                <label>"Prompt words" <input type="search" name="q" prop:value=value(|f| f.q.clone())/></label>
                <label>"From" <input type="date" name="from" prop:value=value(|f| f.from.clone())/></label>
                <label>"To" <input type="date" name="to" prop:value=value(|f| f.to.clone())/></label>
                <button class="button" type="submit">"Search"</button>
            </Form>
            <div class="selection-bar" data-testid="selection-bar">
                <span>{move || format!("{} selected", selected.with(Vec::len))}</span>
                <button class="button" type="button" disabled=move || selected.with(Vec::is_empty) on:click=download_zip>
                    "Download as zip"
                </button>
                <button class="button" type="button" disabled=move || selected.with(Vec::is_empty)
                    on:click=move |_| selected.set(Vec::new())>"Clear selection"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <Transition fallback=|| view! { <p class="muted">"Loading pictures…"</p> }>
                {move || Suspend::new(async move {
                    match first.await {
                        Ok(page) => view! { <Results page filter selected open removed error/> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
            <Viewer open removed/>
        </section>
    }
    .into_any()
}

/// One search's pictures: its first page, the pages "More" adds, and the "More" button.
///
/// Made inside the first page's `Suspend`, so a new search starts it afresh, and the page's data
/// is read from the response rather than written into signals of the page around it: on the
/// server such a write raced the end of the render (1 render in ~400 panicked on a disposed
/// signal and never finished).
#[component]
fn Results(
    page: Page,
    filter: Memo<GalleryFilterForm>,
    selected: RwSignal<Vec<String>>,
    open: RwSignal<Option<GalleryImage>>,
    removed: RwSignal<Vec<String>>,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let first_images = page.images;
    let more = RwSignal::new(Vec::<GalleryImage>::new());
    let next_offset = RwSignal::new(page.next_offset);
    let images = Signal::derive(move || {
        let hidden = removed.get();
        first_images.iter().cloned().chain(more.get()).filter(|i| !hidden.contains(&i.id)).collect::<Vec<_>>()
    });
    let load_more = move |_| {
        let Some(offset) = next_offset.get_untracked() else { return };
        let filter = GalleryFilterForm { offset: Some(offset), ..filter.get_untracked() };
        leptos::task::spawn_local(async move {
            match load_gallery(filter).await {
                Ok(page) => {
                    more.update(|m| m.extend(page.images));
                    next_offset.set(page.next_offset);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <Grid images selected open/>
        <Show when=move || next_offset.get().is_some()>
            <button class="button" type="button" on:click=load_more>"More"</button>
        </Show>
    }
}

#[component]
fn Grid(
    images: Signal<Vec<GalleryImage>>,
    selected: RwSignal<Vec<String>>,
    open: RwSignal<Option<GalleryImage>>,
) -> impl IntoView {
    view! {
        <Show when=move || !images.with(Vec::is_empty) fallback=|| view! {
            <p class="muted" data-testid="gallery-empty">"No pictures here yet. Ask for one in the chat."</p>
        }>
            <ul class="grid" data-testid="gallery-grid">
                <For each=move || images.get() key=|i| i.id.clone() let:image>
                    {
                        let id = image.id.clone();
                        let checked = {
                            let id = id.clone();
                            move || selected.with(|s| s.contains(&id))
                        };
                        let toggle = {
                            let id = id.clone();
                            move |_| selected.update(|s| match s.iter().position(|x| *x == id) {
                                Some(at) => {
                                    s.remove(at);
                                }
                                None => s.push(id.clone()),
                            })
                        };
                        let prompt = image.parameters.prompt.clone();
                        let src = image.image_url.clone();
                        let show = image.clone();
                        view! {
                            <li class="tile" data-testid="gallery-item">
                                <button class="thumb" type="button" on:click=move |_| open.set(Some(show.clone()))
                                    aria-label=format!("Open: {prompt}")>
                                    <img src=src alt=image.parameters.prompt.clone() loading="lazy"/>
                                </button>
                                <label class="select">
                                    <input type="checkbox" prop:checked=checked on:change=toggle/>
                                    <span class="visually-hidden">{format!("Select: {}", image.parameters.prompt)}</span>
                                    <span class="caption">{image.parameters.prompt.clone()}</span>
                                </label>
                            </li>
                        }
                    }
                </For>
            </ul>
        </Show>
    }
}
