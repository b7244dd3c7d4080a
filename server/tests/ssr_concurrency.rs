//! Pages rendered on the server: side by side every render finds the server's context, and one
//! after another every render finishes.

mod common;

use axum::http::Method;
use common::api::{account, call, get, mock_state};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_page_renders_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state(dir.path(), &["--auth-required", "true"]).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let state = state.clone();
        let path = ["/models", "/login", "/register"][i % 3];
        tasks.push(tokio::spawn(async move { (path, get(&state, path).await) }));
    }
    for task in tasks {
        let (path, reply) = task.await.expect("the render did not panic");
        assert_eq!(reply.status, 200, "{path}");
        let html = String::from_utf8_lossy(&reply.body);
        assert!(html.contains("href=\"/login\""), "{path}: the account menu rendered");
    }
}

/// A page whose `<Suspense>` stored loaded data in signals other parts of the page had read used to
/// panic on a disposed signal in about 1 render in 40 (a re-run racing the page's end), and that
/// response never finished. Hundreds of renders in a row must all finish, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conversation_and_gallery_pages_always_finish_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state(dir.path(), &["--account-requests-per-minute", "1000000"]).await;
    // Signed in, as a browser is: the page then also asks who is logged in.
    let (session, _) = account(&state, "reader").await;
    let said = call(
        &state,
        &session,
        Method::POST,
        "/chat",
        Some(json!({"user_id": "reader", "message": "Hello there friend"})),
    )
    .await;
    assert_eq!(said.status, 200, "{}", String::from_utf8_lossy(&said.body));
    let id = said.json()["conversation_id"].as_str().unwrap().to_string();
    let chat = format!("/c/{id}");
    for i in 0..400 {
        let path = if i % 4 == 3 { "/pictures" } else { chat.as_str() };
        let reply = tokio::time::timeout(Duration::from_secs(10), call(&state, &session, Method::GET, path, None))
            .await
            .unwrap_or_else(|_| panic!("render {i} of {path} never finished"));
        assert_eq!(reply.status, 200, "{path}");
        let html = String::from_utf8_lossy(&reply.body);
        if path == chat {
            assert!(html.contains("You said: Hello there friend"), "render {i}: the thread is there: {html}");
            assert!(html.contains(r#"aria-current="page""#), "render {i}: the list marks the open conversation");
        } else {
            assert!(html.contains("Gallery") && html.contains("</html>"), "render {i}: the gallery page: {html}");
        }
    }
}
