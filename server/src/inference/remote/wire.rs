//! What web processes and workers say to each other (`/internal/…`): a generation request, then
//! its events, one JSON object per line.

use crate::inference::llm::GenerateRequest;
use serde::{Deserialize, Serialize};

/// `POST /internal/generate`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenerateCall {
    /// Names the generation for `POST /internal/cancel/{id}`.
    pub id: String,
    /// The message id a chat turn's reply will be stored under: when the web process goes away
    /// mid-reply the worker finishes it and keeps it for `GET /internal/replies/{reply_id}`.
    #[serde(default)]
    pub reply_id: Option<String>,
    pub request: GenerateRequest,
}

/// The header carrying the shared secret (`Authorization: Bearer` is the API's).
pub const SECRET_HEADER: &str = "x-duet-worker-secret";
