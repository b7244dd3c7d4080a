//! The one error body every API route answers with. It is OpenAI's shape, so OpenAI clients read
//! our errors as they read theirs: `{"error": {"message", "type", "param", "code"}}`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// What went wrong and, for bad input, what is allowed.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `rate_limit_error`, `overloaded_error`, `timeout_error`, `unavailable_error` or
    /// `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault (a JSON path such as `image.width`), when one is; for
    /// `rate_limit_error`, the limit that was hit (such as `account.requests_per_minute`).
    pub param: Option<String>,
    /// A stable machine-readable code: `invalid_field`, `invalid_json`, `not_found`,
    /// `unauthenticated`, `forbidden`, `conflict`, `rate_limited`, `queue_full`, `timeout`,
    /// `model_unavailable`, `internal`.
    pub code: Option<String>,
}
