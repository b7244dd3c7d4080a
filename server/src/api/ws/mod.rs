//! `GET /ws`: chat and image jobs over one WebSocket, for clients that would rather hold a socket
//! than a stream per request. Authenticated like the REST API (the session cookie, or an API key
//! in `Authorization` for clients that are not browsers); a browser's upgrade from another site
//! is refused as a cross-site POST would be, since a socket can do what a POST can.

mod session;

use super::error::{ApiError, Result};
use crate::{
    auth::Caller,
    service::{error::ServiceError, AppState},
};
use app::types::ErrorBody;
use axum::{
    extract::{ws::rejection::WebSocketUpgradeRejection, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode},
    response::Response,
};

/// Largest frame (and message) a client may send; a chat message is at most 32,000 characters.
pub const MAX_FRAME_BYTES: usize = 256 << 10;

/// `GET /ws`
#[utoipa::path(get, path = "/ws", tag = "chat",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol. Frames are JSON text, `ClientFrame` from the client and `ServerFrame` from the server (the README has the details and an example)"),
        (status = 403, description = "A browser page of another site (its `Origin` is neither this server nor in `TRUSTED_ORIGINS`)", body = ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade (send `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a key)", body = ErrorBody),
        (status = 429, description = "The account has `ACCOUNT_WEBSOCKETS` sockets open already; `Retry-After` says when to try again", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub async fn socket(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    if let Some(why) = crate::auth::origin::cross_site(&headers, &state.config.server.trusted_origins) {
        tracing::warn!(%why, "refused a cross-origin WebSocket");
        return Err(ServiceError::Forbidden(why).into());
    }
    let upgrade = upgrade.map_err(|rejection| ApiError::BadRequest {
        status: StatusCode::UPGRADE_REQUIRED,
        param: None,
        code: "upgrade_required",
        message: format!("GET /ws opens a WebSocket: {rejection}"),
    })?;
    let place = state.limits.open_socket(&caller.account_id)?;
    let upgrade = upgrade.max_message_size(MAX_FRAME_BYTES).max_frame_size(MAX_FRAME_BYTES);
    Ok(upgrade.on_upgrade(move |socket| session::run(state, caller, socket, place)))
}
