//! The service layer: what Duet does, called alike by REST handlers and Leptos server functions.

pub mod health;

use crate::state::AppState;
use app::{
    ssr::{Backend, BoxFuture},
    types::HealthReport,
};

impl Backend for AppState {
    fn health(&self) -> BoxFuture<'_, HealthReport> {
        Box::pin(health::report(self))
    }
}
