//! Which `Host` this server answers for. A web page whose name an attacker rebinds to 127.0.0.1
//! reaches the server with that name in `Host` (the pattern of Ollama's CVE-2024-28224); with
//! accounts off, such a page could read and change everything. So requests are answered only
//! for loopback names and addresses, the listening address itself, `PUBLIC_URL`'s host and
//! `ALLOWED_HOSTS`; the rest get 421. A request without a host at all is no browser's.

use crate::api::error::ApiError;
pub use crate::hosts::AllowedHosts;
use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::sync::Arc;

/// The middleware: 421 with the JSON error body for a host this server does not answer for.
pub async fn check_host(State(allowed): State<Arc<AllowedHosts>>, req: Request, next: Next) -> Response {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(String::from));
    match host {
        Some(host) if !allowed.allows(&host) => {
            tracing::warn!(host = %host, "refused a request for a host this server does not answer for");
            ApiError::BadRequest {
                status: StatusCode::MISDIRECTED_REQUEST,
                param: None,
                code: "host_not_allowed",
                message: format!(
                    "this server does not answer for the host {host:?}; to reach it by that name, add it to \
                     ALLOWED_HOSTS (or set PUBLIC_URL)"
                ),
            }
            .into_response()
        }
        _ => next.run(req).await,
    }
}
