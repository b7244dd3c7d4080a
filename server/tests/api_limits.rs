//! Rate limits and quotas per account and per end user, through the real router, on SQLite and
//! on Postgres: 429 with Retry-After and the limit's name, and `GET /quota`.

mod common;

use axum::http::{header, Method};
use common::api::{account, accounts_state_on, call, wait_for_job_as, Auth, Reply};
use serde_json::{json, Value};

/// The limit a 429 names, after checking it carries Retry-After.
fn limit_hit(reply: &Reply) -> String {
    assert_eq!(reply.status, 429, "{}", String::from_utf8_lossy(&reply.body));
    let retry: u64 = reply.headers.get(header::RETRY_AFTER).expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let json = reply.json();
    assert_eq!(json["error"]["type"], "rate_limit_error");
    json["error"]["param"].as_str().unwrap().to_string()
}

async fn chat(s: &server::AppState, auth: &Auth, user: &str) -> Reply {
    call(s, auth, Method::POST, "/chat", Some(json!({"user_id": user, "message": "hello there"}))).await
}

async fn image(s: &server::AppState, auth: &Auth, user: &str) -> Reply {
    let body = json!({"prompt": "a fox", "width": 256, "height": 256, "num_inference_steps": 4, "user_id": user});
    call(s, auth, Method::POST, "/image", Some(body)).await
}

async fn quota(s: &server::AppState, auth: &Auth, user: &str) -> Value {
    let reply = call(s, auth, Method::GET, &format!("/quota?user_id={user}"), None).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

on_both_databases! {
    async fn requests_per_minute_per_account_and_per_user(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &["--account-requests-per-minute", "6", "--user-requests-per-minute", "1"]).await;
        let (_, alice) = account(&s, "alice").await; // one request (creating the key) on alice's bucket
        let (_, bob) = account(&s, "bob").await;
        assert_eq!(chat(&s, &alice, "u1").await.status, 200);
        assert_eq!(limit_hit(&chat(&s, &alice, "u1").await), "user.requests_per_minute");
        assert_eq!(chat(&s, &alice, "u2").await.status, 200, "another end user has their own bucket");
        for _ in 0..2 {
            assert_eq!(call(&s, &alice, Method::GET, "/auth/me", None).await.status, 200);
        }
        assert_eq!(limit_hit(&call(&s, &alice, Method::GET, "/auth/me", None).await), "account.requests_per_minute");
        assert_eq!(call(&s, &bob, Method::GET, "/auth/me", None).await.status, 200, "bob's account is untouched");
    }

    async fn concurrent_generations_per_user(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &["--user-concurrent-generations", "1", "--mock-image-step-ms", "100"]).await;
        let (_, alice) = account(&s, "alice").await;
        let first = image(&s, &alice, "u1").await;
        assert_eq!(first.status, 202);
        assert_eq!(limit_hit(&image(&s, &alice, "u1").await), "user.concurrent_generations");
        assert_eq!(limit_hit(&chat(&s, &alice, "u1").await), "user.concurrent_generations");
        let q = quota(&s, &alice, "u1").await;
        assert_eq!(q["user"]["concurrent_generations"], json!({"limit": 1, "used": 1}), "{q}");
        let other = image(&s, &alice, "u2").await;
        assert_eq!(other.status, 202, "u2 is not u1");
        let id = first.json()["job_id"].as_str().unwrap().to_string();
        call(&s, &alice, Method::DELETE, &format!("/jobs/{id}"), None).await;
        wait_for_job_as(&s, &alice, first.json()["status_url"].as_str().unwrap(), std::time::Duration::from_secs(10)).await;
        assert_eq!(image(&s, &alice, "u1").await.status, 202, "room again once the first job ended");
    }

    async fn images_per_day_per_user(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &["--user-images-per-day", "1", "--account-images-per-day", "2"]).await;
        let (_, alice) = account(&s, "alice").await;
        let first = image(&s, &alice, "u1").await;
        assert_eq!(wait_for_job_as(&s, &alice, first.json()["status_url"].as_str().unwrap(), std::time::Duration::from_secs(10)).await["status"], "done");
        let over = image(&s, &alice, "u1").await;
        assert_eq!(limit_hit(&over), "user.images_per_day");
        let retry: u64 = over.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!(retry <= 86_400, "until UTC midnight: {retry}");
        let q = quota(&s, &alice, "u1").await;
        assert_eq!(q["user"]["images_per_day"], json!({"limit": 1, "used": 1}), "{q}");
        assert_eq!(q["account"]["images_per_day"], json!({"limit": 2, "used": 1}), "{q}");
        assert!(q["day_resets_at"].as_i64().unwrap() > 0);
        // A picture asked for in the chat counts too; the account's second is its last.
        let imagine = call(&s, &alice, Method::POST, "/chat", Some(json!({"user_id": "u2", "message": "/imagine a cat", "image": {"width": 256, "height": 256, "num_inference_steps": 2}}))).await;
        assert_eq!(imagine.status, 200, "{}", String::from_utf8_lossy(&imagine.body));
        let job = imagine.json()["image_job"].clone();
        assert_eq!(wait_for_job_as(&s, &alice, job["status_url"].as_str().unwrap(), std::time::Duration::from_secs(10)).await["status"], "done");
        assert_eq!(limit_hit(&image(&s, &alice, "u3").await), "account.images_per_day");
        let refused = call(&s, &alice, Method::POST, "/chat", Some(json!({"user_id": "u3", "message": "/imagine a dog"}))).await;
        assert_eq!(limit_hit(&refused), "account.images_per_day");
    }

    async fn generated_tokens_per_day_cap_the_reply_then_refuse(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &["--account-tokens-per-day", "5"]).await;
        let (_, alice) = account(&s, "alice").await;
        let reply = chat(&s, &alice, "u1").await;
        assert_eq!(reply.status, 200);
        let json = reply.json();
        assert_eq!((json["usage"]["completion_tokens"].as_u64(), json["finish_reason"].as_str()), (Some(5), Some("length")), "{json}");
        let q = quota(&s, &alice, "u1").await;
        assert_eq!(q["account"]["tokens_per_day"], json!({"limit": 5, "used": 5}), "{q}");
        assert_eq!(q["user"]["tokens_per_day"], json!({"limit": null, "used": 5}), "{q}");
        assert_eq!(limit_hit(&chat(&s, &alice, "u2").await), "account.tokens_per_day");
        let openai = call(&s, &alice, Method::POST, "/v1/chat/completions", Some(json!({"messages": [{"role": "user", "content": "hi"}]}))).await;
        assert_eq!(limit_hit(&openai), "account.tokens_per_day");
        // Another account has its own day.
        let (_, bob) = account(&s, "bob").await;
        assert_eq!(chat(&s, &bob, "u1").await.status, 200);
    }
}

#[tokio::test]
async fn daily_usage_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--account-tokens-per-day", "5"];
    let s = accounts_state_on(common::Backend::Sqlite, dir.path(), &flags).await;
    let (_, alice) = account(&s, "alice").await;
    assert_eq!(chat(&s, &alice, "u1").await.status, 200);
    drop(s);
    let again = accounts_state_on(common::Backend::Sqlite, dir.path(), &flags).await;
    assert_eq!(limit_hit(&chat(&again, &alice, "u1").await), "account.tokens_per_day");
}
