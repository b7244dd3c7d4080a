//! The REST API: thin axum handlers over the service layer.

pub mod auth;
pub mod chat;
pub mod error;
pub mod gallery;
pub mod health;
pub mod history;
pub mod images;
pub mod internal;
pub mod json;
pub mod metrics;
pub mod middleware;
pub mod openai;
pub mod openapi;
mod openapi_rules;
pub mod pages;
pub mod templates;
pub mod ws;

use crate::service::AppState;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Every documented REST route, declared once: the router that serves them and the paths of the
/// OpenAPI document both come from here (a handler without `#[utoipa::path]` cannot be added).
/// `public` is open to anyone; `protected` needs credentials (routes.rs puts the guard on it).
pub struct Routes {
    pub public: OpenApiRouter<AppState>,
    pub protected: OpenApiRouter<AppState>,
}

pub fn routes() -> Routes {
    let public = OpenApiRouter::new()
        .routes(routes!(health::get_health))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(gallery::shared));
    let protected = OpenApiRouter::new()
        .routes(routes!(auth::me))
        .routes(routes!(auth::quota))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::list_keys, auth::create_key))
        .routes(routes!(auth::revoke_key))
        .routes(routes!(auth::list_accounts, auth::create_account))
        .routes(routes!(auth::update_account))
        .routes(routes!(history::list))
        .routes(routes!(history::detail, history::rename, history::delete))
        .routes(routes!(history::export))
        .routes(routes!(history::search))
        .routes(routes!(gallery::list))
        .routes(routes!(gallery::zip))
        .routes(routes!(gallery::get, gallery::delete))
        .routes(routes!(gallery::download))
        .routes(routes!(gallery::list_shares, gallery::create_share))
        .routes(routes!(gallery::revoke_share))
        .routes(routes!(templates::list, templates::create))
        .routes(routes!(templates::delete))
        .routes(routes!(chat::post_chat))
        .routes(routes!(images::post_image))
        .routes(routes!(images::list_jobs))
        .routes(routes!(images::get_job, images::delete_job))
        .routes(routes!(images::job_events))
        .routes(routes!(images::get_image))
        .routes(routes!(openai::list_models))
        .routes(routes!(openai::chat_completions))
        .routes(routes!(openai::images_generations))
        .routes(routes!(ws::socket))
        .routes(routes!(metrics::admin_metrics));
    Routes { public, protected }
}
