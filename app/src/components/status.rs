//! Model cards and the status footer, both fed by the health report.

use crate::types::{HealthReport, ModelHealth, ModelRole, ModelState, ServiceStatus};
use leptos::prelude::*;

fn role_title(role: ModelRole) -> &'static str {
    match role {
        ModelRole::Llm => "Chat model",
        ModelRole::Sd => "Image model",
    }
}

#[component]
pub fn ModelCard(model: ModelHealth) -> impl IntoView {
    let state = model.state.as_str();
    let progress =
        model.progress.filter(|_| model.state == ModelState::Downloading).map(|p| format!(" {:.0}%", p * 100.0));
    view! {
        <article class="card" data-role=format!("{:?}", model.role).to_lowercase()>
            <h3>{role_title(model.role)}</h3>
            <p class="model-id">{model.id.clone()}</p>
            <p>
                <span class=format!("badge badge-{state}") data-testid="model-state">
                    {state}
                    {progress}
                </span>
                " on "
                <span class="device">{model.device.clone()}</span>
            </p>
            // For a local folder the id already is the path.
            {model.path.filter(|p| *p != model.id).map(|p| view! { <p class="muted path">{p}</p> })}
            {model.detail.map(|d| view! { <p class="detail">{d}</p> })}
        </article>
    }
}

#[component]
pub fn StatusFooter(report: HealthReport) -> impl IntoView {
    let (label, class) = match report.status {
        ServiceStatus::Ok => ("Ready", "ok"),
        ServiceStatus::Degraded => ("Degraded", "degraded"),
    };
    let runtime = report
        .openvino
        .map(|rt| format!("OpenVINO {}", rt.version))
        .unwrap_or_else(|| "OpenVINO not loaded".to_string());
    let database = format!("{} {}", report.database.backend, if report.database.ok { "ok" } else { "unreachable" });
    view! {
        <footer class="status-footer" role="status">
            <span class=format!("dot dot-{class}")></span>
            <span data-testid="service-status">{label}</span>
            {report.use_mocks.then(|| view! { <span class="badge badge-mock">"mock mode"</span> })}
            <span class="muted">{runtime}</span>
            <span class="muted">{format!("database: {database}")}</span>
            <span class="muted">{format!("v{}", report.version)}</span>
        </footer>
    }
}
