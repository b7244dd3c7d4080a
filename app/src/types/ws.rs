//! The frames of `GET /ws`: one JSON object a text frame, each way. The server sends the same
//! events as the SSE streams (`POST /chat` with `stream: true`, `GET /jobs/{id}/events`).

use super::{ChatEvent, ChatRequest, ErrorDetail, JobInfo};
use serde::{Deserialize, Serialize};

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A chat message: `body` is what `POST /chat` takes (its events always stream). `ref` names
    /// the turn in the frames that answer it (1 to 64 characters; default: one the server picks,
    /// told in every frame).
    Chat {
        #[serde(default, rename = "ref")]
        reference: Option<String>,
        body: Box<ChatRequest>,
    },
    /// Stop a reply, as hanging up does: what was written so far is kept.
    Stop {
        #[serde(rename = "ref")]
        reference: String,
    },
    /// Follow a job: its state now, then each change, as `job` frames until it ends.
    Subscribe { job_id: String },
    /// Cancel a job: a queued one at once, a running one before its next step.
    CancelJob { job_id: String },
    /// Answered with `pong` (the server also sends WebSocket pings of its own).
    Ping,
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// An event of a reply, as `POST /chat` streams it; `conversation_id` from `start` on.
    Chat {
        #[serde(rename = "ref")]
        reference: String,
        conversation_id: Option<String>,
        data: ChatEvent,
    },
    /// A reply was stopped at the client's word; nothing more comes for its `ref`.
    Stopped {
        #[serde(rename = "ref")]
        reference: String,
    },
    /// A job's state, for a subscription or a cancel.
    Job {
        job_id: String,
        data: JobInfo,
    },
    /// A frame that could not be served (the REST API's error, with the `ref` or job it was for).
    Error {
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
        error: ErrorDetail,
    },
    Pong,
}
