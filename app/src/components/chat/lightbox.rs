//! A picture in a reply: a thumbnail that opens a dialog with the full image and every parameter
//! it was made with (asked of `/gallery/{id}` when opened), and a download link.

use crate::types::GalleryImage;
use leptos::{html::Dialog, prelude::*};

#[component]
pub fn Lightbox(image_id: String) -> impl IntoView {
    let dialog = NodeRef::<Dialog>::new();
    let details = RwSignal::new(None::<Result<GalleryImage, String>>);
    let src = format!("/images/{image_id}.png");
    let open = {
        let image_id = image_id.clone();
        move |_| {
            if let Some(d) = dialog.get() {
                let _ = d.show_modal();
            }
            #[cfg(feature = "hydrate")]
            if details.get_untracked().is_none() {
                let url = format!("/gallery/{image_id}");
                leptos::task::spawn_local(async move { details.set(Some(crate::browser::get_json(&url).await)) });
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = &image_id;
        }
    };
    let close = move |_| {
        if let Some(d) = dialog.get() {
            d.close();
        }
    };
    let download = format!("/gallery/{image_id}/download");
    view! {
        <button class="thumb" type="button" on:click=open aria-label="Enlarge the picture">
            <img src=src.clone() alt="A generated picture" loading="lazy" data-testid="chat-image"/>
        </button>
        <dialog class="lightbox" node_ref=dialog aria-label="Picture">
            <img src=src alt="A generated picture, full size"/>
            <div class="lightbox-side">
                {move || match details.get() {
                    None => view! { <p class="muted">"Loading the parameters…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error">{e}</p> }.into_any(),
                    Some(Ok(image)) => view! { <Parameters image/> }.into_any(),
                }}
                <div class="row">
                    <a class="button" href=download.clone() download>"Download"</a>
                    <button class="button" type="button" on:click=close>"Close"</button>
                </div>
            </div>
        </dialog>
    }
}

#[component]
pub fn Parameters(image: GalleryImage) -> impl IntoView {
    let p = image.parameters;
    let rows = [
        ("Prompt", p.prompt),
        ("Negative prompt", p.negative_prompt),
        ("Steps", p.num_inference_steps.to_string()),
        ("Guidance", format!("{}", p.guidance_scale)),
        ("Seed", p.seed.to_string()),
        ("Size", format!("{}×{}", p.width, p.height)),
        ("Scheduler", p.scheduler),
        ("Model", p.model),
    ];
    view! {
        <dl class="parameters" data-testid="image-parameters">
            {rows
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| view! { <dt>{k}</dt> <dd>{v}</dd> })
                .collect_view()}
        </dl>
    }
}
