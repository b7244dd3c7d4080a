//! Accounts, sessions, API keys, the cross-origin guard and who may see what — through the real
//! router, on SQLite and on Postgres.

mod common;

use axum::{
    body::Body,
    http::{header, Method, Request},
};
use common::api::{
    account, accounts_state_on, call, creds, get, mock_state_on, post, raw, session_cookie, wait_for_job_as, Auth,
};
use serde_json::{json, Value};
use std::time::Duration;

/// Every route that needs credentials: each operation of the OpenAPI document (built from the
/// routes the server serves) not marked public, and the document and its page.
fn protected_routes() -> Vec<(Method, String, Option<Value>)> {
    let doc = server::api::openapi::document();
    let mut routes = vec![(Method::GET, "/api/openapi.json".into(), None), (Method::GET, "/api/docs".into(), None)];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["security"] == json!([{}]) {
                continue;
            }
            let id = "00000000-0000-4000-8000-000000000000";
            let uri = path.replace("{file}", &format!("{id}.png")).replace("{id}", id);
            let body = op.get("requestBody").map(|_| json!({}));
            routes.push((Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), uri, body));
        }
    }
    assert!(routes.len() > 30, "{routes:?}");
    routes
}

on_both_databases! {
    async fn first_account_is_admin_names_are_unique_and_inputs_checked(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let first = post(&s, "/auth/register", creds("Alice", "a long password")).await;
        assert_eq!(first.status, 201, "{}", String::from_utf8_lossy(&first.body));
        assert_eq!((first.json()["username"].as_str(), first.json()["role"].as_str()), (Some("alice"), Some("admin")));
        let second = post(&s, "/auth/register", creds("bob", "a long password")).await;
        assert_eq!(second.json()["role"], "user");
        // Names are case-insensitive, so "ALICE" is taken.
        let taken = post(&s, "/auth/register", creds("ALICE", "another password")).await;
        assert_eq!(taken.status, 409, "{}", String::from_utf8_lossy(&taken.body));
        assert_eq!(post(&s, "/auth/register", creds("a b", "a long password")).await.error_param(422).as_deref(), Some("username"));
        assert_eq!(post(&s, "/auth/register", creds("carol", "short")).await.error_param(422).as_deref(), Some("password"));
        assert_eq!(post(&s, "/auth/register", json!({"username": "dave"})).await.error_param(422).as_deref(), Some("password"));
    }

    async fn a_password_change_ends_every_other_session(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let (here, key) = account(&s, "alice").await;
        let elsewhere = post(&s, "/auth/login", creds("alice", "a long password")).await;
        let elsewhere = Auth::Cookie(session_cookie(&elsewhere).expect("a second session"));
        let (bob, _) = account(&s, "bob").await;
        let change = |current: &str, new: &str| Some(json!({"current_password": current, "new_password": new}));
        let wrong = call(&s, &here, Method::POST, "/account/password", change("not my password", "a new long one")).await;
        assert_eq!(wrong.error_param(422).as_deref(), Some("current_password"));
        let short = call(&s, &here, Method::POST, "/account/password", change("a long password", "short")).await;
        assert_eq!(short.error_param(422).as_deref(), Some("new_password"));
        assert_eq!(call(&s, &elsewhere, Method::GET, "/auth/me", None).await.status, 200, "nothing changed yet");

        let done = call(&s, &here, Method::POST, "/account/password", change("a long password", "a new long one")).await;
        assert_eq!(done.status, 204, "{}", String::from_utf8_lossy(&done.body));
        assert_eq!(call(&s, &here, Method::GET, "/auth/me", None).await.status, 200, "this session goes on");
        assert_eq!(call(&s, &elsewhere, Method::GET, "/auth/me", None).await.status, 401, "the other one is over");
        assert_eq!(call(&s, &key, Method::GET, "/auth/me", None).await.status, 200, "API keys keep working");
        assert_eq!(call(&s, &bob, Method::GET, "/auth/me", None).await.status, 200, "other accounts are untouched");
        assert_eq!(post(&s, "/auth/login", creds("alice", "a long password")).await.status, 401);
        let again = post(&s, "/auth/login", creds("alice", "a new long one")).await;
        assert_eq!(again.status, 200);
        let again = Auth::Cookie(session_cookie(&again).unwrap());
        assert_eq!(call(&s, &again, Method::GET, "/auth/me", None).await.status, 200, "a new log-in counts");
    }

    async fn login_sets_a_hardened_cookie_and_logout_ends_the_session(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        post(&s, "/auth/register", creds("alice", "a long password")).await;
        let wrong = post(&s, "/auth/login", creds("alice", "wrong password")).await;
        let unknown = post(&s, "/auth/login", creds("nobody", "wrong password")).await;
        assert_eq!((wrong.status.as_u16(), unknown.status.as_u16()), (401, 401));
        assert_eq!(wrong.json()["error"]["message"], unknown.json()["error"]["message"], "no username probing");
        assert!(session_cookie(&wrong).is_none());

        let ok = post(&s, "/auth/login", creds("ALICE", "a long password")).await;
        assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
        let set_cookie = ok.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
        assert!(!set_cookie.contains("Secure"), "plain http: no Secure flag ({set_cookie})");
        let cookie = Auth::Cookie(session_cookie(&ok).unwrap());
        let me = call(&s, &cookie, Method::GET, "/auth/me", None).await;
        assert_eq!((me.status.as_u16(), me.json()["username"].as_str()), (200, Some("alice")));

        // Passwords cannot be tried at speed: ten attempts a minute per username.
        for _ in 0..8 {
            assert_eq!(post(&s, "/auth/login", creds("alice", "guess guess")).await.status, 401);
        }
        let throttled = post(&s, "/auth/login", creds("alice", "a long password")).await;
        assert_eq!(throttled.status, 429);
        assert_eq!(throttled.json()["error"]["param"], "login.attempts_per_minute");
        assert_eq!(call(&s, &cookie, Method::GET, "/auth/me", None).await.status, 200, "sessions are unaffected");

        let out = call(&s, &cookie, Method::POST, "/auth/logout", None).await;
        assert_eq!(out.status, 204);
        assert_eq!(call(&s, &cookie, Method::GET, "/auth/me", None).await.status, 401, "the old cookie is dead");
    }

    async fn every_route_but_health_and_login_needs_credentials(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        for (method, uri, body) in protected_routes() {
            let uri = uri.as_str();
            let reply = call(&s, &Auth::None, method.clone(), uri, body).await;
            assert_eq!(reply.status, 401, "{method} {uri}: {}", String::from_utf8_lossy(&reply.body));
            assert_eq!(reply.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer", "{method} {uri}");
            assert_eq!(reply.json()["error"]["code"], "unauthenticated");
            let bad_key = call(&s, &Auth::Key("duet_not-a-key".into()), method.clone(), uri, None).await;
            assert_eq!(bad_key.status, 401, "{method} {uri} with a made-up key");
        }
        assert_eq!(get(&s, "/health").await.status, 200);
        assert_eq!(post(&s, "/auth/login", creds("nobody", "whatever1")).await.status, 401);
        assert_eq!(get(&s, "/models").await.status, 200, "the models page is public (the health report only)");
        // As a browser asks for a page (leptos_axum redirects only requests that accept HTML).
        let page = Request::get("/").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
        let chat = raw(&s, page).await;
        assert_eq!(chat.status, 302, "the chat page sends you to log in first");
        assert_eq!(chat.headers.get(header::LOCATION).unwrap(), "/login?next=%2F");
    }

    async fn pages_show_a_session_only_its_own_conversations(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let (alice, _) = account(&s, "alice").await;
        let (bob, _) = account(&s, "bob").await;
        let said = call(&s, &alice, Method::POST, "/chat", Some(json!({"user_id": "alice", "message": "a secret plan"}))).await;
        let id = said.json()["conversation_id"].as_str().unwrap().to_string();
        let page = |who: &Auth, path: String| {
            let (s, who) = (s.clone(), who.clone());
            async move { call(&s, &who, Method::GET, &path, None).await }
        };
        let mine = page(&alice, format!("/c/{id}")).await;
        assert_eq!(mine.status, 200);
        let html = String::from_utf8_lossy(&mine.body);
        assert!(html.contains("You said: a secret plan") && html.contains("data-testid=\"conversations\""), "{html}");
        let theirs = page(&bob, format!("/c/{id}")).await;
        assert_eq!(theirs.status, 404, "another account's conversation is not found");
        let html = String::from_utf8_lossy(&theirs.body);
        assert!(!html.contains("secret plan"), "{html}");
        let list = page(&bob, "/".into()).await;
        assert!(!String::from_utf8_lossy(&list.body).contains("secret plan"), "bob's list is his own");
    }

    async fn api_keys_are_shown_once_work_as_bearer_and_die_when_revoked(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let (alice, alice_key) = account(&s, "alice").await;
        let (_, bob_key) = account(&s, "bob").await;
        let Auth::Key(secret) = &alice_key else { unreachable!() };
        assert!(secret.starts_with("duet_"));

        let listed = call(&s, &alice, Method::GET, "/account/keys", None).await.json();
        let keys = listed.as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["prefix"].as_str(), Some(&secret[..11]));
        assert!(!listed.to_string().contains(&secret[11..]), "lists never hold the secret");

        let me = call(&s, &alice_key, Method::GET, "/auth/me", None).await;
        assert_eq!(me.json()["username"], "alice");
        let used = call(&s, &alice, Method::GET, "/account/keys", None).await.json();
        assert!(used[0]["last_used_at"].as_i64().is_some(), "{used}");

        let id = keys[0]["id"].as_str().unwrap();
        // Bob cannot revoke Alice's key, nor tell that it exists.
        assert_eq!(call(&s, &bob_key, Method::DELETE, &format!("/account/keys/{id}"), None).await.status, 404);
        assert_eq!(call(&s, &alice_key, Method::GET, "/auth/me", None).await.status, 200);
        assert_eq!(call(&s, &alice, Method::DELETE, &format!("/account/keys/{id}"), None).await.status, 204);
        assert_eq!(call(&s, &alice_key, Method::GET, "/auth/me", None).await.status, 401);
        let bad = call(&s, &alice, Method::POST, "/account/keys", Some(json!({"name": ""}))).await;
        assert_eq!(bad.error_param(422).as_deref(), Some("name"));
    }

    async fn admins_list_and_disable_accounts_and_others_may_not(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let (admin, _) = account(&s, "root").await;
        let (bob, bob_key) = account(&s, "bob").await;
        assert_eq!(call(&s, &bob, Method::GET, "/admin/accounts", None).await.status, 403);
        let list = call(&s, &admin, Method::GET, "/admin/accounts", None).await.json();
        let names: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["username"].as_str().unwrap()).collect();
        assert_eq!(names, ["root", "bob"]);
        let bob_id = list[1]["id"].as_str().unwrap();
        let root_id = list[0]["id"].as_str().unwrap();

        let own = call(&s, &admin, Method::PATCH, &format!("/admin/accounts/{root_id}"), Some(json!({"disabled": true}))).await;
        assert_eq!(own.error_param(422).as_deref(), Some("disabled"));
        let off = call(&s, &admin, Method::PATCH, &format!("/admin/accounts/{bob_id}"), Some(json!({"disabled": true}))).await;
        assert_eq!(off.json()["disabled"], true);
        // Bob's key, session and password all stop working at once.
        assert_eq!(call(&s, &bob_key, Method::GET, "/auth/me", None).await.status, 403);
        assert_eq!(call(&s, &bob, Method::GET, "/auth/me", None).await.status, 401);
        assert_eq!(post(&s, "/auth/login", creds("bob", "a long password")).await.status, 403);
        let on = call(&s, &admin, Method::PATCH, &format!("/admin/accounts/{bob_id}"), Some(json!({"disabled": false}))).await;
        assert_eq!(on.json()["disabled"], false);
        assert_eq!(call(&s, &bob_key, Method::GET, "/auth/me", None).await.status, 200);
        assert_eq!(call(&s, &admin, Method::PATCH, "/admin/accounts/nobody", Some(json!({"disabled": true}))).await.status, 404);
    }

    async fn closed_registration_lets_only_the_first_account_sign_up_and_admins_make_the_rest(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &["--open-registration", "false"]).await;
        let (admin, _) = account(&s, "root").await;
        let refused = post(&s, "/auth/register", creds("mallory", "a long password")).await;
        assert_eq!(refused.status, 403, "{}", String::from_utf8_lossy(&refused.body));
        let made = call(&s, &admin, Method::POST, "/admin/accounts", Some(creds("bob", "a long password"))).await;
        assert_eq!((made.status.as_u16(), made.json()["role"].as_str()), (201, Some("user")));
        assert!(session_cookie(&made).is_none(), "the admin stays logged in as themselves");
        let bob = post(&s, "/auth/login", creds("bob", "a long password")).await;
        assert_eq!(bob.status, 200);
        let bob = Auth::Cookie(session_cookie(&bob).unwrap());
        assert_eq!(call(&s, &bob, Method::POST, "/admin/accounts", Some(creds("eve", "a long password"))).await.status, 403);
        let taken = call(&s, &admin, Method::POST, "/admin/accounts", Some(creds("BOB", "a long password"))).await;
        assert_eq!(taken.status, 409);
    }

    async fn cross_site_browser_requests_are_refused(backend) {
        let dir = tempfile::tempdir().unwrap();
        // The server answers for the name the requests use (see hardening_edge.rs for the rest).
        let s = accounts_state_on(backend, dir.path(), &["--allowed-hosts", "duet.local"]).await;
        let (Auth::Cookie(cookie), _) = account(&s, "alice").await else { unreachable!() };
        let chat = |extra: &[(&'static str, &'static str)]| {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri("/chat")
                .header(header::HOST, "duet.local:3000")
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/json");
            for (k, v) in extra {
                req = req.header(*k, *v);
            }
            req.body(Body::from(json!({"user_id": "u", "message": "hi"}).to_string())).unwrap()
        };
        let evil = raw(&s, chat(&[("origin", "https://evil.example")])).await;
        assert_eq!(evil.status, 403, "{}", String::from_utf8_lossy(&evil.body));
        assert_eq!(raw(&s, chat(&[("sec-fetch-site", "cross-site")])).await.status, 403);
        let login = Request::builder()
            .method(Method::POST)
            .uri("/auth/login")
            .header("sec-fetch-site", "cross-site")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(creds("alice", "a long password").to_string()))
            .unwrap();
        assert_eq!(raw(&s, login).await.status, 403, "login CSRF is refused too");
        assert_eq!(raw(&s, chat(&[("origin", "http://duet.local:3000")])).await.status, 200);
        assert_eq!(raw(&s, chat(&[("sec-fetch-site", "same-origin")])).await.status, 200);
    }

    async fn no_account_sees_another_accounts_jobs_images_or_conversations(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &["--mock-image-step-ms", "1"]).await;
        let (_, alice) = account(&s, "alice").await;
        let (_, bob) = account(&s, "bob").await;

        let chat = call(&s, &alice, Method::POST, "/chat", Some(json!({"user_id": "u1", "message": "hello"}))).await;
        assert_eq!(chat.status, 200, "{}", String::from_utf8_lossy(&chat.body));
        let conversation = chat.json()["conversation_id"].as_str().unwrap().to_string();
        let job = call(&s, &alice, Method::POST, "/image", Some(json!({"prompt": "a fox", "width": 256, "height": 256}))).await;
        assert_eq!(job.status, 202, "{}", String::from_utf8_lossy(&job.body));
        let job_id = job.json()["job_id"].as_str().unwrap().to_string();
        let done = wait_for_job_as(&s, &alice, &format!("/jobs/{job_id}"), Duration::from_secs(20)).await;
        assert_eq!(done["status"], "done", "{done}");

        // Bob: every id-bearing route answers exactly as for an id that does not exist.
        let missing = "00000000-0000-4000-8000-000000000000";
        for id in [job_id.as_str(), missing] {
            for (method, uri) in [
                (Method::GET, format!("/jobs/{id}")),
                (Method::DELETE, format!("/jobs/{id}")),
                (Method::GET, format!("/jobs/{id}/events")),
                (Method::GET, format!("/images/{id}.png")),
            ] {
                let reply = call(&s, &bob, method.clone(), &uri, None).await;
                assert_eq!(reply.status, 404, "bob {method} {uri}");
                assert_eq!(reply.json()["error"]["code"], "not_found");
            }
        }
        let theirs = call(&s, &bob, Method::POST, "/chat", Some(json!({"user_id": "u1", "message": "hi", "conversation_id": conversation}))).await;
        assert_eq!(theirs.status, 404);
        // Inside Alice's account, end user u2 cannot continue u1's conversation either.
        let other_user = call(&s, &alice, Method::POST, "/chat", Some(json!({"user_id": "u2", "message": "hi", "conversation_id": conversation}))).await;
        assert_eq!(other_user.status, 404);
        // Alice still has everything.
        assert_eq!(call(&s, &alice, Method::GET, &format!("/images/{job_id}.png"), None).await.status, 200);
        let next = call(&s, &alice, Method::POST, "/chat", Some(json!({"user_id": "u1", "message": "again", "conversation_id": conversation}))).await;
        assert_eq!(next.status, 200);
        // A running job of Alice's cannot be cancelled by Bob.
        let slow = accounts_state_on(backend, dir.path(), &["--mock-image-step-ms", "200"]).await;
        let (_, carol) = account(&slow, "carol").await;
        let (_, dave) = account(&slow, "dave").await;
        let job = call(&slow, &carol, Method::POST, "/image", Some(json!({"prompt": "slow", "width": 256, "height": 256, "num_inference_steps": 50}))).await;
        let id = job.json()["job_id"].as_str().unwrap().to_string();
        assert_eq!(call(&slow, &dave, Method::DELETE, &format!("/jobs/{id}"), None).await.status, 404);
        let still = call(&slow, &carol, Method::GET, &format!("/jobs/{id}"), None).await.json();
        assert!(["queued", "running"].contains(&still["status"].as_str().unwrap()), "{still}");
        call(&slow, &carol, Method::DELETE, &format!("/jobs/{id}"), None).await;
    }

    async fn open_mode_serves_without_credentials_and_ignores_unknown_keys(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = mock_state_on(backend, dir.path(), &["--auth-required", "false"]).await;
        let me = get(&s, "/auth/me").await.json();
        assert_eq!((me["username"].as_str(), me["role"].as_str()), (Some("local"), Some("admin")));
        let chat = call(&s, &Auth::Key("sk-anything".into()), Method::POST, "/chat", Some(json!({"user_id": "u", "message": "hi"}))).await;
        assert_eq!(chat.status, 200, "OpenAI clients insist on some key: {}", String::from_utf8_lossy(&chat.body));
        // Keys belong to accounts: the local owner has none.
        assert_eq!(post(&s, "/account/keys", json!({"name": "k"})).await.status, 403);
        // A real account's key still names that account.
        let (_, key) = account(&s, "alice").await;
        assert_eq!(call(&s, &key, Method::GET, "/auth/me", None).await.json()["username"], "alice");
    }
}

#[tokio::test]
async fn session_cookies_are_secure_behind_https() {
    let dir = tempfile::tempdir().unwrap();
    let s = accounts_state_on(common::Backend::Sqlite, dir.path(), &["--public-url", "https://duet.example.com"]).await;
    let reg = post(&s, "/auth/register", creds("alice", "a long password")).await;
    let set_cookie = reg.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set_cookie.contains("Secure") && set_cookie.contains("HttpOnly"), "{set_cookie}");
}
