//! Server functions: thin doors into the same service layer the REST API uses.

use crate::types::{
    AccountInfo, ChatData, ChatSettings, ConversationList, ConversationSummary, GalleryFilterForm, GalleryPage,
    HealthReport, SearchResults,
};
use leptos::prelude::*;

/// The same report as `GET /health`.
#[server]
pub async fn get_health() -> Result<HealthReport, ServerFnError> {
    Ok(backend().health(session().await?).await)
}

#[cfg(feature = "ssr")]
async fn session() -> Result<crate::ssr::Session, ServerFnError> {
    leptos_axum::extract::<crate::ssr::Session>().await.map_err(|e| ServerFnError::new(format!("no session: {e}")))
}

/// Log in; on success the page goes to `next` (or home).
#[server]
pub async fn login(username: String, password: String, next: Option<String>) -> Result<AccountInfo, ServerFnError> {
    let credentials = crate::types::Credentials { username: Some(username), password: Some(password) };
    let client = crate::ssr::client_addr();
    let account = failed(backend().login(session().await?, client, credentials).await)?;
    leptos_axum::redirect(&safe_next(next));
    Ok(account)
}

/// Sign up (the first account is the admin) and log in.
#[server]
pub async fn register(username: String, password: String) -> Result<AccountInfo, ServerFnError> {
    let credentials = crate::types::Credentials { username: Some(username), password: Some(password) };
    let client = crate::ssr::client_addr();
    let account = failed(backend().register(session().await?, client, credentials).await)?;
    leptos_axum::redirect("/");
    Ok(account)
}

#[server]
pub async fn logout() -> Result<(), ServerFnError> {
    failed(backend().logout(session().await?).await)?;
    leptos_axum::redirect("/login");
    Ok(())
}

/// Who this browser is logged in as.
#[server]
pub async fn whoami() -> Result<Option<AccountInfo>, ServerFnError> {
    Ok(backend().whoami(session().await?).await)
}

/// A page's data call: like `failed`, but when the session must log in first the page goes to the
/// log-in page and comes back after.
#[cfg(feature = "ssr")]
fn answer<T>(result: Result<T, crate::ssr::BackendError>) -> Result<T, ServerFnError> {
    match result {
        Err(e) if e.status == 401 => {
            login_first();
            // A page (or a form posted without script) gets the redirect's 302; a call from the
            // browser's client or any other program gets 401, not the 500 of an unset status.
            if !wants_html() {
                set_status(401);
            }
            Err(ServerFnError::new(e.message))
        }
        other => failed(other),
    }
}

/// Whether the request asked for HTML: a page being rendered, or a plain form post.
#[cfg(feature = "ssr")]
fn wants_html() -> bool {
    use_context::<http::request::Parts>()
        .and_then(|p| {
            p.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).map(|v| v.contains("text/html"))
        })
        .unwrap_or(false)
}

/// Redirect to the log-in page; rendering a page, with `next` to come back to it (called from the
/// browser, the page asks again after).
#[cfg(feature = "ssr")]
fn login_first() {
    let here = use_context::<http::request::Parts>().map(|p| p.uri.path().to_string());
    let target = match here.filter(|p| !p.starts_with("/api/")) {
        Some(path) => format!("/login?next={}", form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()),
        None => "/login".to_string(),
    };
    leptos_axum::redirect(&target);
}

/// A failure with the status the REST API would answer (a wrong password is 401, not 500).
#[cfg(feature = "ssr")]
fn failed<T>(result: Result<T, crate::ssr::BackendError>) -> Result<T, ServerFnError> {
    result.map_err(|e| {
        set_status(e.status);
        ServerFnError::new(e.message)
    })
}

#[cfg(feature = "ssr")]
fn set_status(status: u16) {
    if let (Some(response), Ok(status)) =
        (use_context::<leptos_axum::ResponseOptions>(), http::StatusCode::from_u16(status))
    {
        response.set_status(status);
    }
}

#[cfg(feature = "ssr")]
fn backend() -> crate::ssr::SharedBackend {
    expect_context::<crate::ssr::SharedBackend>()
}

#[server]
pub async fn load_chat(id: Option<String>) -> Result<ChatData, ServerFnError> {
    answer(backend().chat_data(session().await?, id).await)
}

#[server]
pub async fn list_conversations(offset: Option<u32>) -> Result<ConversationList, ServerFnError> {
    answer(backend().conversations(session().await?, offset).await)
}

#[server]
pub async fn rename_conversation(id: String, title: String) -> Result<ConversationSummary, ServerFnError> {
    answer(backend().rename_conversation(session().await?, id, title).await)
}

// JSON, not the default URL form: settings with every field empty (back to the defaults) would
// otherwise arrive as no `settings` at all.
#[server(input = leptos::server_fn::codec::Json)]
pub async fn save_chat_settings(id: String, settings: ChatSettings) -> Result<ConversationSummary, ServerFnError> {
    answer(backend().chat_settings(session().await?, id, settings).await)
}

#[server]
pub async fn delete_conversation(id: String) -> Result<(), ServerFnError> {
    answer(backend().delete_conversation(session().await?, id).await)
}

#[server]
pub async fn search_conversations(query: String) -> Result<SearchResults, ServerFnError> {
    answer(backend().search_conversations(session().await?, query).await)
}

/// Nothing but the check a page without data of its own needs: log in first (when required).
#[server]
pub async fn require_access() -> Result<(), ServerFnError> {
    answer(backend().chat_data(session().await?, None).await).map(drop)
}

// JSON for the same reason: a filter with every field empty would arrive as no `filter`.
#[server(input = leptos::server_fn::codec::Json)]
pub async fn load_gallery(filter: GalleryFilterForm) -> Result<GalleryPage, ServerFnError> {
    answer(backend().gallery(session().await?, filter).await)
}

/// Only paths inside this site: `next=https://evil.example` must not turn log-in into a
/// redirector. A browser resolves `Location` as a URL, dropping tabs and newlines anywhere and
/// reading `\` as `/`, so `/\t/evil.example` would become `//evil.example`: any control
/// character or backslash is refused, and what is left must be an absolute path that stays on
/// this origin (one leading `/`, not two).
pub fn safe_next(next: Option<String>) -> String {
    let same_origin_path = |n: &String| {
        n.starts_with('/')
            && !n.starts_with("//")
            && !n.chars().any(|c| c.is_control() || c == '\\' || c.is_whitespace())
            && n.len() <= 2048
    };
    next.filter(same_origin_path).unwrap_or_else(|| "/".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_stays_on_this_site() {
        use super::safe_next;
        assert_eq!(safe_next(Some("/gallery?q=fox".into())), "/gallery?q=fox");
        assert_eq!(safe_next(Some("/c/1%2F2?q=a%20b".into())), "/c/1%2F2?q=a%20b");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "gallery",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "\t//evil.example",
            " //evil.example",
            "/ /evil.example",
            "/\u{0}/evil.example",
            "/\u{7f}/evil.example",
            "/\u{85}/evil.example",
            "/\u{3000}/evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(bad.into())), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
