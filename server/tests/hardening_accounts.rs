//! What a flood or a race can do to accounts, quotas and the gallery, on SQLite and Postgres:
//! log-in and sign-up limited per client address (and the lock-out per name and address), bounded
//! password hashing, one first admin however many sign up at once, quotas that count replies
//! however they end, share links that die with their owner's account, and zips streamed a few
//! at a time.

mod common;

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Method, Request},
};
use common::api::{account, call, creds, mock_state_on, raw, respond, Auth, Reply};
use futures::future::join_all;
use serde_json::{json, Value};
use std::{net::SocketAddr, time::Duration};

/// A JSON POST from a client at `peer`, maybe through a proxy that says `forwarded`.
async fn post_from(s: &server::AppState, uri: &str, peer: &str, forwarded: Option<&str>, body: Value) -> Reply {
    let peer: SocketAddr = peer.parse().unwrap();
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json").extension(ConnectInfo(peer));
    if let Some(forwarded) = forwarded {
        req = req.header("x-forwarded-for", forwarded);
    }
    raw(s, req.body(Body::from(body.to_string())).unwrap()).await
}

async fn quota_used(s: &server::AppState, auth: &Auth) -> u64 {
    let q = call(s, auth, Method::GET, "/quota", None).await.json();
    q["account"]["tokens_per_day"]["used"].as_u64().unwrap()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_databases! {
    async fn log_in_and_sign_up_are_limited_per_client_address(backend) {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--auth-required", "true", "--auth-requests-per-minute", "4"];
        let s = mock_state_on(backend, dir.path(), &flags).await;
        assert_eq!(post_from(&s, "/auth/register", "203.0.113.9:5000", None, creds("first", "a long password")).await.status, 201);
        for i in 0..3 {
            let r = post_from(&s, "/auth/login", "203.0.113.9:5001", None, creds("first", "wrong password")).await;
            assert_eq!(r.status, 401, "attempt {i}");
        }
        let refused = post_from(&s, "/auth/register", "203.0.113.9:5002", None, creds("second", "a long password")).await;
        assert_eq!(refused.status, 429, "{}", String::from_utf8_lossy(&refused.body));
        assert_eq!(refused.json()["error"]["param"], "client.auth_requests_per_minute");
        assert!(refused.headers.contains_key(header::RETRY_AFTER));
        // Another address is not held back, and a made-up X-Forwarded-For from a client that is
        // not a trusted proxy changes nothing.
        let other = post_from(&s, "/auth/login", "198.51.100.7:4000", None, creds("first", "a long password")).await;
        assert_eq!(other.status, 200);
        let spoofed = post_from(&s, "/auth/login", "203.0.113.9:5003", Some("192.0.2.55"), creds("first", "a long password")).await;
        assert_eq!(spoofed.status, 429, "X-Forwarded-For from an untrusted peer is ignored");
    }

    async fn a_trusted_proxy_forwards_the_client_address(backend) {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--auth-required", "true", "--auth-requests-per-minute", "2", "--trusted-proxies", "10.0.0.0/8"];
        let s = mock_state_on(backend, dir.path(), &flags).await;
        for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            let forwarded = format!("6.6.6.6, {client}");
            for _ in 0..2 {
                let r = post_from(&s, "/auth/login", "10.0.0.2:80", Some(&forwarded), creds("nobody", "a long password")).await;
                assert_eq!(r.status, 401, "each client behind the proxy has its own limit");
            }
            let r = post_from(&s, "/auth/login", "10.0.0.2:80", Some(&forwarded), creds("nobody", "a long password")).await;
            assert_eq!(r.status, 429, "{client}: its third attempt");
        }
    }

    async fn nobody_elsewhere_can_lock_a_user_out(backend) {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--auth-required", "true", "--auth-requests-per-minute", "0"];
        let s = mock_state_on(backend, dir.path(), &flags).await;
        post_from(&s, "/auth/register", "198.51.100.7:1", None, creds("admin", "the admin's password")).await;
        for _ in 0..10 {
            let r = post_from(&s, "/auth/login", "203.0.113.66:1", None, creds("admin", "guess")).await;
            assert_eq!(r.status, 401);
        }
        let attacker = post_from(&s, "/auth/login", "203.0.113.66:1", None, creds("admin", "the admin's password")).await;
        assert_eq!(attacker.status, 429, "the guesser is locked out");
        assert_eq!(attacker.json()["error"]["param"], "login.attempts_per_minute");
        let owner = post_from(&s, "/auth/login", "198.51.100.7:2", None, creds("admin", "the admin's password")).await;
        assert_eq!(owner.status, 200, "the owner, from their own address, is not");
    }

    async fn concurrent_first_sign_ups_make_one_admin(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = mock_state_on(backend, dir.path(), &["--auth-required", "true"]).await;
        let replies = join_all((0..12).map(|i| {
            let s = s.clone();
            async move { post_from(&s, "/auth/register", &format!("192.0.2.{i}:1"), None, creds(&format!("user{i}"), "a long password")).await }
        }))
        .await;
        let roles: Vec<String> = replies
            .iter()
            .map(|r| {
                assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
                r.json()["role"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(roles.iter().filter(|r| *r == "admin").count(), 1, "{roles:?}");

        // Straight at the database, without the hashing in between to spread them out.
        let dir = tempfile::tempdir().unwrap();
        let s = mock_state_on(backend, dir.path(), &["--auth-required", "true"]).await;
        let made = join_all((0..16).map(|i| {
            let db = s.db.clone();
            async move { db.create_account(&format!("id{i}"), &format!("n{i}"), "hash", false).await.unwrap() }
        }))
        .await;
        let admins = made.iter().filter(|m| matches!(m, server::storage::NewAccount::Created(r) if r.role == "admin")).count();
        assert_eq!(admins, 1, "{made:?}");
    }

    async fn closed_registration_lets_only_one_first_account_in(backend) {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--auth-required", "true", "--open-registration", "false"];
        let s = mock_state_on(backend, dir.path(), &flags).await;
        let replies = join_all((0..12).map(|i| {
            let s = s.clone();
            async move { post_from(&s, "/auth/register", &format!("192.0.2.{i}:1"), None, creds(&format!("user{i}"), "a long password")).await }
        }))
        .await;
        let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 201 || *s == 403), "{statuses:?}");
        let made = join_all((0..8).map(|i| {
            let db = s.db.clone();
            async move { db.create_account(&format!("late{i}"), &format!("late{i}"), "hash", true).await.unwrap() }
        }))
        .await;
        assert!(made.iter().all(|m| *m == server::storage::NewAccount::Closed), "{made:?}");
        assert_eq!(s.db.accounts().await.unwrap().len(), 1);
    }

    async fn share_links_die_with_their_owners_account(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = mock_state_on(backend, dir.path(), &["--auth-required", "true"]).await;
        let (admin, _) = account(&s, "root").await;
        let (_, alice) = account(&s, "alice").await;
        let job = call(&s, &alice, Method::POST, "/image?wait=true", Some(json!({"prompt": "a fox", "width": 256, "height": 256, "num_inference_steps": 1}))).await.json();
        let image = job["job_id"].as_str().unwrap();
        let share = call(&s, &alice, Method::POST, &format!("/gallery/{image}/shares"), Some(json!({}))).await.json();
        let url = share["url"].as_str().unwrap().to_string();
        assert_eq!(call(&s, &Auth::None, Method::GET, &url, None).await.status, 200);
        let alice_id = call(&s, &alice, Method::GET, "/auth/me", None).await;
        assert_eq!(alice_id.status, 200);
        let alice_id = alice_id.json()["id"].as_str().unwrap().to_string();
        let off = call(&s, &admin, Method::PATCH, &format!("/admin/accounts/{alice_id}"), Some(json!({"disabled": true}))).await;
        assert_eq!(off.status, 200);
        assert_eq!(call(&s, &Auth::None, Method::GET, &url, None).await.status, 404, "a disabled account shares nothing");
        call(&s, &admin, Method::PATCH, &format!("/admin/accounts/{alice_id}"), Some(json!({"disabled": false}))).await;
        assert_eq!(call(&s, &Auth::None, Method::GET, &url, None).await.status, 200, "enabled again, the link works again");
    }

    async fn replies_count_against_the_quota_however_they_end(backend) {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--auth-required", "true", "--mock-token-ms", "40", "--request-timeout-secs", "1", "--account-tokens-per-day", "100000"];
        let s = mock_state_on(backend, dir.path(), &flags).await;
        let (_, key) = account(&s, "counted").await;
        let Auth::Key(secret) = key.clone() else { unreachable!() };
        // A streamed completion its client closes after the first pieces.
        let body = json!({"stream": true, "messages": [{"role": "user", "content": "tell me a long story about foxes and owls and whales"}]});
        let req = Request::post("/v1/chat/completions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let res = respond(&s, req).await;
        assert_eq!(res.status(), 200);
        let mut body = res.into_body().into_data_stream();
        for _ in 0..3 {
            futures::StreamExt::next(&mut body).await.expect("a chunk").unwrap();
        }
        drop(body);
        eventually("the closed stream's tokens are counted", async || quota_used(&s, &key).await > 0).await;
        let after_stream = quota_used(&s, &key).await;

        // A non-streaming completion that times out (the mock takes 40 ms a token, 1 s allowed).
        let messages = json!([{"role": "user", "content": "word ".repeat(40)}]);
        let slow = call(&s, &key, Method::POST, "/v1/chat/completions", Some(json!({"messages": messages}))).await;
        assert_eq!(slow.status, 504, "{}", String::from_utf8_lossy(&slow.body));
        eventually("the timed-out reply's tokens are counted", async || quota_used(&s, &key).await > after_stream).await;
        let after_timeout = quota_used(&s, &key).await;

        // The same on REST /chat: a non-streaming turn that times out.
        let slow = call(&s, &key, Method::POST, "/chat", Some(json!({"user_id": "u", "message": "word ".repeat(40)}))).await;
        assert_eq!(slow.status, 504);
        eventually("the timed-out turn's tokens are counted", async || quota_used(&s, &key).await > after_timeout).await;
    }

    async fn zips_stream_a_few_at_a_time(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = mock_state_on(backend, dir.path(), &["--auth-required", "true"]).await;
        let (_, key) = account(&s, "zipper").await;
        let Auth::Key(secret) = key.clone() else { unreachable!() };
        let mut ids = Vec::new();
        for i in 0..3 {
            let body = json!({"prompt": format!("picture {i}"), "width": 256, "height": 256, "num_inference_steps": 1});
            let job = call(&s, &key, Method::POST, "/image?wait=true", Some(body)).await.json();
            let id = job["job_id"].as_str().unwrap().to_string();
            // Big pictures: a zip of them does not fit the stream's few buffered chunks.
            let noise: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            std::fs::write(dir.path().join("images").join(format!("{id}.png")), noise).unwrap();
            ids.push(id);
        }
        let zip_request = |ids: Value| {
            Request::post("/gallery/zip")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, format!("Bearer {secret}"))
                .body(Body::from(json!({"ids": ids}).to_string()))
                .unwrap()
        };
        let mut open = Vec::new();
        for _ in 0..server::service::gallery::ZIP_CONCURRENCY {
            let res = respond(&s, zip_request(json!(ids))).await;
            assert_eq!(res.status(), 200);
            open.push(res);
        }
        let busy = raw(&s, zip_request(json!(ids))).await;
        assert_eq!(busy.status, 503, "{}", String::from_utf8_lossy(&busy.body));
        assert!(busy.headers.contains_key(header::RETRY_AFTER));
        // A client that leaves gives its place back.
        drop(open.pop());
        let whole = loop {
            let reply = raw(&s, zip_request(json!(ids))).await;
            if reply.status == 200 {
                break reply;
            }
            assert_eq!(reply.status, 503);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(whole.body)).expect("a whole zip");
        assert_eq!(archive.len(), 3);
        let mut first = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_index(0).unwrap(), &mut first).unwrap();
        assert_eq!(first, std::fs::read(dir.path().join("images").join(format!("{}.png", ids[0]))).unwrap());
        drop(open);
        // The same id twice is one picture in the zip, not a broken request.
        let twice = raw(&s, zip_request(json!([ids[0], ids[1], ids[0]]))).await;
        assert_eq!(twice.status, 200, "{}", String::from_utf8_lossy(&twice.body));
        assert_eq!(zip::ZipArchive::new(std::io::Cursor::new(twice.body)).unwrap().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_hashing_beyond_its_slots_is_busy_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--auth-required", "true", "--auth-requests-per-minute", "0", "--login-attempts-per-minute", "0"];
    let mut s = mock_state_on(common::Backend::Sqlite, dir.path(), &flags).await;
    s.hashing = server::auth::password::Hashing::with_slots(1);
    let replies = join_all((0..240).map(|i| {
        let s = s.clone();
        async move {
            post_from(
                &s,
                "/auth/login",
                &format!("192.0.2.{}:1", i % 250),
                None,
                creds(&format!("u{i}"), "a long password"),
            )
            .await
        }
    }))
    .await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(!busy.is_empty(), "one slot cannot check 240 passwords in the 2 s a request waits");
    assert_eq!(busy[0].headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert!(statuses.contains(&401), "some were answered");
}
