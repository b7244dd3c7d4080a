//! The models page: what each model is, where it lives and what state it is in.

use super::status::{HealthFeed, ModelCard};
use leptos::prelude::*;

#[component]
pub fn ModelsPage() -> impl IntoView {
    // The page-wide feed (it polls); the Refresh button asks again at once.
    let HealthFeed { report: health, refresh } = expect_context::<HealthFeed>();
    let (clicks, set_clicks) = signal(0u32);

    view! {
        <section class="panel page" aria-labelledby="models-heading">
            <div class="panel-head">
                <h2 id="models-heading">"Models"</h2>
                <button
                    class="button"
                    type="button"
                    data-clicks=move || clicks.get().to_string()
                    on:click=move |_| {
                        set_clicks.update(|n| *n += 1);
                        refresh.update(|n| *n += 1);
                    }
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
