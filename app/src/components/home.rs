//! The models page: what each model is, where it lives and what state it is in.

use super::status::{ModelCard, POLL_EVERY};
use crate::api::get_health;
use leptos::prelude::*;

#[component]
pub fn ModelsPage() -> impl IntoView {
    // Bumped by the Refresh button and by the poll timer; the resource refetches on either.
    let (clicks, set_clicks) = signal(0u32);
    let (ticks, set_ticks) = signal(0u32);
    let health = Resource::new(move || (clicks.get(), ticks.get()), |_| get_health());

    // Effects run only in the browser, so polling starts there and never during SSR.
    Effect::new(move |_| {
        let _ = set_interval_with_handle(move || set_ticks.update(|n| *n += 1), POLL_EVERY);
    });

    view! {
        <section class="panel page" aria-labelledby="models-heading">
            <div class="panel-head">
                <h2 id="models-heading">"Models"</h2>
                <button
                    class="button"
                    type="button"
                    data-clicks=move || clicks.get().to_string()
                    on:click=move |_| set_clicks.update(|n| *n += 1)
                >
                    "Refresh"
                </button>
            </div>
            <Transition fallback=|| view! { <p class="muted">"Asking the server…"</p> }>
                {move || {
                    health
                        .get()
                        .map(|report| match report {
                            Ok(report) => view! {
                                <div class="cards">
                                    {report.models.into_iter().map(|model| view! { <ModelCard model/> }).collect_view()}
                                </div>
                            }
                                .into_any(),
                            Err(err) => view! {
                                <p class="error" role="alert">{format!("The server did not answer: {err}")}</p>
                            }
                                .into_any(),
                        })
                }}
            </Transition>
        </section>
    }
}
