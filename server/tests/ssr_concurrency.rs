//! Pages rendered on the server side by side: every render finds the server's context.

mod common;

use common::api::{get, mock_state};

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
