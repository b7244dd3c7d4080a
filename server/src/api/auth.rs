//! Accounts over HTTP: register, log in and out (browser sessions), the caller's own account and
//! API keys, and the admin's account list.

use super::{
    error::Result,
    json::{ApiJson, ApiQuery},
};
use crate::{
    auth::{sessions, Caller},
    service::accounts,
    service::AppState,
};
use app::ssr::ClientAddr;
use app::types::{
    AccountInfo, AccountUpdate, ApiKeyInfo, CreatedApiKey, Credentials, ErrorBody, NewApiKey, PasswordChange,
    QuotaReport,
};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Extension, Json,
};
use tower_sessions::Session;

/// `POST /auth/register`: a new account (the first one is the admin); logs the browser in.
#[utoipa::path(post, path = "/auth/register", tag = "accounts", request_body = Credentials, security(()),
    responses((status = 201, body = AccountInfo), (status = 403, description = "Registration is closed (OPEN_REGISTRATION=false)", body = ErrorBody),
              (status = 409, description = "Username taken", body = ErrorBody),
              (status = 422, description = "`error.param` names the bad field", body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    session: Session,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Response> {
    let account = accounts::register(&state, client.map(|c| c.0 .0), credentials).await?;
    sessions::start(&session, &account.id).await?;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

/// `POST /auth/login`: start a browser session (cookie `HttpOnly`, `SameSite=Lax`).
#[utoipa::path(post, path = "/auth/login", tag = "accounts", request_body = Credentials, security(()),
    responses((status = 200, body = AccountInfo), (status = 401, description = "Wrong username or password", body = ErrorBody),
              (status = 403, description = "Account disabled", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    session: Session,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Json<AccountInfo>> {
    let account = accounts::check_login(&state, client.map(|c| c.0 .0), credentials).await?;
    sessions::start(&session, &account.id).await?;
    Ok(Json(account))
}

/// `POST /auth/logout`: end the browser session.
#[utoipa::path(post, path = "/auth/logout", tag = "accounts", security(()), responses((status = 204)))]
pub async fn logout(session: Session) -> Result<StatusCode> {
    crate::auth::sessions::end(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /auth/me`: the account behind this request.
#[utoipa::path(get, path = "/auth/me", tag = "accounts",
    responses((status = 200, body = AccountInfo), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<AccountInfo>> {
    Ok(Json(accounts::me(&state, &caller).await?))
}

/// `POST /account/password`: change the caller's password. Every other browser session of the
/// account ends; this one (when the request comes from one) goes on; API keys keep working.
#[utoipa::path(post, path = "/account/password", tag = "accounts", request_body = PasswordChange,
    responses((status = 204, description = "Changed; other sessions are over"),
              (status = 403, description = "No accounts in this mode (AUTH_REQUIRED=false)", body = ErrorBody),
              (status = 422, description = "`current_password` is wrong, or `new_password` is not 8 to 256 characters", body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    client: Option<Extension<ClientAddr>>,
    session: Session,
    ApiJson(change): ApiJson<PasswordChange>,
) -> Result<StatusCode> {
    let since = accounts::change_password(&state, &caller, client.map(|c| c.0 .0), change).await?;
    if caller.via == crate::auth::Via::Session {
        sessions::renew(&session, since).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /account/keys`: the caller's API keys (never the secrets).
#[utoipa::path(get, path = "/account/keys", tag = "accounts", responses((status = 200, body = Vec<ApiKeyInfo>)))]
pub async fn list_keys(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<ApiKeyInfo>>> {
    Ok(Json(accounts::list_keys(&state, &caller).await?))
}

/// `POST /account/keys`: a new API key, shown this once.
#[utoipa::path(post, path = "/account/keys", tag = "accounts", request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 409, description = "The account has 50 live keys already", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<NewApiKey>,
) -> Result<Response> {
    let created = accounts::create_key(&state, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /account/keys/{id}`: revoke a key at once.
#[utoipa::path(delete, path = "/account/keys/{id}", tag = "accounts", params(("id" = String, Path, description = "An API key id (from `GET /account/keys`)")),
    responses((status = 204), (status = 404, description = "Not one of the caller's live keys", body = ErrorBody)))]
pub async fn revoke_key(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    accounts::revoke_key(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/accounts`: every account (admins only).
#[utoipa::path(get, path = "/admin/accounts", tag = "accounts",
    responses((status = 200, body = Vec<AccountInfo>), (status = 403, body = ErrorBody)))]
pub async fn list_accounts(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<AccountInfo>>> {
    Ok(Json(accounts::list_accounts(&state, &caller).await?))
}

/// `POST /admin/accounts`: make an account for someone (admins only; no one is logged in).
#[utoipa::path(post, path = "/admin/accounts", tag = "accounts", request_body = Credentials,
    responses((status = 201, body = AccountInfo), (status = 403, body = ErrorBody), (status = 409, description = "Username taken", body = ErrorBody)))]
pub async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Response> {
    let account = accounts::create_by_admin(&state, &caller, credentials).await?;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

/// `PATCH /admin/accounts/{id}`: disable or re-enable an account (admins only).
#[utoipa::path(patch, path = "/admin/accounts/{id}", tag = "accounts", request_body = AccountUpdate, params(("id" = String, Path, description = "An account id")),
    responses((status = 200, body = AccountInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<AccountUpdate>,
) -> Result<Json<AccountInfo>> {
    Ok(Json(accounts::update_account(&state, &caller, &id, update).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuotaQuery {
    /// Also report this end user's usage and limits.
    pub user_id: Option<String>,
}

/// `GET /quota[?user_id=…]`: usage and limits of the caller's account (and one end user).
#[utoipa::path(get, path = "/quota", tag = "accounts", params(QuotaQuery),
    responses((status = 200, body = QuotaReport)))]
pub async fn quota(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<QuotaQuery>,
) -> Result<Json<QuotaReport>> {
    Ok(Json(accounts::quota(&state, &caller, query.user_id).await?))
}
