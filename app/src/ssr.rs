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
    fn health(&self) -> BoxFuture<'_, HealthReport>;
    /// Check the credentials and log this browser session in.
    fn login(&self, session: Session, credentials: Credentials) -> Answer<'_, AccountInfo>;
    /// Make an account (when sign-up is open) and log this browser session in.
    fn register(&self, session: Session, credentials: Credentials) -> Answer<'_, AccountInfo>;
    fn logout(&self, session: Session) -> Answer<'_, ()>;
    /// The account this session is logged in as, if any.
    fn whoami(&self, session: Session) -> BoxFuture<'_, Option<AccountInfo>>;

    // The pages' data, for the session's account (401 when accounts are required and it is not
    // logged in; another account's ids are 404, as over REST).
    /// The chat page: the end-user id its new conversations are made for, and one conversation.
    fn chat_data(&self, session: Session, id: Option<String>) -> Answer<'_, crate::types::ChatData>;
    fn conversations(&self, session: Session, offset: Option<u32>) -> Answer<'_, ConversationList>;
    fn rename_conversation(&self, session: Session, id: String, title: String) -> Answer<'_, ConversationSummary>;
    fn delete_conversation(&self, session: Session, id: String) -> Answer<'_, ()>;
    fn search_conversations(&self, session: Session, query: String) -> Answer<'_, SearchResults>;
    fn gallery(&self, session: Session, filter: GalleryFilterForm) -> Answer<'_, GalleryPage>;
}

/// Provided as Leptos context on every server-rendered page and server-function call.
pub type SharedBackend = Arc<dyn Backend>;
