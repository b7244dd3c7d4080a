//! One picture, full size, with everything it was made with and what can be done with it:
//! download, make again in the studio, open its conversation, share links, delete.

use crate::{
    components::{chat::Parameters, copy::CopyButton},
    types::{GalleryImage, ShareInfo},
};
use leptos::{html::Dialog, prelude::*};

#[component]
pub fn Viewer(open: RwSignal<Option<GalleryImage>>, removed: RwSignal<Vec<String>>) -> impl IntoView {
    let dialog = NodeRef::<Dialog>::new();
    Effect::new(move |_| {
        if let Some(d) = dialog.get() {
            match open.get() {
                Some(_) if !d.open() => {
                    let _ = d.show_modal();
                }
                None if d.open() => d.close(),
                _ => {}
            }
        }
    });
    view! {
        <dialog class="lightbox" node_ref=dialog aria-label="Picture" on:close=move |_| open.set(None)>
            {move || open.get().map(|image| view! { <Details image open removed/> })}
        </dialog>
    }
}

#[component]
fn Details(image: GalleryImage, open: RwSignal<Option<GalleryImage>>, removed: RwSignal<Vec<String>>) -> impl IntoView {
    let id = image.id.clone();
    let error = RwSignal::new(None::<String>);
    let delete = {
        let id = id.clone();
        move |_| {
            #[cfg(feature = "hydrate")]
            {
                let sure = web_sys::window()
                    .and_then(|w| w.confirm_with_message("Delete this picture? Its share links stop working.").ok())
                    .unwrap_or(false);
                if !sure {
                    return;
                }
                let id = id.clone();
                leptos::task::spawn_local(async move {
                    match crate::browser::delete(&format!("/gallery/{id}")).await {
                        Ok(()) => {
                            removed.update(|r| r.push(id));
                            open.set(None);
                        }
                        Err(e) => error.set(Some(e)),
                    }
                });
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = (&id, removed, open);
        }
    };
    view! {
        <img src=image.image_url.clone() alt=image.parameters.prompt.clone()/>
        <div class="lightbox-side">
            <Parameters image=image.clone()/>
            <div class="row">
                <a class="button" href=format!("/gallery/{id}/download") download>"Download"</a>
                <a class="button" href=format!("/studio?from={id}")>"Reuse parameters"</a>
                {image.conversation_id.clone().map(|c| view! {
                    <a class="button" href=format!("/c/{c}")>"Open the conversation"</a>
                })}
            </div>
            <Shares image_id=id.clone()/>
            <div class="row">
                <button class="button danger" type="button" on:click=delete>"Delete"</button>
                <button class="button" type="button" on:click=move |_| open.set(None)>"Close"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </div>
    }
}

/// The lifetimes the share form offers; none beyond what the server allows (`SHARE_SECS`).
const SHARE_LIFETIMES: [(u64, &str); 5] =
    [(3_600, "an hour"), (86_400, "a day"), (7 * 86_400, "a week"), (30 * 86_400, "30 days"), (365 * 86_400, "a year")];

/// The picture's share links: make one for a chosen time, copy it, revoke it.
#[component]
fn Shares(image_id: String) -> impl IntoView {
    let shares = RwSignal::new(Vec::<ShareInfo>::new());
    let error = RwSignal::new(None::<String>);
    let url = format!("/gallery/{image_id}/shares");
    #[cfg(feature = "hydrate")]
    {
        let url = url.clone();
        leptos::task::spawn_local(async move {
            match crate::browser::get_json::<Vec<ShareInfo>>(&url).await {
                Ok(list) => shares.set(list),
                Err(e) => error.set(Some(e)),
            }
        });
    }
    let lifetime = RwSignal::new(crate::types::DEFAULT_SHARE_SECS);
    let create = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let url = url.clone();
            leptos::task::spawn_local(async move {
                let body = crate::types::NewShare { expires_in_secs: Some(lifetime.get_untracked()) };
                match crate::browser::send_json::<ShareInfo>("POST", &url, &body).await {
                    Ok(share) => shares.update(|s| s.insert(0, share)),
                    Err(e) => error.set(Some(e)),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &url;
    };
    view! {
        <section class="shares" aria-label="Share links">
            <label class="share-lifetime">
                "Link works for "
                <select on:change=move |ev| {
                    if let Ok(secs) = event_target_value(&ev).parse() {
                        lifetime.set(secs);
                    }
                }>
                    {SHARE_LIFETIMES
                        .iter()
                        .filter(|(secs, _)| crate::types::SHARE_SECS.contains(secs))
                        .map(|&(secs, name)| {
                            let selected = secs == crate::types::DEFAULT_SHARE_SECS;
                            view! { <option value=secs.to_string() selected=selected>{name}</option> }
                        })
                        .collect_view()}
                </select>
            </label>
            <button class="button" type="button" on:click=create>"Create share link"</button>
            <ul data-testid="share-links">
                <For each=move || shares.get() key=|s| (s.id.clone(), s.revoked_at) let:share>
                    <ShareRow share shares error/>
                </For>
            </ul>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

/// A link made whole with this page's origin, for pasting elsewhere.
fn absolute(link: &str) -> String {
    #[cfg(feature = "hydrate")]
    if link.starts_with('/') {
        return format!("{}{link}", crate::browser::origin());
    }
    link.to_string()
}

#[component]
fn ShareRow(share: ShareInfo, shares: RwSignal<Vec<ShareInfo>>, error: RwSignal<Option<String>>) -> impl IntoView {
    let revoked = share.revoked_at.is_some();
    let link = share.url.clone();
    let id = share.id.clone();
    let revoke = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let id = id.clone();
            leptos::task::spawn_local(async move {
                match crate::browser::delete(&format!("/shares/{id}")).await {
                    Ok(()) => shares.update(|list| {
                        for s in list.iter_mut().filter(|s| s.id == id) {
                            s.revoked_at = Some(0);
                        }
                    }),
                    Err(e) => error.set(Some(e)),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (&id, shares, error);
    };
    view! {
        <li class:revoked=revoked data-testid="share-link">
            <a href=link.clone() target="_blank" rel="noopener">{link.clone()}</a>
            <span class="muted" data-testid="share-expiry">{format!(" until {}", crate::components::when(share.expires_at))}</span>
            {if revoked {
                view! { <span class="muted">" revoked"</span> }.into_any()
            } else {
                view! {
                    <CopyButton text=absolute(&link)/>
                    <button class="link-button" type="button" on:click=revoke>"Revoke"</button>
                }
                    .into_any()
            }}
        </li>
    }
}
