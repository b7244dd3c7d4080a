//! A JSON body extractor whose rejections use the API's error body and name the field at fault
//! (its JSON path, e.g. `image.width`), where axum's own would answer in plain text.

use super::error::ApiError;
use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{header, StatusCode},
};
use serde::de::DeserializeOwned;

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(ct) = content_type.filter(|ct| !ct.starts_with("application/json") && !ct.contains("+json")) {
            return Err(bad(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "invalid_json",
                format!("expected a JSON body (Content-Type: application/json), got {ct}"),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            bad(e.status(), None, "invalid_json", format!("could not read the body: {}", e.body_text()))
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// A query-string extractor with the same error body: a value of the wrong type is 422 naming
/// the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|err| {
            let param = err.path().to_string();
            let message = format!("{param}: {}", err.into_inner());
            bad(StatusCode::UNPROCESSABLE_ENTITY, Some(param), "invalid_field", message)
        })
    }
}

fn bad(status: StatusCode, param: Option<String>, code: &'static str, message: String) -> ApiError {
    ApiError::BadRequest { status, param, code, message }
}

/// Malformed JSON is 400; well-formed JSON with a wrong value is 422 naming the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            None,
            "invalid_json",
            "the request body is empty; send a JSON object".into(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| bad(StatusCode::BAD_REQUEST, None, "invalid_json", format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        let message = "the body must be a JSON object".to_string();
        return Err(bad(StatusCode::UNPROCESSABLE_ENTITY, None, "invalid_field", message));
    }
    serde_path_to_error::deserialize(whole_numbers(value)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let param = (path != ".").then_some(path);
        let message = match &param {
            Some(p) => format!("{p}: {inner}"),
            None => format!("the body must be a JSON object: {inner}"),
        };
        bad(StatusCode::UNPROCESSABLE_ENTITY, param, "invalid_field", message)
    })
}

/// JSON (and the API document's JSON Schema) counts `285.0` as the integer 285: turn such
/// numbers into integers, so integer fields take them.
fn whole_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) => {
                Value::from(f as u64)
            }
            Some(f) if n.is_f64() && f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..0.0).contains(&f) => {
                Value::from(f as i64)
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::types::ChatRequest;

    fn rejection(body: &str) -> (StatusCode, Option<String>) {
        let err = parse::<ChatRequest>(body.as_bytes()).unwrap_err();
        let status = err.status_code();
        (status, err.detail().0.param)
    }

    #[test]
    fn names_the_field_with_a_wrong_value() {
        assert_eq!(rejection(r#"{"message": 5}"#), (StatusCode::UNPROCESSABLE_ENTITY, Some("message".into())));
        assert_eq!(
            rejection(r#"{"image": {"width": "wide"}}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("image.width".into()))
        );
        assert_eq!(
            rejection(r#"{"image": {"seed": -1}}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("image.seed".into()))
        );
        assert_eq!(rejection("[1, 2]"), (StatusCode::UNPROCESSABLE_ENTITY, None));
    }

    #[test]
    fn malformed_or_empty_bodies_are_400() {
        assert_eq!(rejection(r#"{"message": "#), (StatusCode::BAD_REQUEST, None));
        assert_eq!(rejection("  "), (StatusCode::BAD_REQUEST, None));
        assert!(parse::<ChatRequest>(br#"{"message": "hi", "extra": true}"#).is_ok(), "unknown fields are ignored");
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_are_not() {
        let r = parse::<ChatRequest>(br#"{"max_tokens": 285.0, "seed": 1e3, "temperature": 1.0}"#).unwrap();
        assert_eq!((r.max_tokens, r.seed, r.temperature), (Some(285), Some(1000), Some(1.0)));
        assert_eq!(rejection(r#"{"max_tokens": 2.5}"#), (StatusCode::UNPROCESSABLE_ENTITY, Some("max_tokens".into())));
        assert_eq!(rejection(r#"{"max_tokens": -1.0}"#), (StatusCode::UNPROCESSABLE_ENTITY, Some("max_tokens".into())));
        assert_eq!(rejection(r#"{"seed": 1e30}"#), (StatusCode::UNPROCESSABLE_ENTITY, Some("seed".into())));
    }
}
