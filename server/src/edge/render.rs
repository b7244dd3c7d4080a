//! Server renders that cannot hang their client. A page is rendered by futures Leptos spawns; one
//! that panics used to leave its `<Suspense>` waiting forever, and the response never ended.
//! Here every page render is bounded by `RENDER_TIMEOUT_SECS` and watched for panics, in the
//! page's own futures and in those it spawns (Leptos spawns through our executor, which carries
//! the render's watch into each task it starts). Either way the answer is a 500 page, logged with
//! the request id. A page is buffered whole before it is sent, so its status can still change.

use crate::service::AppState;
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{Html, IntoResponse, Response},
};
use futures::FutureExt;
use http_body_util::BodyExt;
use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Notify;

tokio::task_local! {
    /// The render a task works for, inherited by the tasks it spawns through Leptos.
    static RENDER: Watch;
}

/// Where a render's tasks report a panic.
#[derive(Clone, Default)]
struct Watch(Arc<(Mutex<Option<String>>, Notify)>);

impl Watch {
    fn panicked(&self, message: String) {
        let (first, notify) = &*self.0;
        first.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(message);
        notify.notify_one();
    }

    /// Resolves once a task of this render has panicked, with what it said.
    async fn panic(&self) -> String {
        let (first, notify) = &*self.0;
        loop {
            if let Some(message) = first.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return message;
            }
            notify.notified().await;
        }
    }
}

/// Leptos's executor: tokio, with each spawned future caught if it panics and reported to the
/// render it was spawned for.
struct WatchedTokio;

impl any_spawner::CustomExecutor for WatchedTokio {
    fn spawn(&self, future: any_spawner::PinnedFuture<()>) {
        let watch = RENDER.try_with(Watch::clone).ok();
        let caught = async move {
            if let Err(panic) = AssertUnwindSafe(future).catch_unwind().await {
                if let Ok(watch) = RENDER.try_with(Watch::clone) {
                    watch.panicked(panic_text(&*panic));
                }
            }
        };
        match watch {
            Some(watch) => tokio::spawn(RENDER.scope(watch, caught)),
            None => tokio::spawn(caught),
        };
    }

    fn spawn_local(&self, future: any_spawner::PinnedLocalFuture<()>) {
        tokio::task::spawn_local(future);
    }

    fn poll_local(&self) {}
}

/// Make Leptos spawn through [`WatchedTokio`]; before any render (leptos_axum's own set-up then
/// finds an executor in place and keeps it).
pub fn install_executor() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        if any_spawner::Executor::init_custom_executor(WatchedTokio).is_err() {
            tracing::warn!("Leptos's executor was set before ours: a panicking render may not end its page");
        }
    });
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The middleware, on the pages (and the server functions and files beside them).
pub async fn guard_render(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let limit = Duration::from_secs(state.config.server.render_timeout_secs);
    let watch = Watch::default();
    let render = RENDER.scope(watch.clone(), AssertUnwindSafe(render_whole(next, req)).catch_unwind());
    let failure = tokio::select! {
        done = tokio::time::timeout(limit, render) => match done {
            Ok(Ok(Ok(response))) => return response,
            Ok(Ok(Err(err))) => format!("the page's body failed: {err}"),
            Ok(Err(panic)) => format!("the render panicked: {}", panic_text(&*panic)),
            Err(_) => format!("the render took longer than {} s (RENDER_TIMEOUT_SECS)", limit.as_secs()),
        },
        message = watch.panic() => format!("the render panicked: {message}"),
    };
    tracing::error!(request_id = %request_id, error = %failure, "page render failed");
    error_page(&request_id)
}

/// The handler's answer; an HTML page is read to its end first, so a failure while rendering it
/// can still turn it into an error page.
async fn render_whole(next: Next, req: Request) -> Result<Response, axum::Error> {
    let response = next.run(req).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !html {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn error_page(request_id: &str) -> Response {
    let id: String = request_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Duet: page error</title></head>\
         <body><h1>This page could not be shown</h1><p>Something went wrong while the server rendered it. \
         Try again; if it keeps happening, the server log has the details under request id <code>{id}</code>.</p>\
         <p><a href=\"/\">Back to the chat</a></p></body></html>"
    );
    (StatusCode::INTERNAL_SERVER_ERROR, Html(page)).into_response()
}
