//! Server functions: thin doors into the same service layer the REST API uses.

use crate::types::{AccountInfo, HealthReport};
use leptos::prelude::*;

/// The same report as `GET /health`.
#[server]
pub async fn get_health() -> Result<HealthReport, ServerFnError> {
    let backend = expect_context::<crate::ssr::SharedBackend>();
    Ok(backend.health().await)
}

#[cfg(feature = "ssr")]
async fn session() -> Result<crate::ssr::Session, ServerFnError> {
    leptos_axum::extract::<crate::ssr::Session>().await.map_err(|e| ServerFnError::new(format!("no session: {e}")))
}

/// Log in; on success the page goes to `next` (or home).
#[server]
pub async fn login(username: String, password: String, next: Option<String>) -> Result<AccountInfo, ServerFnError> {
    let backend = expect_context::<crate::ssr::SharedBackend>();
    let credentials = crate::types::Credentials { username: Some(username), password: Some(password) };
    let account = backend.login(session().await?, credentials).await.map_err(ServerFnError::new)?;
    leptos_axum::redirect(&safe_next(next));
    Ok(account)
}

/// Sign up (the first account is the admin) and log in.
#[server]
pub async fn register(username: String, password: String) -> Result<AccountInfo, ServerFnError> {
    let backend = expect_context::<crate::ssr::SharedBackend>();
    let credentials = crate::types::Credentials { username: Some(username), password: Some(password) };
    let account = backend.register(session().await?, credentials).await.map_err(ServerFnError::new)?;
    leptos_axum::redirect("/");
    Ok(account)
}

#[server]
pub async fn logout() -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::ssr::SharedBackend>();
    backend.logout(session().await?).await.map_err(ServerFnError::new)?;
    leptos_axum::redirect("/login");
    Ok(())
}

/// Who this browser is logged in as.
#[server]
pub async fn whoami() -> Result<Option<AccountInfo>, ServerFnError> {
    let backend = expect_context::<crate::ssr::SharedBackend>();
    Ok(backend.whoami(session().await?).await)
}

/// Only paths inside this site: `next=https://evil.example` must not turn log-in into a redirector.
pub fn safe_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\')).unwrap_or_else(|| "/".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_stays_on_this_site() {
        use super::safe_next;
        assert_eq!(safe_next(Some("/gallery?q=fox".into())), "/gallery?q=fox");
        for bad in ["https://evil.example", "//evil.example", "/\\evil.example", "gallery"] {
            assert_eq!(safe_next(Some(bad.into())), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
