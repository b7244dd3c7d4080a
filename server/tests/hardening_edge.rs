//! What every request passes through: the hosts the server answers for (DNS rebinding), the
//! security headers on every answer, what `/health` shows to whom, the log-in page's `next`, and
//! page renders that panic or hang.

mod common;

use app::{
    ssr::{Answer, Backend, BoxFuture, Session},
    types::{
        AccountInfo, ChatData, ConversationList, ConversationSummary, Credentials, GalleryFilterForm, GalleryPage,
        HealthReport, SearchResults,
    },
};
use axum::{
    body::Body,
    http::{header, Method, Request},
};
use common::api::{account, call, mock_state, raw, Auth, Reply};
use serde_json::json;
use std::{net::IpAddr, sync::Arc, time::Duration};
use tower::ServiceExt;

fn get_with_host(uri: &str, host: &str) -> Request<Body> {
    Request::get(uri).header(header::HOST, host).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn requests_for_other_hosts_are_refused_even_with_accounts_off() {
    let dir = tempfile::tempdir().unwrap();
    // Accounts off: every request without credentials acts as the owner, so a rebinding page
    // would see everything if it were answered.
    let s = mock_state(dir.path(), &[]).await;
    let said = common::api::post(&s, "/chat", json!({"user_id": "me", "message": "my secret plans"})).await;
    assert_eq!(said.status, 200);
    for host in ["evil.example", "evil.example:3000", "localhost.evil.example", "192.168.1.20:3000"] {
        for uri in ["/conversations", "/health", "/", "/pkg/duet.css"] {
            let reply = raw(&s, get_with_host(uri, host)).await;
            assert_eq!(reply.status, 421, "{host} {uri}");
            let json = reply.json();
            assert_eq!(json["error"]["code"], "host_not_allowed", "{json}");
            assert!(json["error"]["message"].as_str().unwrap().contains("ALLOWED_HOSTS"));
            assert!(!String::from_utf8_lossy(&reply.body).contains("secret plans"));
        }
    }
    let post = Request::post("/auth/register")
        .header(header::HOST, "evil.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"username": "intruder", "password": "a long password"}).to_string()))
        .unwrap();
    assert_eq!(raw(&s, post).await.status, 421, "no account is made through a rebound name");
    for host in ["localhost:3000", "127.0.0.1:3000", "[::1]:3000", "LOCALHOST", "duet.localhost:3000"] {
        let reply = raw(&s, get_with_host("/conversations", host)).await;
        assert_eq!(reply.status, 200, "{host}: {}", String::from_utf8_lossy(&reply.body));
    }
}

#[tokio::test]
async fn allowed_hosts_and_the_public_url_host_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let s = mock_state(
        dir.path(),
        &[
            "--allowed-hosts",
            "duet.lan,192.168.1.20",
            "--public-url",
            "https://duet.example.com",
            "--addr",
            "10.1.2.3:3000",
        ],
    )
    .await;
    for host in ["duet.lan", "DUET.lan:3000", "192.168.1.20:3000", "duet.example.com", "10.1.2.3:3000", "localhost"] {
        assert_eq!(raw(&s, get_with_host("/health", host)).await.status, 200, "{host}");
    }
    assert_eq!(raw(&s, get_with_host("/health", "other.lan")).await.status, 421);
    let any = mock_state(tempfile::tempdir().unwrap().path(), &["--allowed-hosts", "*"]).await;
    assert_eq!(raw(&any, get_with_host("/health", "anything.example")).await.status, 200);
}

fn assert_security_headers(reply: &Reply, what: &str) -> String {
    let h = |name: header::HeaderName| {
        reply
            .headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_string()
    };
    assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{what}");
    assert_eq!(h(header::REFERRER_POLICY), "same-origin", "{what}");
    assert_eq!(h(header::X_FRAME_OPTIONS), "DENY", "{what}");
    let csp = h(header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval'"), "{what}: {csp}");
    let scripts = csp.split(';').find(|d| d.trim().starts_with("script-src")).unwrap();
    assert!(!scripts.contains("unsafe-inline") && !scripts.contains('*'), "{what}: {csp}");
    // An HTML answer's inline scripts all carry the policy's nonce.
    let html = String::from_utf8_lossy(&reply.body);
    let inline = html.matches("<script").count();
    if inline > 0 {
        let nonce = csp.split("'nonce-").nth(1).and_then(|r| r.split('\'').next()).expect("a nonce for inline scripts");
        assert!(nonce.len() >= 16, "{nonce}");
        assert_eq!(html.matches(&format!("nonce=\"{nonce}\"")).count(), inline, "{what}: {html}");
    }
    csp
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_pages_a_nonce_for_their_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let s = mock_state(dir.path(), &["--auth-required", "true"]).await;
    let (cookie, key) = account(&s, "owner").await;
    let answers = [
        ("GET /health", call(&s, &Auth::None, Method::GET, "/health", None).await),
        ("GET /api/openapi.json", call(&s, &key, Method::GET, "/api/openapi.json", None).await),
        ("GET /api/docs", call(&s, &key, Method::GET, "/api/docs", None).await),
        ("401", call(&s, &Auth::None, Method::GET, "/conversations", None).await),
        ("422", call(&s, &key, Method::POST, "/chat", Some(json!({"user_id": ""}))).await),
        ("a file", call(&s, &Auth::None, Method::GET, "/favicon.svg", None).await),
        ("a missing file", call(&s, &Auth::None, Method::GET, "/no/such/page", None).await),
    ];
    for (what, reply) in &answers {
        assert_security_headers(reply, what);
    }
    for page in ["/login", "/", "/pictures", "/settings"] {
        let reply = call(&s, &cookie, Method::GET, page, None).await;
        assert_eq!(reply.status, 200, "{page}");
        assert!(String::from_utf8_lossy(&reply.body).contains("<script"), "{page}: the hydration script");
        let csp = assert_security_headers(&reply, page);
        let again = call(&s, &cookie, Method::GET, page, None).await;
        assert_ne!(assert_security_headers(&again, page), csp, "{page}: a fresh nonce per render");
    }
}

#[tokio::test]
async fn health_shows_paths_and_error_texts_only_to_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let missing = models.path().join("no-such-model");
    std::fs::create_dir(&missing).unwrap();
    let llm = missing.to_str().unwrap();
    // A local chat model folder without its files: state `error`, a detail naming the folder.
    let extra = ["--auth-required", "true", "--llm-model", llm, "--use-mocks", "false"];
    let config = common::config(dir.path(), &extra);
    let s = server::build_state(config).await.expect("the server starts without its models");
    let anonymous = call(&s, &Auth::None, Method::GET, "/health", None).await.json();
    let text = anonymous.to_string();
    for private in [models.path(), dir.path()] {
        assert!(!text.contains(private.to_str().unwrap()), "no absolute path for everyone: {text}");
    }
    assert!(anonymous["openvino"]["library"].is_null(), "{text}");
    assert!(anonymous["openvino"]["version"].as_str().is_some_and(|v| v.starts_with("2026")), "{text}");
    let chat = &anonymous["models"][0];
    assert_eq!((chat["state"].as_str(), chat["id"].as_str()), (Some("error"), Some("no-such-model")), "{text}");
    assert!(chat["path"].is_null() && chat["detail"].as_str().unwrap().contains("admin"), "{chat}");
    for field in ["status", "use_mocks", "auto_download_models", "cached_models", "models", "database"] {
        assert!(anonymous.get(field).is_some(), "the seeds' field {field} is there for everyone");
    }
    let (admin, _) = account(&s, "admin").await;
    let (user, _) = account(&s, "user").await;
    let as_user = call(&s, &user, Method::GET, "/health", None).await.json();
    assert_eq!(as_user, anonymous, "a user who is not an admin sees the public report");
    let full = call(&s, &admin, Method::GET, "/health", None).await.json();
    assert_eq!(full["models"][0]["id"], llm);
    assert!(full["models"][0]["detail"].as_str().unwrap().contains("missing files"), "{full}");
    assert!(full["openvino"]["library"].as_str().unwrap().contains("libopenvino_c"), "{full}");
    // Accounts off: the one user is the owner.
    let open =
        server::build_state(common::config(tempfile::tempdir().unwrap().path(), &["--llm-model", llm])).await.unwrap();
    let owner = call(&open, &Auth::None, Method::GET, "/health", None).await.json();
    assert!(owner["openvino"]["library"].is_string(), "{owner}");
}

#[tokio::test]
async fn log_in_never_redirects_off_the_site() {
    let dir = tempfile::tempdir().unwrap();
    let s = mock_state(dir.path(), &["--auth-required", "true"]).await;
    account(&s, "walker").await;
    // Where the log-in form posts: the page says.
    let page = String::from_utf8_lossy(&call(&s, &Auth::None, Method::GET, "/login", None).await.body).into_owned();
    let action =
        page.split("action=\"").nth(1).and_then(|r| r.split('"').next()).expect("the form's action").to_string();
    for (next, expected) in [
        ("/pictures?q=fox", "/pictures?q=fox"),
        ("/%09/evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
    ] {
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", "walker")
            .append_pair("password", "a long password")
            .append_pair("next", &percent_decode(next))
            .finish();
        let req = Request::post(action.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "text/html")
            .body(Body::from(form))
            .unwrap();
        let reply = raw(&s, req).await;
        let location = reply.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(location, expected, "next={next:?}: {} {}", reply.status, String::from_utf8_lossy(&reply.body));
    }
}

/// `%09` → a tab, as the browser hands the query value to the form.
fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("v={}", s.replace('+', "%2B")).as_bytes()).next().unwrap().1.into_owned()
}

/// The pages' backend with one call broken: the gallery's data panics, or never comes.
struct Broken {
    state: server::AppState,
    hang: bool,
}

impl Backend for Broken {
    fn health(&self, session: Session) -> BoxFuture<'_, HealthReport> {
        self.state.health(session)
    }
    fn login(&self, session: Session, client: Option<IpAddr>, c: Credentials) -> Answer<'_, AccountInfo> {
        self.state.login(session, client, c)
    }
    fn register(&self, session: Session, client: Option<IpAddr>, c: Credentials) -> Answer<'_, AccountInfo> {
        self.state.register(session, client, c)
    }
    fn logout(&self, session: Session) -> Answer<'_, ()> {
        self.state.logout(session)
    }
    fn whoami(&self, session: Session) -> BoxFuture<'_, Option<AccountInfo>> {
        self.state.whoami(session)
    }
    fn chat_data(&self, session: Session, id: Option<String>) -> Answer<'_, ChatData> {
        self.state.chat_data(session, id)
    }
    fn conversations(&self, session: Session, offset: Option<u32>) -> Answer<'_, ConversationList> {
        self.state.conversations(session, offset)
    }
    fn rename_conversation(&self, session: Session, id: String, title: String) -> Answer<'_, ConversationSummary> {
        self.state.rename_conversation(session, id, title)
    }
    fn chat_settings(
        &self,
        session: Session,
        id: String,
        settings: app::types::ChatSettings,
    ) -> Answer<'_, ConversationSummary> {
        self.state.chat_settings(session, id, settings)
    }
    fn delete_conversation(&self, session: Session, id: String) -> Answer<'_, ()> {
        self.state.delete_conversation(session, id)
    }
    fn search_conversations(&self, session: Session, query: String) -> Answer<'_, SearchResults> {
        self.state.search_conversations(session, query)
    }
    fn gallery(&self, _: Session, _: GalleryFilterForm) -> Answer<'_, GalleryPage> {
        let hang = self.hang;
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            panic!("a bug in the gallery's data")
        })
    }
}

async fn render(state: &server::AppState, hang: bool, uri: &str) -> (u16, String) {
    let backend = Arc::new(Broken { state: state.clone(), hang });
    let router = server::routes::app_with_backend(state.clone(), backend);
    let req = Request::get(uri).header("x-request-id", "render-test-1").body(Body::empty()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), async {
        let res = router.oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
    .await;
    res.unwrap_or_else(|_| panic!("{uri}: the response never ended"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_that_panics_or_hangs_ends_with_an_error_page() {
    let dir = tempfile::tempdir().unwrap();
    let s = mock_state(dir.path(), &["--render-timeout-secs", "2"]).await;
    for hang in [false, true] {
        let (status, body) = render(&s, hang, "/pictures").await;
        assert_eq!(status, 500, "hang={hang}: {body}");
        assert!(body.contains("could not be shown") && body.contains("render-test-1"), "{body}");
    }
    // The other pages, on the same broken backend, are unaffected.
    let (status, body) = render(&s, false, "/models").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("</html>"));
}
