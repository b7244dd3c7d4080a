//! What the server provides to server functions. The server crate implements `Backend` over its
//! service layer, so a server function and the matching REST handler run the same code.

use crate::types::{
    AccountInfo, ConversationList, ConversationSummary, Credentials, GalleryFilterForm, GalleryPage, HealthReport,
    SearchResults,
};
use std::{future::Future, pin::Pin, sync::Arc};
pub use tower_sessions::Session;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failed call: the HTTP status the REST API would answer and the service layer's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    pub status: u16,
    pub message: String,
}

pub type Answer<'a, T> = BoxFuture<'a, Result<T, BackendError>>;

pub trait Backend: Send + Sync + 'static {
    /// `GET /health`'s report, with paths and error texts only for an admin session.
    fn health(&self, session: Session) -> BoxFuture<'_, HealthReport>;
    /// Check the credentials and log this browser session in (`client`: its address, for limits).
    fn login(
        &self,
        session: Session,
        client: Option<std::net::IpAddr>,
        credentials: Credentials,
    ) -> Answer<'_, AccountInfo>;
    /// Make an account (when sign-up is open) and log this browser session in.
    fn register(
        &self,
        session: Session,
        client: Option<std::net::IpAddr>,
        credentials: Credentials,
    ) -> Answer<'_, AccountInfo>;
    fn logout(&self, session: Session) -> Answer<'_, ()>;
    /// The account this session is logged in as, if any.
    fn whoami(&self, session: Session) -> BoxFuture<'_, Option<AccountInfo>>;

    // The pages' data, for the session's account (401 when accounts are required and it is not
    // logged in; another account's ids are 404, as over REST).
    /// The chat page: the end-user id its new conversations are made for, and one conversation.
    fn chat_data(&self, session: Session, id: Option<String>) -> Answer<'_, crate::types::ChatData>;
    fn conversations(&self, session: Session, offset: Option<u32>) -> Answer<'_, ConversationList>;
    fn rename_conversation(&self, session: Session, id: String, title: String) -> Answer<'_, ConversationSummary>;
    /// Replace a conversation's chat settings.
    fn chat_settings(
        &self,
        session: Session,
        id: String,
        settings: crate::types::ChatSettings,
    ) -> Answer<'_, ConversationSummary>;
    fn delete_conversation(&self, session: Session, id: String) -> Answer<'_, ()>;
    fn search_conversations(&self, session: Session, query: String) -> Answer<'_, SearchResults>;
    fn gallery(&self, session: Session, filter: GalleryFilterForm) -> Answer<'_, GalleryPage>;
}

/// Provided as Leptos context on every server-rendered page and server-function call.
pub type SharedBackend = Arc<dyn Backend>;

/// The client's address as the server determined it (the connection's, or the one a trusted
/// proxy forwarded), in the request's extensions: log-in and sign-up are limited per address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The client address of the request being served (a page render or a server function).
pub fn client_addr() -> Option<std::net::IpAddr> {
    leptos::prelude::use_context::<http::request::Parts>()?.extensions.get::<ClientAddr>().map(|c| c.0)
}

/// The Content-Security-Policy of every answer: scripts only from this site, plus on pages the
/// inline scripts Leptos writes (hydration, streamed resources), which carry the render's `nonce`;
/// WebAssembly compiled from this site's own file; styles from this site (inline `style`
/// attributes too); no plugins, no framing by other sites.
pub fn content_security_policy(nonce: Option<&str>) -> String {
    static WATCH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // `cargo leptos watch` reloads the page over a websocket on its own port.
    let reload = if *WATCH.get_or_init(|| std::env::var_os("LEPTOS_WATCH").is_some()) { " ws: wss:" } else { "" };
    let nonce = nonce.map(|n| format!(" 'nonce-{n}'")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{nonce}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; font-src 'self'; connect-src 'self'{reload}; object-src 'none'; \
         base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Give this page's answer the policy with its render's nonce (the server's middleware gives
/// every other answer the policy without one).
pub fn set_page_policy() {
    use leptos::prelude::use_context;
    let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
    else {
        return;
    };
    if let Ok(value) = http::HeaderValue::from_str(&content_security_policy(Some(&nonce))) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}
