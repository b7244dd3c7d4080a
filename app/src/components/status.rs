//! Model cards (the models page) and the status footer on every page, both fed by the health
//! report; the footer also says when this page is generating and when the server is gone.

use crate::{
    api::get_health,
    types::{DownloadProgress, EngineActivity, HealthReport, ModelHealth, ModelRole, ModelState, ServiceStatus},
};
use leptos::prelude::*;
use std::time::Duration;

/// How often the browser asks `/health` again, so download and load progress stays live.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// The health report, asked for once per poll for the whole page (the footer and the models page
/// both show it).
#[derive(Clone, Copy)]
pub struct HealthFeed {
    pub report: Resource<Result<HealthReport, ServerFnError>>,
    /// Ask again now.
    pub refresh: WriteSignal<u32>,
}

impl HealthFeed {
    /// Make the feed and provide it as context; it polls every `POLL_EVERY` once in the browser.
    pub fn provide() {
        let (ticks, refresh) = signal(0u32);
        let report = Resource::new(move || ticks.get(), |_| get_health());
        // Effects run only in the browser, so polling starts there and never during SSR.
        Effect::new(move |_| {
            let _ = set_interval_with_handle(move || refresh.update(|n| *n += 1), POLL_EVERY);
        });
        provide_context(HealthFeed { report, refresh });
    }
}

/// What this page is doing, for the footer: set by the chat while a reply streams.
#[derive(Clone, Copy)]
pub struct Activity {
    pub generating: RwSignal<bool>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { generating: RwSignal::new(false) }
    }
}

pub fn role_title(role: ModelRole) -> &'static str {
    match role {
        ModelRole::Llm => "Chat model",
        ModelRole::Sd => "Image model",
    }
}

fn state_text(model: &ModelHealth) -> String {
    let progress =
        model.progress.filter(|_| model.state == ModelState::Downloading).map(|p| format!(" {:.0}%", p * 100.0));
    format!("{}{}", model.state.as_str(), progress.unwrap_or_default())
}

/// "unet/openvino_model.bin 500.0 MB of 1.1 GB (file 4 of 8) · 1.2 GB of 2.3 GB in all ·
/// 11.0 MB/s · about 2 min left".
/// The chat engine's figures as short lines: replies and kept conversations, the KV cache, and
/// (once they happened) shared steps and conversations dropped for room.
pub fn engine_lines(e: &EngineActivity) -> Vec<String> {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut lines = vec![format!(
        "{} · {} kept for their next turn",
        plural(e.running, "reply running", "replies running"),
        plural(e.kept_conversations, "conversation", "conversations")
    )];
    if e.kv_tokens_allocated > 0 {
        let percent = e.kv_tokens_used as f64 * 100.0 / e.kv_tokens_allocated as f64;
        lines
            .push(format!("KV cache: {} of {} tokens in use ({percent:.0}%)", e.kv_tokens_used, e.kv_tokens_allocated));
    }
    if e.shared_prefix_tokens > 0 {
        lines.push(format!(
            "{} of prompts taken from other conversations' cache (not run again)",
            plural(e.shared_prefix_tokens, "token", "tokens")
        ));
    }
    if e.batched_steps > 0 {
        lines.push(format!(
            "{} decoded several replies at once (up to {})",
            plural(e.batched_steps, "step", "steps"),
            e.max_batch
        ));
    }
    if e.evicted_for_room > 0 {
        lines.push(format!(
            "{} dropped to make room (their next turn runs again in full)",
            plural(e.evicted_for_room, "idle conversation", "idle conversations")
        ));
    }
    lines
}

pub fn download_text(d: &DownloadProgress) -> String {
    let mut parts = Vec::new();
    if !d.file.is_empty() {
        let n = (d.files_done + 1).min(d.files_total);
        parts.push(format!(
            "{} {} of {} (file {n} of {})",
            d.file,
            bytes(d.file_bytes_done),
            bytes(d.file_bytes_total),
            d.files_total
        ));
    }
    parts.push(format!("{} of {} in all", bytes(d.bytes_done), bytes(d.bytes_total)));
    if d.bytes_per_second > 0 {
        parts.push(format!("{}/s", bytes(d.bytes_per_second)));
    } else {
        parts.push("waiting for data".into());
    }
    match d.eta_seconds {
        Some(s) if s >= 90 => parts.push(format!("about {} min left", s.div_ceil(60))),
        Some(s) => parts.push(format!("about {s} s left")),
        None => {}
    }
    parts.join(" · ")
}

/// Decimal units, as download tools show them.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

#[component]
pub fn ModelCard(model: ModelHealth) -> impl IntoView {
    let state = model.state.as_str();
    view! {
        <article class="card" data-role=format!("{:?}", model.role).to_lowercase()>
            <h3>{role_title(model.role)}</h3>
            <p class="model-id">{model.id.clone()}</p>
            <p>
                <span class=format!("badge badge-{state}") data-testid="model-state">{state_text(&model)}</span>
                " on "
                <span class="device">{model.device.clone()}</span>
            </p>
            // For a local folder the id already is the path.
            {model.path.clone().filter(|p| *p != model.id).map(|p| view! { <p class="muted path">{p}</p> })}
            {model.detail.clone().map(|d| view! { <p class="detail">{d}</p> })}
            {model.engine.clone().filter(|_| model.state == ModelState::Ready).map(|e| {
                let cache = (e.kv_tokens_allocated > 0).then(|| view! {
                    <progress max=e.kv_tokens_allocated as f64 value=e.kv_tokens_used as f64
                        aria-label="KV cache in use"></progress>
                });
                view! {
                    <div class="engine" data-testid="model-engine">
                        {cache}
                        {engine_lines(&e).into_iter().map(|line| view! { <p class="muted">{line}</p> }).collect_view()}
                    </div>
                }
            })}
            {model.download.clone().filter(|_| model.state == ModelState::Downloading).map(|d| {
                view! {
                    <div class="download" data-testid="model-download">
                        <progress max="1" value=d.fraction()></progress>
                        <p class="muted">{download_text(&d)}</p>
                    </div>
                }
            })}
        </article>
    }
}

#[component]
pub fn StatusFooter() -> impl IntoView {
    let health = expect_context::<HealthFeed>().report;
    let generating = use_context::<Activity>().map(|a| a.generating);
    view! {
        <footer class="status-footer" role="status">
            <Transition fallback=|| view! { <span class="muted">"Asking the server…"</span> }>
                {move || Suspend::new(async move {
                    match health.await {
                        Ok(report) => view! { <Report report generating/> }.into_any(),
                        Err(_) => view! {
                            <span class="dot dot-down"></span>
                            <span data-testid="service-status">"Server unreachable"</span>
                            <span class="muted">"Duet's server did not answer; it retries every few seconds."</span>
                        }
                            .into_any(),
                    }
                })}
            </Transition>
        </footer>
    }
}

#[component]
fn Report(report: HealthReport, generating: Option<RwSignal<bool>>) -> impl IntoView {
    let (label, class) = match report.status {
        ServiceStatus::Ok => ("Ready", "ok"),
        ServiceStatus::Degraded => ("Degraded", "degraded"),
    };
    let busy = move || generating.is_some_and(|g| g.get());
    let runtime = report
        .openvino
        .map(|rt| format!("OpenVINO {}", rt.version))
        .unwrap_or_else(|| "OpenVINO not loaded".to_string());
    let database = format!("{} {}", report.database.backend, if report.database.ok { "ok" } else { "unreachable" });
    let models = report
        .models
        .iter()
        .map(|m| {
            let state = m.state.as_str();
            view! {
                <span class="footer-model" title=m.detail.clone().unwrap_or_default()>
                    {role_title(m.role)} ": "
                    <span class=format!("state-{state}") data-testid="footer-model-state">{state_text(m)}</span>
                </span>
            }
        })
        .collect_view();
    view! {
        <span class=move || format!("dot dot-{}", if busy() { "busy" } else { class })></span>
        <span data-testid="service-status">{move || if busy() { "Generating" } else { label }}</span>
        {report.use_mocks.then(|| view! { <span class="badge badge-mock" data-testid="mock-mode">"mock mode"</span> })}
        {models}
        <span class="muted footer-extra">{runtime}</span>
        <span class="muted footer-extra">{format!("database: {database}")}</span>
        <span class="muted footer-extra">{format!("v{}", report.version)}</span>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_lines_say_load_cache_and_what_happened() {
        let idle = EngineActivity { kv_tokens_allocated: 2048, ..Default::default() };
        assert_eq!(
            engine_lines(&idle),
            ["0 replies running · 0 conversations kept for their next turn", "KV cache: 0 of 2048 tokens in use (0%)"]
        );
        let busy = EngineActivity {
            running: 1,
            kept_conversations: 3,
            kv_tokens_used: 512,
            kv_tokens_allocated: 2048,
            kv_tokens_idle: 64,
            shared_prefix_tokens: 96,
            batched_steps: 40,
            max_batch: 2,
            mixed_steps: 5,
            evicted_for_room: 1,
            evicted_for_limit: 2,
        };
        assert_eq!(
            engine_lines(&busy),
            [
                "1 reply running · 3 conversations kept for their next turn",
                "KV cache: 512 of 2048 tokens in use (25%)",
                "96 tokens of prompts taken from other conversations' cache (not run again)",
                "40 steps decoded several replies at once (up to 2)",
                "1 idle conversation dropped to make room (their next turn runs again in full)",
            ]
        );
        // The stateful graph keeps no pool: no cache line.
        assert_eq!(engine_lines(&EngineActivity::default()).len(), 1);
    }

    #[test]
    fn download_text_says_file_bytes_rate_and_time_left() {
        let d = DownloadProgress {
            file: "openvino_model.bin".into(),
            file_bytes_done: 500_000_000,
            file_bytes_total: 1_100_000_000,
            files_done: 3,
            files_total: 8,
            bytes_done: 1_234_000_000,
            bytes_total: 2_300_000_000,
            bytes_per_second: 11_000_000,
            eta_seconds: Some(97),
        };
        assert_eq!(
            download_text(&d),
            "openvino_model.bin 500.0 MB of 1.1 GB (file 4 of 8) · 1.2 GB of 2.3 GB in all · 11.0 MB/s · about 2 min left"
        );
        let start = DownloadProgress { bytes_total: 999, ..Default::default() };
        assert_eq!(download_text(&start), "0 B of 999 B in all · waiting for data");
    }
}
