//! What the server provides to server functions. The server crate implements `Backend` over its
//! service layer, so a server function and the matching REST handler run the same code.

use crate::types::HealthReport;
use std::{future::Future, pin::Pin, sync::Arc};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Backend: Send + Sync + 'static {
    fn health(&self) -> BoxFuture<'_, HealthReport>;
}

/// Provided as Leptos context on every server-rendered page and server-function call.
pub type SharedBackend = Arc<dyn Backend>;
