//! What the server provides to server functions. The server crate implements `Backend` over its
//! service layer, so a server function and the matching REST handler run the same code.

use crate::types::{AccountInfo, Credentials, HealthReport};
use std::{future::Future, pin::Pin, sync::Arc};
pub use tower_sessions::Session;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Failures are the message to show (the service layer's error text).
pub trait Backend: Send + Sync + 'static {
    fn health(&self) -> BoxFuture<'_, HealthReport>;
    /// Check the credentials and log this browser session in.
    fn login(&self, session: Session, credentials: Credentials) -> BoxFuture<'_, Result<AccountInfo, String>>;
    /// Make an account (when sign-up is open) and log this browser session in.
    fn register(&self, session: Session, credentials: Credentials) -> BoxFuture<'_, Result<AccountInfo, String>>;
    fn logout(&self, session: Session) -> BoxFuture<'_, Result<(), String>>;
    /// The account this session is logged in as, if any.
    fn whoami(&self, session: Session) -> BoxFuture<'_, Option<AccountInfo>>;
}

/// Provided as Leptos context on every server-rendered page and server-function call.
pub type SharedBackend = Arc<dyn Backend>;
