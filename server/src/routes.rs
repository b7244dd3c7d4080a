//! The router: REST API, server functions, server-rendered pages and static files, wrapped in
//! request ids and request logging.

use crate::{api, auth, edge, service::AppState};
use app::ssr::SharedBackend;
use axum::response::IntoResponse;
use axum::{
    extract::{MatchedPath, Request},
    http::HeaderName,
    middleware,
    routing::get,
    Router,
};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list_with_exclusions_and_ssg_and_context, AxumRouteListing, LeptosRoutes};
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::Span;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The pages' routes, found by rendering the app once per process. Leptos turns resource loading
/// off for that render with one process-wide flag, so two renders at once (tests build many
/// routers in parallel) could switch it off under a real page, or on under the other render,
/// whose resources would then run without a request; once, before any router exists, neither
/// can happen. The context is there all the same, so nothing can panic for lack of it.
fn page_routes(context: impl Fn() + Clone + Send + 'static) -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list_with_exclusions_and_ssg_and_context(app::App, None, context).0).clone()
}

pub fn app(state: AppState) -> Router {
    let backend: SharedBackend = Arc::new(state.clone());
    app_with_backend(state, backend)
}

/// The router with the pages served by `backend` (tests give pages a backend that misbehaves).
pub fn app_with_backend(state: AppState, backend: SharedBackend) -> Router {
    // Before Leptos sets up its own: renders must spawn through the executor that watches them.
    edge::render::install_executor();
    let leptos_options = state.leptos.clone();
    let context = move || provide_context(backend.clone());
    let routes = page_routes(context.clone());

    // Open to anyone: health, signing in, share links; and (below) the pages and static files.
    let api::Routes { public, protected } = api::routes();
    let (public, _) = public.split_for_parts();
    let (protected, _) = protected.split_for_parts();
    // The document and its page describe the API; they are not part of it.
    let docs = Router::new()
        .route("/api/openapi.json", get(api::openapi::openapi_json))
        .route("/api/docs", get(api::openapi::docs_page));
    let protected =
        protected.merge(docs).route_layer(middleware::from_fn_with_state(state.clone(), api::middleware::authenticate));
    // Pages, their server functions and the static files: each render bounded and watched.
    let pages = Router::new()
        .leptos_routes_with_context(&state, routes, context.clone(), move || app::shell(leptos_options.clone()))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(context, app::shell))
        .layer(middleware::from_fn_with_state(state.clone(), edge::render::guard_render))
        .layer(middleware::from_fn(edge::server_fns::bad_arguments));
    let router = public
        .merge(protected)
        .merge(pages)
        .layer(middleware::from_fn_with_state(state.clone(), api::middleware::guard_origin))
        .layer(middleware::from_fn_with_state(state.clone(), edge::client::client_addr));
    let hosts = Arc::new(state.config.server.allowed_hosts());
    let router = auth::sessions::layer(router, &state.db, state.redis.as_ref(), &state.config).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(
                |res: &axum::response::Response, latency: Duration, _span: &Span| {
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = latency.as_secs_f64() * 1000.0,
                        "response"
                    );
                },
            ))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(middleware::from_fn(edge::headers::security_headers))
            .layer(middleware::from_fn_with_state(hosts, edge::hosts::check_host))
            .layer(CatchPanicLayer::custom(handler_panicked)),
    );
    // Outermost, so every answer is counted: refused hosts, and panics turned into 500s.
    let router = match state.metrics {
        Some(_) => router.layer(middleware::from_fn(edge::metrics::record)),
        None => router,
    };
    router.with_state(state)
}

/// A handler that panicked answers 500 with the API's error body (the panic is logged).
fn handler_panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    api::error::ApiError::from(crate::service::error::ServiceError::Engine(format!("handler panicked: {text}")))
        .into_response()
}

/// One span per request: method, the route that matched (not the raw path, so ids stay out of
/// metrics; static files and 404s show as `(fallback)`) and the request id that is also returned
/// in `x-request-id`.
fn request_span(req: &Request) -> Span {
    let path = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("(fallback)");
    let id = req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), path, request_id = id)
}
