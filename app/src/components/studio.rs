//! The image studio: every setting of a picture in one form, the results as they are drawn, and
//! "same seed" / "vary seed" to explore around one. `?from={image id}` fills the form from a
//! gallery picture ("reuse parameters").

#[cfg(feature = "hydrate")]
use crate::types::JobList;
use crate::types::{ImageGenerationRequest, ImageParameters, JobInfo, JobStatus};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// Sizes Stable Diffusion 1.5 draws well (it was trained at 512²).
const SIZES: [(u32, u32, &str); 6] = [
    (512, 512, "512 × 512 (square)"),
    (768, 512, "768 × 512 (landscape)"),
    (512, 768, "512 × 768 (portrait)"),
    (768, 768, "768 × 768"),
    (640, 384, "640 × 384 (wide)"),
    (256, 256, "256 × 256 (quick draft)"),
];
const SCHEDULERS: [(&str, &str); 6] = [
    ("pndm", "PNDM (the model's default)"),
    ("ddim", "DDIM"),
    ("euler", "Euler"),
    ("euler_a", "Euler ancestral"),
    ("dpmpp_2m_karras", "DPM++ 2M Karras"),
    ("lcm", "LCM (for LCM-distilled models)"),
];

/// The form's fields, as typed.
#[derive(Clone, Copy)]
struct Form {
    prompt: RwSignal<String>,
    negative: RwSignal<String>,
    steps: RwSignal<String>,
    guidance: RwSignal<String>,
    seed: RwSignal<String>,
    lock_seed: RwSignal<bool>,
    size: RwSignal<String>,
    scheduler: RwSignal<String>,
}

impl Form {
    fn new() -> Form {
        Form {
            prompt: RwSignal::new(String::new()),
            negative: RwSignal::new(String::new()),
            steps: RwSignal::new("20".into()),
            guidance: RwSignal::new("7.5".into()),
            seed: RwSignal::new(String::new()),
            lock_seed: RwSignal::new(false),
            size: RwSignal::new("512x512".into()),
            scheduler: RwSignal::new("pndm".into()),
        }
    }

    fn fill(&self, p: &ImageParameters, lock_seed: bool) {
        self.prompt.set(p.prompt.clone());
        self.negative.set(p.negative_prompt.clone());
        self.steps.set(p.num_inference_steps.to_string());
        self.guidance.set(p.guidance_scale.to_string());
        self.seed.set(p.seed.to_string());
        self.lock_seed.set(lock_seed);
        self.size.set(format!("{}x{}", p.width, p.height));
        self.scheduler.set(p.scheduler.clone());
    }

    /// The request; numbers that do not parse are sent as they are not, so the server's check
    /// names the field.
    fn request(&self) -> ImageGenerationRequest {
        let (width, height) = self.size.with_untracked(|s| {
            let (w, h) = s.split_once('x').unwrap_or(("512", "512"));
            (w.parse().ok(), h.parse().ok())
        });
        let negative = self.negative.get_untracked();
        ImageGenerationRequest {
            prompt: Some(self.prompt.get_untracked()),
            negative_prompt: (!negative.trim().is_empty()).then_some(negative),
            num_inference_steps: self.steps.with_untracked(|s| s.trim().parse().ok()),
            guidance_scale: self.guidance.with_untracked(|s| s.trim().parse().ok()),
            seed: if self.lock_seed.get_untracked() {
                self.seed.with_untracked(|s| s.trim().parse().ok())
            } else {
                None
            },
            width,
            height,
            scheduler: Some(self.scheduler.get_untracked()),
            ..Default::default()
        }
    }
}

/// One picture asked for on this page.
#[derive(Clone, Copy)]
struct Made {
    key: u64,
    job: RwSignal<Option<JobInfo>>,
    parameters: RwSignal<Option<ImageParameters>>,
    error: RwSignal<Option<String>>,
}

#[component]
pub fn StudioPage() -> impl IntoView {
    let form = Form::new();
    let made = RwSignal::new(Vec::<Made>::new());
    let next_key = StoredValue::new(0u64);
    let owner = StoredValue::new(Owner::current().expect("inside the app"));
    let query = use_query_map();
    // "Reuse parameters" from the gallery.
    Effect::new(move |_| {
        let Some(id) = query.with(|q| q.get("from")) else { return };
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            if let Ok(image) = crate::browser::get_json::<crate::types::GalleryImage>(&format!("/gallery/{id}")).await {
                form.fill(&image.parameters, true);
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = id;
    });

    // Pictures asked for before this page was opened (another tab, a reload) and still queued or
    // being drawn: shown and followed like new ones.
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let Ok(list) = crate::browser::get_json::<JobList>("/jobs").await else { return };
            let shown: Vec<String> = made.with_untracked(|m| {
                m.iter().filter_map(|i| i.job.with_untracked(|j| j.as_ref().map(|j| j.job_id.clone()))).collect()
            });
            // Newest first, as the page lists what it makes.
            for job in list.jobs.into_iter().rev().filter(|j| j.conversation_id.is_none() && !shown.contains(&j.job_id))
            {
                next_key.update_value(|k| *k += 1);
                let item = owner.with_value(|o| {
                    o.with(|| Made {
                        key: next_key.get_value(),
                        job: RwSignal::new(Some(job.clone())),
                        parameters: RwSignal::new(Some(job.parameters.clone())),
                        error: RwSignal::new(None),
                    })
                });
                made.update(|m| m.push(item));
                leptos::task::spawn_local(watch(item, job.job_id));
            }
        });
    });

    let generate = move || {
        let request = form.request();
        if request.prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
            return;
        }
        next_key.update_value(|k| *k += 1);
        let item = owner.with_value(|o| {
            o.with(|| Made {
                key: next_key.get_value(),
                job: RwSignal::new(None),
                parameters: RwSignal::new(None),
                error: RwSignal::new(None),
            })
        });
        made.update(|m| m.insert(0, item));
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(follow(item, request));
        #[cfg(not(feature = "hydrate"))]
        let _ = request;
    };
    let busy = move || {
        made.with(|m| {
            m.iter().any(|i| {
                i.job.with(|j| j.as_ref().is_none_or(|j| !j.status.is_final())) && i.error.with(Option::is_none)
            })
        })
    };

    view! {
        <super::AccessCheck/>
        <section class="page studio" aria-labelledby="studio-heading">
            <h2 id="studio-heading">"Image studio"</h2>
            <form class="studio-form panel" on:submit=move |ev| {
                ev.prevent_default();
                generate();
            }>
                <label class="wide">"Prompt"
                    <textarea name="prompt" rows="3" required prop:value=move || form.prompt.get()
                        on:input=move |ev| form.prompt.set(event_target_value(&ev))></textarea>
                </label>
                <div class="wide"><crate::components::templates::Templates text=form.prompt/></div>
                <label class="wide">"Negative prompt"
                    <input type="text" name="negative_prompt" placeholder="What the picture should not have"
                        prop:value=move || form.negative.get() on:input=move |ev| form.negative.set(event_target_value(&ev))/>
                </label>
                <label>"Size"
                    <select name="size" prop:value=move || form.size.get() on:change=move |ev| form.size.set(event_target_value(&ev))>
                        {SIZES.iter().map(|(w, h, label)| view! { <option value=format!("{w}x{h}")>{*label}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Scheduler"
                    <select name="scheduler" prop:value=move || form.scheduler.get()
                        on:change=move |ev| form.scheduler.set(event_target_value(&ev))>
                        {SCHEDULERS.iter().map(|(v, label)| view! { <option value=*v>{*label}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Steps"
                    <input type="number" name="steps" min="1" max="100" prop:value=move || form.steps.get()
                        on:input=move |ev| form.steps.set(event_target_value(&ev))/>
                </label>
                <label>"Guidance"
                    <input type="number" name="guidance" min="0" max="30" step="0.5" prop:value=move || form.guidance.get()
                        on:input=move |ev| form.guidance.set(event_target_value(&ev))/>
                </label>
                <label>"Seed"
                    <input type="number" name="seed" min="0" max="4294967295" placeholder="random"
                        prop:value=move || form.seed.get() disabled=move || !form.lock_seed.get()
                        on:input=move |ev| form.seed.set(event_target_value(&ev))/>
                </label>
                <label class="check">
                    <input type="checkbox" name="lock_seed" prop:checked=move || form.lock_seed.get()
                        on:change=move |ev| form.lock_seed.set(event_target_checked(&ev))/>
                    "Lock the seed (unlocked: a new random seed each time)"
                </label>
                <div class="wide row">
                    <button class="button primary" type="submit">"Generate"</button>
                    <Show when=busy><span class="muted">"Drawing…"</span></Show>
                </div>
            </form>
            <ul class="results" data-testid="studio-results">
                <For each=move || made.get() key=|m| m.key let:item>
                    <Result item form generate=Callback::new(move |()| generate())/>
                </For>
            </ul>
        </section>
    }
    .into_any()
}

#[cfg(feature = "hydrate")]
async fn follow(item: Made, request: ImageGenerationRequest) {
    use crate::types::ImageGenerationResponse;
    let queued = match crate::browser::send_json::<ImageGenerationResponse>("POST", "/image", &request).await {
        Ok(queued) => queued,
        Err(e) => return item.error.set(Some(e)),
    };
    item.parameters.set(Some(queued.parameters.clone()));
    watch(item, queued.job_id).await;
}

/// Follow a job's progress until it ends.
#[cfg(feature = "hydrate")]
async fn watch(item: Made, job_id: String) {
    let Some(abort) = crate::browser::new_abort() else { return };
    let mut reader = crate::ui::sse::SseReader::default();
    let url = format!("/jobs/{job_id}/events");
    let watched = crate::browser::stream("GET", &url, None, &abort, |bytes| {
        for event in reader.push(bytes) {
            if let Ok(info) = serde_json::from_str::<JobInfo>(&event.data) {
                item.job.set(Some(info));
            }
        }
    })
    .await;
    if let Err(e) = watched {
        item.error.set(Some(e));
    }
}

#[component]
fn Result(item: Made, form: Form, generate: Callback<()>) -> impl IntoView {
    let status = move || item.job.with(|j| j.as_ref().map(|j| j.status));
    let line = move || match item.job.get() {
        None => "Queued…".to_string(),
        Some(j) => match j.status {
            JobStatus::Queued => format!("Queued: {} ahead", j.position.unwrap_or(0)),
            JobStatus::Running => format!("Step {} of {}", j.step, j.total_steps),
            JobStatus::Done => format!(
                "Done in {:.1} s",
                j.finished_at.zip(j.started_at).map_or(0.0, |(f, s)| (f - s) as f64 / 1000.0)
            ),
            JobStatus::Failed => format!("Failed: {}", j.error.unwrap_or_default()),
            JobStatus::Cancelled => "Cancelled".to_string(),
        },
    };
    let same_seed = move |_| {
        if let Some(p) = item.parameters.get_untracked() {
            form.fill(&p, true);
        }
    };
    let vary_seed = move |_| {
        if let Some(p) = item.parameters.get_untracked() {
            form.fill(&p, false);
            generate.run(());
        }
    };
    let cancel = move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(j) = item.job.get_untracked() {
            leptos::task::spawn_local(async move {
                let _ = crate::browser::delete(&format!("/jobs/{}", j.job_id)).await;
            });
        }
    };
    view! {
        <li class="result panel" data-testid="studio-result" data-status=move || status().map(|s| format!("{s:?}").to_lowercase()).unwrap_or_default()>
            {move || match (item.job.get(), item.error.get()) {
                (_, Some(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                (Some(j), None) if j.status == JobStatus::Done => view! {
                    <a href=format!("/gallery/{}/download", j.job_id) class="result-image">
                        <img src=j.image_url.clone() alt=j.parameters.prompt.clone() data-testid="studio-image"/>
                    </a>
                }.into_any(),
                (j, None) => view! {
                    <div class="placeholder">
                        <progress max=j.as_ref().map_or(1, |j| j.total_steps.max(1)) value=j.as_ref().map_or(0, |j| j.step)
                            aria-label="Picture progress"></progress>
                    </div>
                }.into_any(),
            }}
            <p class="muted" data-testid="studio-status">{line}</p>
            {move || item.parameters.get().map(|p| view! {
                <p class="result-meta">{format!("seed {} · {}×{} · {} steps · {}", p.seed, p.width, p.height, p.num_inference_steps, p.scheduler)}</p>
            })}
            <div class="row">
                <Show when=move || status().is_some_and(|s| !s.is_final())>
                    <button class="button" type="button" on:click=cancel>"Cancel"</button>
                </Show>
                <Show when=move || item.parameters.with(Option::is_some)>
                    <button class="button" type="button" on:click=same_seed>"Same seed"</button>
                    <button class="button" type="button" on:click=vary_seed>"Vary seed"</button>
                </Show>
            </div>
        </li>
    }
}
