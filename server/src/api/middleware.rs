//! Who is asking, for HTTP: the two layers in front of the routes: the cross-origin guard (every route) and
//! authentication (every route but health, login/register, share links and static files).

use super::error::ApiError;
use crate::{
    auth::{keys, origin, session_error, Caller, Role, Via, SESSION_ACCOUNT, SESSION_SINCE},
    service::error::ServiceError,
    service::AppState,
    storage::now_ms,
};
use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderMap},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_sessions::Session;

/// `last_used_at` of an API key is written at most this often, so busy keys do not turn every
/// request into a database write.
const KEY_TOUCH_MS: i64 = 60_000;

pub async fn guard_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match origin::cross_origin(req.method(), req.headers(), &state.config.server.trusted_origins) {
        None => next.run(req).await,
        Some(why) => {
            tracing::warn!(%why, "refused a cross-origin request");
            ApiError::from(ServiceError::Forbidden(why)).into_response()
        }
    }
}

/// Find the caller, count the request against its account's rate limit, and hand it to the
/// handler; or answer 401 (no credentials) or 429 (over the limit).
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let session = req.extensions().get::<Session>().cloned();
    match admit(&state, req.headers(), session).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// The caller (the open pseudo-account when accounts are not required), counted against its
/// account's request rate: for REST requests and for the pages' server functions alike.
pub async fn admit(state: &AppState, headers: &HeaderMap, session: Option<Session>) -> Result<Caller, ServiceError> {
    let caller = match identify(state, headers, session).await? {
        Some(caller) => caller,
        None if !state.config.auth.required => Caller::local(),
        None => {
            return Err(ServiceError::Unauthenticated(
                "authentication required: log in, or send `Authorization: Bearer <API key>`".into(),
            ))
        }
    };
    state.limits.request(&caller.account_id, None).await?;
    Ok(caller)
}

/// The caller named by an API key or the session cookie; `None` when there are no credentials.
/// A key that is not valid is an error when accounts are required; in the open single-user mode
/// it is ignored, since OpenAI clients insist on sending some key.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    session: Option<Session>,
) -> Result<Option<Caller>, ServiceError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ServiceError::Unauthenticated("the Authorization header must be `Bearer <API key>`".into())
            })?;
        return match state.db.api_key_owner(&keys::key_hash(key)).await? {
            Some(owner) if owner.disabled_at.is_some() => {
                Err(ServiceError::Forbidden("this account is disabled".into()))
            }
            Some(owner) => {
                if owner.last_used_at.is_none_or(|t| now_ms() - t > KEY_TOUCH_MS) {
                    state.db.touch_api_key(&owner.key_id).await?;
                }
                Ok(Some(Caller {
                    account_id: owner.account_id,
                    username: owner.username,
                    role: Role::parse(&owner.role),
                    via: Via::ApiKey,
                }))
            }
            None if !state.config.auth.required => Ok(None),
            None => Err(ServiceError::Unauthenticated("invalid or revoked API key".into())),
        };
    }
    let Some(session) = session else { return Ok(None) };
    let Some(id) = session.get::<String>(SESSION_ACCOUNT).await.map_err(session_error)? else { return Ok(None) };
    let since = session.get::<i64>(SESSION_SINCE).await.map_err(session_error)?.unwrap_or(0);
    match state.db.account(&id).await? {
        // Disabled, gone, or its password changed since this session logged in: it ends here.
        Some(account) if account.disabled_at.is_none() && since >= account.sessions_since => Ok(Some(Caller {
            account_id: account.id,
            username: account.username,
            role: Role::parse(&account.role),
            via: Via::Session,
        })),
        _ => {
            session.flush().await.map_err(session_error)?;
            Ok(None)
        }
    }
}

/// Handlers behind `middleware::authenticate` take the caller it found.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ServiceError::Unauthenticated("log in or send an API key".into()).into())
    }
}
