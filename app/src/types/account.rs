//! Accounts, API keys and quotas: `/auth/*`, `/account/*`, `/admin/*`, `/quota`.

use serde::{Deserialize, Serialize};

/// Change one's own password (`POST /account/password`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    /// The password now.
    #[serde(default)]
    pub current_password: Option<String>,
    /// 8 to 256 characters.
    #[serde(default)]
    pub new_password: Option<String>,
}

/// Register or log in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Credentials {
    /// 3 to 32 characters: letters, digits, `_`, `.`, `-` (case does not matter).
    #[serde(default)]
    pub username: Option<String>,
    /// 8 to 256 characters.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AccountInfo {
    pub id: String,
    pub username: String,
    /// `admin` or `user`; the first account is the admin.
    pub role: String,
    pub disabled: bool,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// `PATCH /admin/accounts/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AccountUpdate {
    /// Disable (true) or re-enable (false) the account. A disabled account's sessions and keys
    /// stop working at once.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// `POST /account/keys`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewApiKey {
    /// A name to recognise the key by (1 to 100 characters).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A key just made: the only time the secret is shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    /// Send as `Authorization: Bearer <key>`. It cannot be shown again.
    pub key: String,
    pub info: ApiKeyInfo,
}

/// One limit and how much of it is used.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Limit {
    /// `null`: no limit.
    pub limit: Option<u64>,
    pub used: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct QuotaScope {
    /// Requests in the last minute, as the token bucket sees them.
    pub requests_per_minute: Limit,
    /// Chat replies and image jobs running or queued now.
    pub concurrent_generations: Limit,
    /// Images made today (UTC), queued ones included.
    pub images_per_day: Limit,
    /// Tokens generated today (UTC), reasoning included.
    pub tokens_per_day: Limit,
}

/// `GET /quota[?user_id=…]`: the caller's account, and one of its end users when asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct QuotaReport {
    pub user_id: Option<String>,
    pub account: QuotaScope,
    pub user: Option<QuotaScope>,
    /// When the daily counts start again (Unix milliseconds, next UTC midnight).
    pub day_resets_at: i64,
}
