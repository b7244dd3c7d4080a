//! The HTTP layer's error: every failure becomes a status code and the one JSON error body
//! (OpenAI's shape). Server-side failures are logged in full and answered without internals.

use crate::service::error::{detail, ServiceError};
use app::types::{ErrorBody, ErrorDetail};
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    /// The body or query could not be read: status, the field at fault, what is wrong.
    BadRequest {
        status: StatusCode,
        param: Option<String>,
        code: &'static str,
        message: String,
    },
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { status, .. } => *status,
            ApiError::Service(e) => match e {
                ServiceError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                ServiceError::TooLong { .. } => StatusCode::BAD_REQUEST,
                ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                ServiceError::Busy { .. } | ServiceError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
                ServiceError::Conflict(_) => StatusCode::CONFLICT,
                ServiceError::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
                ServiceError::Storage(_) | ServiceError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// Log a failure of the server itself in full (the caller gets no internals); a busy or
    /// unready model (503) and a timeout (504) are expected and not logged as errors.
    pub fn log_if_internal(&self) {
        let status = self.status_code();
        if status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && status != StatusCode::GATEWAY_TIMEOUT
        {
            tracing::error!(error = ?self, "request failed");
        }
    }

    /// The error body, and `Retry-After` seconds when waiting helps.
    pub fn detail(&self) -> (ErrorDetail, Option<u64>) {
        match self {
            ApiError::BadRequest { param, code, message, .. } => {
                (detail("invalid_request_error", param.clone(), code, message.clone()), None)
            }
            ApiError::Service(e) => e.detail(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        self.log_if_internal();
        let (error, retry_after) = self.detail();
        let mut response = (status, Json(ErrorBody { error })).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
