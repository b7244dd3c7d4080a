//! The service layer's one error type. The HTTP layer turns each kind into a status code; the
//! messages are written for the caller (no internals), except `Storage`/`Engine`, which the HTTP
//! layer logs and replaces.

use crate::{
    auth::AuthError,
    inference::{
        diffusion::InvalidField,
        llm::{Failure, FailureKind},
    },
    jobs::JobError,
    storage::StorageError,
};
use app::types::ErrorDetail;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input: the field (a JSON path) and what it accepts.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The prompt does not fit the model's context window even with older turns dropped: the
    /// field (`messages`, `message`) to shorten (OpenAI's `context_length_exceeded`, 400).
    #[error("{message}")]
    TooLong { field: String, message: String },
    /// No such thing, or not the caller's.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A queue is full; try again after the given seconds.
    #[error("{message}")]
    Busy { message: String, retry_after_s: u64 },
    /// A model is missing, loading or failed to load.
    #[error("{message}")]
    Unavailable { message: String, retry_after_s: Option<u64> },
    #[error("{0}")]
    Timeout(String),
    /// No credentials, or ones that are not valid (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right (403).
    #[error("{0}")]
    Forbidden(String),
    /// The thing exists already, e.g. a taken username (409).
    #[error("{0}")]
    Conflict(String),
    /// Over a rate limit or quota (429): which limit, and when to try again.
    #[error("{message}")]
    Limited { limit: String, message: String, retry_after_s: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Engine(String),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Invalid { field: field.into(), message: message.into() }
    }
}

impl ServiceError {
    /// The chat engine refused or failed a generation; `field` is what the caller sent as the
    /// conversation (`messages` or `message`).
    pub fn from_failure(failure: Failure, field: &str) -> Self {
        match failure.kind {
            FailureKind::ContextLength => ServiceError::TooLong { field: field.into(), message: failure.message },
            FailureKind::Invalid => ServiceError::invalid(field, failure.message),
            FailureKind::Cancelled | FailureKind::Internal => ServiceError::Engine(failure.message),
            FailureKind::Unavailable => ServiceError::Unavailable { message: failure.message, retry_after_s: Some(5) },
        }
    }
}

/// An error body: its type, the field at fault, its code and message.
pub fn detail(kind: &str, param: Option<String>, code: &str, message: String) -> ErrorDetail {
    ErrorDetail { message, kind: kind.into(), param, code: Some(code.into()) }
}

impl ServiceError {
    /// The error as callers see it (OpenAI's shape), and `Retry-After` seconds when waiting
    /// helps. Server-side failures say only where to look in the log.
    pub fn detail(&self) -> (ErrorDetail, Option<u64>) {
        let e = self;
        match e {
            ServiceError::Invalid { field, message } => (
                detail("invalid_request_error", Some(field.clone()), "invalid_field", format!("{field}: {message}")),
                None,
            ),
            ServiceError::TooLong { field, message } => {
                (detail("invalid_request_error", Some(field.clone()), "context_length_exceeded", message.clone()), None)
            }
            ServiceError::NotFound(_) => (detail("not_found_error", None, "not_found", e.to_string()), None),
            ServiceError::Busy { retry_after_s, .. } => {
                (detail("overloaded_error", None, "queue_full", e.to_string()), Some(*retry_after_s))
            }
            ServiceError::Unavailable { retry_after_s, .. } => {
                (detail("unavailable_error", None, "model_unavailable", e.to_string()), *retry_after_s)
            }
            ServiceError::Timeout(_) => (detail("timeout_error", None, "timeout", e.to_string()), None),
            ServiceError::Unauthenticated(_) => {
                (detail("authentication_error", None, "unauthenticated", e.to_string()), None)
            }
            ServiceError::Forbidden(_) => (detail("permission_error", None, "forbidden", e.to_string()), None),
            ServiceError::Conflict(_) => (detail("invalid_request_error", None, "conflict", e.to_string()), None),
            ServiceError::Limited { limit, retry_after_s, .. } => {
                (detail("rate_limit_error", Some(limit.clone()), "rate_limited", e.to_string()), Some(*retry_after_s))
            }
            ServiceError::Storage(_) | ServiceError::Engine(_) => (
                detail(
                    "server_error",
                    None,
                    "internal",
                    "internal error; the server log has the details (look for this response's x-request-id)".into(),
                ),
                None,
            ),
        }
    }

    /// The error a stream's `error` event stands for (a turn refused after waiting in the
    /// queue, or failed while it ran), for callers that get one answer rather than a stream.
    pub fn from_detail(error: ErrorDetail) -> Self {
        let field = || error.param.clone().unwrap_or_default();
        match error.code.as_deref() {
            Some("invalid_field") => {
                let message = error.message.strip_prefix(&format!("{}: ", field())).unwrap_or(&error.message);
                ServiceError::invalid(field(), message)
            }
            Some("context_length_exceeded") => ServiceError::TooLong { field: field(), message: error.message },
            Some("queue_full") => ServiceError::Busy { message: error.message, retry_after_s: 5 },
            Some("model_unavailable") => ServiceError::Unavailable { message: error.message, retry_after_s: Some(5) },
            Some("rate_limited") => ServiceError::Limited { limit: field(), message: error.message, retry_after_s: 5 },
            _ => ServiceError::Engine(error.message),
        }
    }

    /// Log a failure of the server itself (callers get no internals).
    pub fn log_if_internal(&self) {
        if matches!(self, ServiceError::Storage(_) | ServiceError::Engine(_)) {
            tracing::error!(error = ?self, "request failed");
        }
    }
}

impl From<InvalidField> for ServiceError {
    fn from(e: InvalidField) -> Self {
        ServiceError::invalid(e.field, e.message)
    }
}

impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden(message) => ServiceError::Forbidden(message),
            AuthError::Busy { message, retry_after_s } => ServiceError::Busy { message, retry_after_s },
            AuthError::Internal(message) => ServiceError::Engine(message),
            AuthError::Storage(e) => ServiceError::Storage(e),
        }
    }
}

impl From<JobError> for ServiceError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::QueueFull { retry_after_s, .. } => ServiceError::Busy { message: e.to_string(), retry_after_s },
            JobError::Storage(e) => ServiceError::Storage(e),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
