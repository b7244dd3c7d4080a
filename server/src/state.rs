//! The one state every handler and server function sees.

use crate::{
    config::Config,
    inference::runtime::Runtime,
    models::{loader::Engines, ModelSlot},
    storage::Database,
};
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub llm: Arc<ModelSlot>,
    pub sd: Arc<ModelSlot>,
    pub engines: Engines,
    /// The OpenVINO runtime; `None` in mock mode.
    pub runtime: Option<Runtime>,
    pub leptos: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
