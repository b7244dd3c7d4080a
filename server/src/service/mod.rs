//! The service layer: what Duet does, called alike by REST handlers and Leptos server functions.

pub mod accounts;
pub mod chat;
pub mod cluster;
pub mod completions;
pub mod error;
pub mod fair_queue;
pub mod gallery;
pub mod health;
pub mod history;
pub mod image_prompt;
pub mod images;
pub mod limits;
pub mod load;
pub mod metrics;
pub mod presence;
pub mod sanitize;
pub mod serving;
pub mod state;
pub mod templates;
pub mod validate;

use crate::{
    inference::engine::{ChatEngine, ImageEngine},
    models::ModelSlot,
};
use app::types::ModelState;
use error::ServiceError;
pub use state::AppState;
use std::sync::Arc;

impl AppState {
    /// The chat engine, when its model is ready; otherwise why not (503).
    pub fn chat_engine(&self) -> Result<Arc<dyn ChatEngine>, ServiceError> {
        ready(&self.llm, "chat")?;
        self.engines.llm().ok_or_else(|| unavailable("the chat model is not loaded".into(), None))
    }

    /// The image engine, when its model is ready; otherwise why not (503).
    pub fn image_engine(&self) -> Result<Arc<dyn ImageEngine>, ServiceError> {
        ready(&self.sd, "image")?;
        self.engines.sd().ok_or_else(|| unavailable("the image model is not loaded".into(), None))
    }
}

fn unavailable(message: String, retry_after_s: Option<u64>) -> ServiceError {
    ServiceError::Unavailable { message, retry_after_s }
}

fn ready(slot: &ModelSlot, what: &str) -> Result<(), ServiceError> {
    let health = slot.health();
    let detail = health.detail.unwrap_or_default();
    match health.state {
        ModelState::Ready => Ok(()),
        ModelState::Loading => {
            Err(unavailable(format!("the {what} model is still loading; try again shortly"), Some(10)))
        }
        ModelState::Downloading => {
            let pct = health.progress.map_or(String::new(), |p| format!(" ({:.0}%)", p * 100.0));
            Err(unavailable(format!("the {what} model is downloading{pct}; try again later"), Some(30)))
        }
        ModelState::Missing => Err(unavailable(format!("the {what} model is missing: {detail}"), None)),
        // Workers or endpoints come back by themselves: worth trying again.
        ModelState::Error if slot.answered_elsewhere() => {
            Err(unavailable(format!("the {what} model is not reachable: {detail}"), Some(5)))
        }
        ModelState::Error => Err(unavailable(format!("the {what} model failed to load: {detail}"), None)),
    }
}
