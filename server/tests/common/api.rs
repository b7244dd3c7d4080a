//! Requests through the real router (tower `oneshot`), and reading JSON and SSE answers.

use axum::{
    body::Body,
    http::{header, HeaderMap, Method, Request, StatusCode},
};
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::{Duration, Instant};
use tower::ServiceExt;

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `(event, data)` pairs of an SSE body.
    pub fn events(&self) -> Vec<(String, Value)> {
        parse_sse(&String::from_utf8_lossy(&self.body))
    }

    /// `error.param` of an error body, after checking the status.
    pub fn error_param(&self, status: u16) -> Option<String> {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        let json = self.json();
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
        json["error"]["param"].as_str().map(String::from)
    }
}

/// The `(event, data as JSON)` pairs of an SSE body, read by the app's own SSE reader (the one
/// the browser's chat stream uses); an event without a name is a `message`.
pub fn parse_sse(text: &str) -> Vec<(String, Value)> {
    let mut reader = app::ui::sse::SseReader::default();
    let mut events = reader.push(text.as_bytes());
    // A body that ends without the blank line still ends its last event.
    events.extend(reader.push(b"\n\n"));
    events
        .into_iter()
        .map(|e| {
            let name = if e.name.is_empty() { "message".to_string() } else { e.name };
            (name, serde_json::from_str(&e.data).expect("SSE data is JSON"))
        })
        .collect()
}

/// Credentials a test request carries.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Bearer <key>`.
    Key(String),
    /// `Cookie: duet_session=…`, as a browser would send it.
    Cookie(String),
}

pub async fn send(state: &server::AppState, method: Method, uri: &str, body: Option<Value>) -> Reply {
    call(state, &Auth::None, method, uri, body).await
}

pub async fn call(state: &server::AppState, auth: &Auth, method: Method, uri: &str, body: Option<Value>) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    match auth {
        Auth::None => {}
        Auth::Key(key) => req = req.header(header::AUTHORIZATION, format!("Bearer {key}")),
        Auth::Cookie(cookie) => req = req.header(header::COOKIE, cookie),
    }
    let body = match body {
        Some(json) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    raw(state, req.body(body).unwrap()).await
}

/// The router for a state, built once and then cloned, as the server does: building it renders
/// the app to list its routes, and two of those running at once (or one beside a page render)
/// in the same process can upset Leptos's reactive owner.
fn router(state: &server::AppState) -> axum::Router {
    // Keyed by the state's config, kept alive here so its address is never reused.
    type Built = Vec<(std::sync::Arc<server::config::Config>, axum::Router)>;
    static ROUTERS: std::sync::Mutex<Built> = std::sync::Mutex::new(Vec::new());
    let mut routers = ROUTERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, router)) = routers.iter().find(|(c, _)| std::sync::Arc::ptr_eq(c, &state.config)) {
        return router.clone();
    }
    let router = server::app(state.clone());
    routers.push((state.config.clone(), router.clone()));
    router
}

/// The router's response as it comes, its body not yet read (to hold a stream open, or drop it).
pub async fn respond(state: &server::AppState, request: Request<Body>) -> axum::response::Response {
    router(state).oneshot(request).await.unwrap()
}

pub async fn raw(state: &server::AppState, request: Request<Body>) -> Reply {
    let res = router(state).oneshot(request).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply { status, headers, body }
}

pub async fn post(state: &server::AppState, uri: &str, body: Value) -> Reply {
    send(state, Method::POST, uri, Some(body)).await
}

pub async fn get(state: &server::AppState, uri: &str) -> Reply {
    send(state, Method::GET, uri, None).await
}

/// Poll a job's status URL until it has ended.
pub async fn wait_for_job(state: &server::AppState, status_url: &str, limit: Duration) -> Value {
    wait_for_job_as(state, &Auth::None, status_url, limit).await
}

/// `wait_for_job` with credentials.
pub async fn wait_for_job_as(state: &server::AppState, auth: &Auth, status_url: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let job = call(state, auth, Method::GET, status_url, None).await;
        assert_eq!(job.status, 200, "{}", String::from_utf8_lossy(&job.body));
        let json = job.json();
        if ["done", "failed", "cancelled"].contains(&json["status"].as_str().unwrap()) {
            return json;
        }
        assert!(Instant::now() < deadline, "job still {} after {limit:?}: {json}", json["status"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A state in mock mode over a fresh data folder (SQLite), with extra flags.
pub async fn mock_state(dir: &std::path::Path, extra: &[&str]) -> server::AppState {
    mock_state_on(super::Backend::Sqlite, dir, extra).await
}

pub async fn mock_state_on(backend: super::Backend, dir: &std::path::Path, extra: &[&str]) -> server::AppState {
    let mut args = vec!["--use-mocks", "true"];
    if !extra.contains(&"--mock-image-step-ms") {
        args.extend(["--mock-image-step-ms", "1"]);
    }
    args.extend_from_slice(extra);
    server::build_state(super::config_on(backend, dir, &args).await).await.unwrap()
}

/// One number from the database (`SELECT COUNT(*) …`), on either backend.
pub async fn count(db: &server::storage::Database, sql: &str) -> i64 {
    match db {
        server::storage::Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        server::storage::Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// Waits while a model is still loading (compiling the fixtures takes seconds).
pub async fn wait_until_loaded(state: &server::AppState) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while [&state.llm, &state.sd].iter().any(|s| s.state() == app::types::ModelState::Loading) {
        assert!(
            Instant::now() < deadline,
            "models still loading after 120 s: {:?} {:?}",
            state.llm.health(),
            state.sd.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A state in mock mode with accounts required, as the account suites run it.
pub async fn accounts_state_on(backend: super::Backend, dir: &std::path::Path, extra: &[&str]) -> server::AppState {
    let flags: Vec<&str> = ["--auth-required", "true"].iter().chain(extra).copied().collect();
    mock_state_on(backend, dir, &flags).await
}

/// A request that must succeed: its JSON body (`Null` when it has none).
pub async fn ok(state: &server::AppState, auth: &Auth, method: Method, uri: &str, body: Option<Value>) -> Value {
    let reply = call(state, auth, method.clone(), uri, body).await;
    assert!(reply.status.is_success(), "{method} {uri}: {} {}", reply.status, String::from_utf8_lossy(&reply.body));
    if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    }
}

/// A log-in or sign-up body.
pub fn creds(name: &str, password: &str) -> Value {
    serde_json::json!({"username": name, "password": password})
}

/// Register an account (logging in as it): its session cookie and a fresh API key.
pub async fn account(state: &server::AppState, name: &str) -> (Auth, Auth) {
    let reg = post(state, "/auth/register", serde_json::json!({"username": name, "password": "a long password"})).await;
    assert_eq!(reg.status, 201, "{}", String::from_utf8_lossy(&reg.body));
    let cookie = Auth::Cookie(session_cookie(&reg).expect("registering logs in"));
    let key = call(state, &cookie, Method::POST, "/account/keys", Some(serde_json::json!({"name": "tests"}))).await;
    assert_eq!(key.status, 201, "{}", String::from_utf8_lossy(&key.body));
    (cookie, Auth::Key(key.json()["key"].as_str().unwrap().to_string()))
}

/// `duet_session=…` from a reply's `Set-Cookie`, ready for a `Cookie` header.
pub fn session_cookie(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("duet_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
}
