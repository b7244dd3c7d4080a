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
