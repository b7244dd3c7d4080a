//! Server functions whose arguments cannot be read answer 400, not 500, naming the field.
//!
//! Leptos decodes a server function's arguments before our code runs and answers any failure
//! with 500, so a body with a field missing or of the wrong type looked like a server fault.
//! This layer finds those answers (the `serverfnerror` header, and a body that starts with one of
//! the decoding kinds) and turns them into 400. When the decoder's own message does not say which
//! field was wrong ("invalid digit found in string"), the body is decoded again into the
//! function's argument type with `serde_path_to_error` to find it. The answer keeps Leptos's
//! `Kind|message` shape so the browser's client still reads it as an error.

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::Response,
};
use http_body_util::{BodyExt, Limited};
use leptos::server_fn::{error::SERVER_FN_ERROR_HEADER, ServerFn};
use serde::de::DeserializeOwned;

/// How Leptos names the errors that mean "the request could not be read".
const DECODING_KINDS: [&str; 3] = ["Args", "Deserialization", "MissingArg"];

/// A server function's arguments are a form or a small JSON object; a larger body is refused
/// before it is read into memory.
const MAX_ARGUMENTS: usize = 1024 * 1024;

/// Error bodies are a line of text; anything longer is not one of these and is passed on whole.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub async fn bad_arguments(req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    let arguments = match Limited::new(body, MAX_ARGUMENTS).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            let message = format!("Args|the arguments are larger than {} KiB", MAX_ARGUMENTS / 1024);
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Err(err) => return refuse(StatusCode::BAD_REQUEST, format!("Args|the body could not be read: {err}")),
    };
    let response = next.run(Request::from_parts(parts, Body::from(arguments.clone()))).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(SERVER_FN_ERROR_HEADER)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let error = match Limited::new(body, MAX_ERROR_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::warn!(error = %err, "a server function's error body could not be read");
            return Response::from_parts(parts, Body::from("the server function's error could not be read"));
        }
    };
    let text = String::from_utf8_lossy(&error);
    let Some((kind, detail)) = decoding_failure(&text) else {
        return Response::from_parts(parts, Body::from(error));
    };
    // Outside `cargo leptos` Leptos appends a hash of the crate's path to each function's route.
    let function = path.trim_start_matches("/api/").trim_end_matches(|c: char| c.is_ascii_digit());
    let field = failing_field(&path, json, &arguments);
    tracing::info!(function, kind, detail, field, "server function arguments refused");
    parts.status = StatusCode::BAD_REQUEST;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Response::from_parts(parts, Body::from(explain(kind, function, field.as_deref(), detail)))
}

fn refuse(status: StatusCode, message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// `Some((kind, detail))` when the body is Leptos's encoding of a decoding failure.
fn decoding_failure(body: &str) -> Option<(&'static str, &str)> {
    let (kind, detail) = body.split_once('|')?;
    DECODING_KINDS.into_iter().find(|k| *k == kind).map(|k| (k, detail))
}

/// The 400's body: the same kind (so the client decodes it), the field when known, what was
/// wrong, and how arguments are sent.
fn explain(kind: &str, function: &str, field: Option<&str>, detail: &str) -> String {
    let detail = if detail.trim().is_empty() { "the body could not be decoded" } else { detail.trim() };
    let at = field.map(|f| format!("field `{f}`: ")).unwrap_or_default();
    format!(
        "{kind}|invalid arguments for server function `{function}`: {at}{detail}. Send each argument as a field \
         of the body, encoded as the function declares (URL-encoded form by default, `name[field]=…` for a \
         structure; JSON where the function takes JSON)"
    )
}

/// Decodes `body` again as the arguments of the function at `path`, the way Leptos does, and
/// returns the path of the field where that fails (none for the top level, whose message names
/// the missing field already).
fn failing_field(path: &str, json: bool, body: &Bytes) -> Option<String> {
    use app::api::*;
    type Locate = fn(bool, &[u8]) -> Option<String>;
    // Every function that takes arguments; one missing here only loses the field's name.
    let functions: [(&str, Locate); 9] = [
        (Login::PATH, locate::<Login>),
        (Register::PATH, locate::<Register>),
        (LoadChat::PATH, locate::<LoadChat>),
        (ListConversations::PATH, locate::<ListConversations>),
        (RenameConversation::PATH, locate::<RenameConversation>),
        (SaveChatSettings::PATH, locate::<SaveChatSettings>),
        (DeleteConversation::PATH, locate::<DeleteConversation>),
        (SearchConversations::PATH, locate::<SearchConversations>),
        (LoadGallery::PATH, locate::<LoadGallery>),
    ];
    let (_, locate) = functions.iter().find(|(p, _)| *p == path)?;
    locate(json, body)
}

fn locate<T: DeserializeOwned>(json: bool, body: &[u8]) -> Option<String> {
    let path = if json {
        let mut de = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize::<_, T>(&mut de).err()?.path().to_string()
    } else {
        // Leptos's own settings: nesting up to 5 deep, brackets may be percent-encoded.
        let de = serde_qs::Deserializer::with_config(&serde_qs::Config::new(5, false), body).ok()?;
        serde_path_to_error::deserialize::<_, T>(de).err()?.path().to_string()
    };
    (path != ".").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decoding_kinds_are_recognised() {
        assert_eq!(decoding_failure("Args|missing field `filter`"), Some(("Args", "missing field `filter`")));
        assert_eq!(decoding_failure("Deserialization|expected value"), Some(("Deserialization", "expected value")));
        assert_eq!(decoding_failure("MissingArg|id"), Some(("MissingArg", "id")));
        // Our own failures (and a server fault) keep their status.
        assert_eq!(decoding_failure("ServerError|the database is down"), None);
        assert_eq!(decoding_failure("Args missing"), None);
        assert_eq!(decoding_failure(""), None);
    }

    #[test]
    fn the_message_keeps_the_kind_and_names_the_function_and_field() {
        let text = explain("Args", "load_gallery", Some("filter.offset"), "invalid digit found in string");
        assert!(text.starts_with("Args|"), "{text}");
        assert!(text.contains("`load_gallery`: field `filter.offset`: invalid digit"), "{text}");
        assert!(explain("Deserialization", "f", None, " ").contains("`f`: the body could not be decoded"));
    }

    #[test]
    fn the_failing_field_is_found_by_decoding_again() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Filter {
            q: Option<String>,
            offset: Option<u32>,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Args {
            filter: Filter,
            id: Option<String>,
        }
        assert_eq!(locate::<Args>(false, b"filter[offset]=abc").as_deref(), Some("filter.offset"));
        assert_eq!(locate::<Args>(false, b"filter%5Boffset%5D=-1").as_deref(), Some("filter.offset"));
        assert_eq!(locate::<Args>(true, br#"{"filter": {"offset": "x"}}"#).as_deref(), Some("filter.offset"));
        // Missing at the top: the decoder's message names it, there is no deeper path.
        assert_eq!(locate::<Args>(false, b"id=1"), None);
        assert_eq!(locate::<Args>(false, b"filter[q]=fox"), None);
    }
}
