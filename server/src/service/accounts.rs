//! Accounts and API keys: sign-up, log-in checks, keys, and the admin's list.
//! Sessions themselves are the HTTP layer's business; this layer says who someone is.

use super::{
    error::{Result, ServiceError},
    limits::client_key,
    AppState,
};
use crate::{
    auth::{keys, password, Caller},
    storage::{now_ms, AccountRow, ApiKeyRow, NewAccount},
    telemetry::catalogue::LOGIN_FAILURES,
};
use app::types::{
    AccountInfo, AccountUpdate, ApiKeyInfo, CreatedApiKey, Credentials, NewApiKey, PasswordChange, QuotaReport,
};
use std::net::IpAddr;

pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=256;
pub const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 3..=32;
pub const KEY_NAME_CHARS: usize = 100;
const MAX_KEYS: usize = 50;

/// A username in its stored form (lower case), or what is wrong with it.
pub fn username(raw: Option<&str>) -> Result<String> {
    let name = raw.map(str::trim).unwrap_or_default().to_lowercase();
    let len = name.chars().count();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !USERNAME_CHARS.contains(&len) || !name.chars().all(allowed) {
        return Err(ServiceError::invalid("username", "must be 3 to 32 characters: letters, digits, `_`, `.` or `-`"));
    }
    Ok(name)
}

fn new_password(field: &str, raw: Option<&str>) -> Result<String> {
    let pw = raw.unwrap_or_default();
    let len = pw.chars().count();
    if !PASSWORD_CHARS.contains(&len) {
        return Err(ServiceError::invalid(field, format!("must be 8 to 256 characters, got {len}")));
    }
    Ok(pw.to_string())
}

/// Sign up from a client address. With `OPEN_REGISTRATION=false`, only the very first account
/// (the admin) may sign itself up; later ones are made by an admin. Both rules hold under
/// concurrent sign-ups: the database decides inside the insert.
pub async fn register(state: &AppState, client: Option<IpAddr>, credentials: Credentials) -> Result<AccountInfo> {
    state.limits.auth_request(&client_key(client)).await?;
    if !state.config.auth.open_registration && state.db.has_accounts().await? {
        return Err(closed());
    }
    let only_first = !state.config.auth.open_registration;
    create(state, credentials, only_first).await
}

fn closed() -> ServiceError {
    ServiceError::Forbidden("registration is closed: ask an admin for an account".into())
}

/// An admin makes an account for someone (it does not log anyone in).
pub async fn create_by_admin(state: &AppState, caller: &Caller, credentials: Credentials) -> Result<AccountInfo> {
    caller.require_admin()?;
    let account = create(state, credentials, false).await?;
    tracing::info!(admin = %caller.account_id, account = %account.id, "account made by an admin");
    Ok(account)
}

async fn create(state: &AppState, credentials: Credentials, only_first: bool) -> Result<AccountInfo> {
    let name = username(credentials.username.as_deref())?;
    let pw = new_password("password", credentials.password.as_deref())?;
    let hash = state.hashing.run(move || password::hash(&pw)).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let row = match state.db.create_account(&id, &name, &hash, only_first).await? {
        NewAccount::Created(row) => row,
        NewAccount::Taken => return Err(ServiceError::Conflict(format!("the username {name:?} is taken"))),
        NewAccount::Closed => return Err(closed()),
    };
    tracing::info!(account = %row.id, username = %row.username, role = %row.role, "account registered");
    Ok(info(&row))
}

/// The account these credentials open, for a client address. Every failure looks the same to
/// the caller, and takes as long, so usernames cannot be probed.
pub async fn check_login(state: &AppState, client: Option<IpAddr>, credentials: Credentials) -> Result<AccountInfo> {
    let refused = || {
        metrics::counter!(LOGIN_FAILURES, "reason" => "credentials").increment(1);
        ServiceError::Unauthenticated("wrong username or password".into())
    };
    let client = client_key(client);
    state.limits.auth_request(&client).await?;
    let name = username(credentials.username.as_deref()).map_err(|_| refused())?;
    state.limits.login_attempt(&name, &client).await?;
    let pw = credentials.password.unwrap_or_default();
    let row = state.db.account_by_name(&name).await?;
    let stored = row.as_ref().map(|r| r.password_hash.clone());
    // An unknown name is checked against a decoy, so it takes as long as a wrong password.
    let matches = state
        .hashing
        .run(move || match stored {
            Some(stored) => password::verify(&pw, &stored),
            None => password::verify(&pw, password::decoy()),
        })
        .await?;
    match row {
        Some(row) if matches && row.disabled_at.is_none() => Ok(info(&row)),
        Some(row) if matches => {
            tracing::info!(account = %row.id, "login refused: account disabled");
            metrics::counter!(LOGIN_FAILURES, "reason" => "disabled").increment(1);
            Err(ServiceError::Forbidden("this account is disabled".into()))
        }
        _ => Err(refused()),
    }
}

/// Change the caller's password; the current one must match (its guesses count as log-in
/// attempts from this address). Returns the time from which sessions count: every session logged
/// in before it is over, and the HTTP layer renews the caller's own.
pub async fn change_password(
    state: &AppState,
    caller: &Caller,
    client: Option<IpAddr>,
    change: PasswordChange,
) -> Result<i64> {
    let client = client_key(client);
    state.limits.login_attempt(&caller.username, &client).await?;
    let new = new_password("new_password", change.new_password.as_deref())?;
    let Some(row) = state.db.account(&caller.account_id).await? else {
        return Err(ServiceError::Forbidden("without accounts (AUTH_REQUIRED=false) there is no password".into()));
    };
    let (current, stored) = (change.current_password.unwrap_or_default(), row.password_hash);
    if !state.hashing.run(move || password::verify(&current, &stored)).await? {
        return Err(ServiceError::invalid("current_password", "is not this account's password"));
    }
    let hash = state.hashing.run(move || password::hash(&new)).await?;
    let since = now_ms();
    state.db.set_password(&caller.account_id, &hash, since).await?;
    tracing::info!(account = %caller.account_id, "password changed; other sessions ended");
    Ok(since)
}

pub async fn me(state: &AppState, caller: &Caller) -> Result<AccountInfo> {
    match state.db.account(&caller.account_id).await? {
        Some(row) => Ok(info(&row)),
        // The open mode's local owner has no row.
        None => Ok(AccountInfo {
            id: caller.account_id.clone(),
            username: caller.username.clone(),
            role: caller.role.as_str().into(),
            disabled: false,
            created_at: 0,
        }),
    }
}

pub async fn create_key(state: &AppState, caller: &Caller, request: NewApiKey) -> Result<CreatedApiKey> {
    let sent = request.name.as_deref().map_or(0, |n| n.chars().count());
    let name = request.name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty() || sent > KEY_NAME_CHARS {
        return Err(ServiceError::invalid("name", "must be 1 to 100 characters"));
    }
    needs_account(state, caller).await?;
    let live = state.db.api_keys(&caller.account_id).await?.iter().filter(|k| k.revoked_at.is_none()).count();
    if live >= MAX_KEYS {
        return Err(ServiceError::Conflict(format!("an account may have at most {MAX_KEYS} keys; revoke one first")));
    }
    let key = keys::new_api_key();
    let row = ApiKeyRow {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: caller.account_id.clone(),
        name: name.to_string(),
        prefix: keys::shown_prefix(&key),
        created_at: now_ms(),
        last_used_at: None,
        revoked_at: None,
    };
    state.db.insert_api_key(&row, &keys::key_hash(&key)).await?;
    tracing::info!(account = %caller.account_id, key = %row.id, "API key created");
    Ok(CreatedApiKey { key, info: key_info(row) })
}

pub async fn list_keys(state: &AppState, caller: &Caller) -> Result<Vec<ApiKeyInfo>> {
    Ok(state.db.api_keys(&caller.account_id).await?.into_iter().map(key_info).collect())
}

pub async fn revoke_key(state: &AppState, caller: &Caller, id: &str) -> Result<()> {
    if !state.db.revoke_api_key(&caller.account_id, id).await? {
        return Err(ServiceError::NotFound("API key"));
    }
    tracing::info!(account = %caller.account_id, key = %id, "API key revoked");
    Ok(())
}

pub async fn list_accounts(state: &AppState, caller: &Caller) -> Result<Vec<AccountInfo>> {
    caller.require_admin()?;
    Ok(state.db.accounts().await?.iter().map(info).collect())
}

pub async fn update_account(state: &AppState, caller: &Caller, id: &str, update: AccountUpdate) -> Result<AccountInfo> {
    caller.require_admin()?;
    if let Some(disabled) = update.disabled {
        if disabled && id == caller.account_id {
            return Err(ServiceError::invalid("disabled", "an admin cannot disable their own account"));
        }
        if !state.db.set_account_disabled(id, disabled).await? {
            return Err(ServiceError::NotFound("account"));
        }
        tracing::info!(admin = %caller.account_id, account = %id, disabled, "account updated");
    }
    state.db.account(id).await?.map(|row| info(&row)).ok_or(ServiceError::NotFound("account"))
}

/// Usage and limits of the caller's account, and of one of its end users when named.
pub async fn quota(state: &AppState, caller: &Caller, user_id: Option<String>) -> Result<QuotaReport> {
    let user = super::validate::user_id("user_id", user_id)?;
    Ok(state.limits.report(&state.db, &caller.account_id, user.as_deref()).await?)
}

/// Keys belong to real accounts; the open mode's local owner has none to attach them to.
async fn needs_account(state: &AppState, caller: &Caller) -> Result<()> {
    match state.db.account(&caller.account_id).await? {
        Some(_) => Ok(()),
        None => Err(ServiceError::Forbidden("register an account first: API keys belong to accounts".into())),
    }
}

fn info(row: &AccountRow) -> AccountInfo {
    AccountInfo {
        id: row.id.clone(),
        username: row.username.clone(),
        role: row.role.clone(),
        disabled: row.disabled_at.is_some(),
        created_at: row.created_at,
    }
}

fn key_info(row: ApiKeyRow) -> ApiKeyInfo {
    ApiKeyInfo {
        id: row.id,
        name: row.name,
        prefix: row.prefix,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        revoked_at: row.revoked_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_folded_and_checked() {
        assert_eq!(username(Some("  Alice.B-2 ")).unwrap(), "alice.b-2");
        for bad in [None, Some("ab"), Some("a b c"), Some("émile"), Some(&*"x".repeat(33))] {
            assert!(matches!(username(bad), Err(ServiceError::Invalid { ref field, .. }) if field == "username"));
        }
    }

    #[test]
    fn passwords_need_eight_to_256_characters() {
        assert!(new_password("password", Some("1234567")).is_err());
        assert!(new_password("password", Some("12345678")).is_ok());
        assert!(new_password("password", Some(&"p".repeat(257))).is_err());
        assert!(new_password("password", None).is_err());
    }
}
