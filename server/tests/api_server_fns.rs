//! The pages' server functions under bodies they cannot read: every one answers 4xx (400 naming
//! what was wrong when the arguments could not be decoded), never 500, with or without a session,
//! and nothing stored changes.

mod common;

use axum::{
    body::Body,
    http::{header, Method, Request},
};
use common::api::{self, Auth};
use serde_json::json;

/// Bodies no server function can read as its arguments.
fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let form = "application/x-www-form-urlencoded";
    vec![
        (form, b"".to_vec()),
        (form, b"%%%=%ZZ&&==".to_vec()),
        (form, b"filter=1&filter[offset]=minus-one&offset=abc&id[]=x&settings=7".to_vec()),
        (form, vec![0xff, 0xfe, b'=', 0x80]),
        (form, "a".repeat(100_000).into_bytes()),
        ("application/json", b"{".to_vec()),
        ("application/json", b"[1,2,3]".to_vec()),
        ("text/plain", b"hello".to_vec()),
    ]
}

async fn post_raw(state: &server::AppState, auth: &Auth, path: &str, content_type: &str, body: Vec<u8>) -> api::Reply {
    let mut req = Request::builder().method(Method::POST).uri(path).header(header::CONTENT_TYPE, content_type);
    if let Auth::Cookie(cookie) = auth {
        req = req.header(header::COOKIE, cookie);
    }
    api::raw(state, req.body(Body::from(body)).unwrap()).await
}

/// A server function's route: `/api/<name>` and, outside `cargo leptos`, a hash Leptos appends.
fn function_path(name: &str) -> String {
    let prefix = format!("/api/{name}");
    leptos::server_fn::axum::server_fn_paths()
        .map(|(p, _)| p.to_string())
        .find(|p| p.strip_prefix(&prefix).is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit())))
        .unwrap_or_else(|| panic!("no server function named {name}"))
}

fn text(reply: &api::Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test]
async fn no_server_function_answers_500_to_a_body_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let state = api::accounts_state_on(common::Backend::Sqlite, dir.path(), &[]).await;
    let (cookie, key) = api::account(&state, "alice").await;
    let made =
        api::ok(&state, &key, Method::POST, "/chat", Some(json!({"user_id": "alice", "message": "Keep me"}))).await;
    let id = made["conversation_id"].as_str().unwrap().to_string();
    let before = api::ok(&state, &key, Method::GET, &format!("/conversations/{id}"), None).await;

    let paths: Vec<String> = leptos::server_fn::axum::server_fn_paths().map(|(p, _)| p.to_string()).collect();
    assert!(paths.len() >= 10, "server functions not registered in this binary: {paths:?}");
    for path in &paths {
        for auth in [Auth::None, cookie.clone()] {
            for (content_type, body) in hostile_bodies() {
                let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
                let reply = post_raw(&state, &auth, path, content_type, body).await;
                assert!(
                    reply.status.is_client_error() || reply.status.is_success() || reply.status.is_redirection(),
                    "{path} ({content_type}, {shown:?}, {auth:?}) answered {}: {}",
                    reply.status,
                    text(&reply)
                );
            }
        }
    }

    // What was stored is untouched: still one conversation, with the same title and messages.
    // (The key, not the cookie: `logout` ignores its body and ended the session.)
    let list = api::ok(&state, &key, Method::GET, "/conversations", None).await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1, "{list}");
    let after = api::ok(&state, &key, Method::GET, &format!("/conversations/{id}"), None).await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn undecodable_arguments_get_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let state = api::accounts_state_on(common::Backend::Sqlite, dir.path(), &[]).await;
    let (cookie, _) = api::account(&state, "bob").await;
    let form = "application/x-www-form-urlencoded";

    let cases: [(&str, &str, &[u8], &str); 7] = [
        ("load_gallery", "application/json", b"{}", "filter"),
        ("load_gallery", "application/json", br#"{"filter":{"offset":"abc"}}"#, "field `filter.offset`"),
        ("list_conversations", form, b"offset=-3", "field `offset`"),
        (
            "save_chat_settings",
            "application/json",
            br#"{"id":"a","settings":{"temperature":"hot"}}"#,
            "field `settings.temperature`",
        ),
        ("rename_conversation", form, b"id=abc", "title"),
        ("save_chat_settings", "application/json", b"{\"id\":\"abc\"}", "settings"),
        ("login", form, b"username=bob", "password"),
    ];
    for (name, content_type, body, names) in cases {
        let path = &function_path(name);
        let reply = post_raw(&state, &cookie, path, content_type, body.to_vec()).await;
        let body = text(&reply);
        assert_eq!(reply.status, 400, "{path} {body}");
        assert!(
            body.contains(names) && body.contains(&format!("`{name}`")),
            "{path}: the answer should name `{names}`: {body}"
        );
        // Leptos's own encoding, so the browser's client still reads it as the function's error.
        assert!(body.starts_with("Args|") || body.starts_with("Deserialization|"), "{body}");
    }

    // A body too large to be anyone's arguments is refused before it is read whole.
    let huge = post_raw(&state, &cookie, &function_path("search_conversations"), form, vec![b'a'; 3 << 20]).await;
    assert_eq!(huge.status, 413, "{}", text(&huge));

    // A well-formed call still works, and a failure of our own keeps its status (not turned 400).
    let ok = post_raw(
        &state,
        &cookie,
        &function_path("load_gallery"),
        "application/json",
        br#"{"filter":{"q":"fox"}}"#.to_vec(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", text(&ok));
    let missing =
        post_raw(&state, &cookie, &function_path("rename_conversation"), form, b"id=nope&title=x".to_vec()).await;
    assert_eq!(missing.status, 404, "{}", text(&missing));
}

/// A structure argument whose fields are all empty vanishes from a URL-encoded form (serde_qs
/// writes nothing for it), and the call then fails: such functions take JSON. This is what the
/// browser sends for the gallery without a filter.
#[tokio::test]
async fn an_empty_structure_argument_survives_the_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let state = api::accounts_state_on(common::Backend::Sqlite, dir.path(), &[]).await;
    let (cookie, _) = api::account(&state, "carol").await;
    assert_eq!(serde_qs::to_string(&app::api::LoadGallery { filter: Default::default() }).unwrap(), "");

    let args = app::api::LoadGallery { filter: Default::default() };
    let body = serde_json::to_vec(&args).unwrap();
    let reply = post_raw(&state, &cookie, &function_path("load_gallery"), "application/json", body).await;
    assert_eq!(reply.status, 200, "{}", text(&reply));
    assert_eq!(reply.json()["images"], json!([]), "{}", text(&reply));

    let settings = app::api::SaveChatSettings { id: "nope".into(), settings: Default::default() };
    let body = serde_json::to_vec(&settings).unwrap();
    let reply = post_raw(&state, &cookie, &function_path("save_chat_settings"), "application/json", body).await;
    assert_eq!(reply.status, 404, "read, then not found: {}", text(&reply));
}
