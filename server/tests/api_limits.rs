//! Rate limits and quotas per account and per end user, through the real router, on SQLite and
//! on Postgres: 429 with Retry-After and the limit's name, and `GET /quota`.

mod common;

use axum::http::{header, Method};
use common::api::{account, call, mock_state_on, wait_for_job_as, Auth, Reply};
use serde_json::{json, Value};

async fn state(backend: common::Backend, dir: &std::path::Path, extra: &[&str]) -> server::AppState {
    let mut flags = vec!["--auth-required", "true"];
    flags.extend_from_slice(extra);
    mock_state_on(backend, dir, &flags).await
}

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
    call(s, Method::POST, "/chat", Some(json!({"user_id": user, "message": "hello there"})), auth).await
}

async fn image(s: &server::AppState, auth: &Auth, user: &str) -> Reply {
    let body = json!({"prompt": "a fox", "width": 256, "height": 256, "num_inference_steps": 4, "user_id": user});
    call(s, Method::POST, "/image", Some(body), auth).await
}

async fn quota(s: &server::AppState, auth: &Auth, user: &str) -> Value {
    let reply = call(s, Method::GET, &format!("/quota?user_id={user}"), None, auth).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

on_both_databases! {
    async fn requests_per_minute_per_account_and_per_user(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = state(backend, dir.path(), &["--account-requests-per-minute", "6", "--user-requests-per-minute", "1"]).await;
        let (_, alice) = account(&s, "alice").await; // one request (creating the key) on alice's bucket
        let (_, bob) = account(&s, "bob").await;
        assert_eq!(chat(&s, &alice, "u1").await.status, 200);
        assert_eq!(limit_hit(&chat(&s, &alice, "u1").await), "user.requests_per_minute");
        assert_eq!(chat(&s, &alice, "u2").await.status, 200, "another end user has their own bucket");
        for _ in 0..2 {
            assert_eq!(call(&s, Method::GET, "/auth/me", None, &alice).await.status, 200);
        }
        assert_eq!(limit_hit(&call(&s, Method::GET, "/auth/me", None, &alice).await), "account.requests_per_minute");
        assert_eq!(call(&s, Method::GET, "/auth/me", None, &bob).await.status, 200, "bob's account is untouched");
    }

    async fn concurrent_generations_per_user(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = state(backend, dir.path(), &["--user-concurrent-generations", "1", "--mock-image-step-ms", "100"]).await;
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
        call(&s, Method::DELETE, &format!("/jobs/{id}"), None, &alice).await;
        wait_for_job_as(&s, &alice, first.json()["status_url"].as_str().unwrap(), std::time::Duration::from_secs(10)).await;
        assert_eq!(image(&s, &alice, "u1").await.status, 202, "room again once the first job ended");
    }

    async fn images_per_day_per_user(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = state(backend, dir.path(), &["--user-images-per-day", "1", "--account-images-per-day", "2"]).await;
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
        let imagine = call(&s, Method::POST, "/chat", Some(json!({"user_id": "u2", "message": "/imagine a cat", "image": {"width": 256, "height": 256, "num_inference_steps": 2}})), &alice).await;
        assert_eq!(imagine.status, 200, "{}", String::from_utf8_lossy(&imagine.body));
        let job = imagine.json()["image_job"].clone();
        assert_eq!(wait_for_job_as(&s, &alice, job["status_url"].as_str().unwrap(), std::time::Duration::from_secs(10)).await["status"], "done");
        assert_eq!(limit_hit(&image(&s, &alice, "u3").await), "account.images_per_day");
        let refused = call(&s, Method::POST, "/chat", Some(json!({"user_id": "u3", "message": "/imagine a dog"})), &alice).await;
        assert_eq!(limit_hit(&refused), "account.images_per_day");
    }

    async fn generated_tokens_per_day_cap_the_reply_then_refuse(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = state(backend, dir.path(), &["--account-tokens-per-day", "5"]).await;
        let (_, alice) = account(&s, "alice").await;
        let reply = chat(&s, &alice, "u1").await;
        assert_eq!(reply.status, 200);
        let json = reply.json();
        assert_eq!((json["usage"]["completion_tokens"].as_u64(), json["finish_reason"].as_str()), (Some(5), Some("length")), "{json}");
        let q = quota(&s, &alice, "u1").await;
        assert_eq!(q["account"]["tokens_per_day"], json!({"limit": 5, "used": 5}), "{q}");
        assert_eq!(q["user"]["tokens_per_day"], json!({"limit": null, "used": 5}), "{q}");
        assert_eq!(limit_hit(&chat(&s, &alice, "u2").await), "account.tokens_per_day");
        let openai = call(&s, Method::POST, "/v1/chat/completions", Some(json!({"messages": [{"role": "user", "content": "hi"}]})), &alice).await;
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
    let s = state(common::Backend::Sqlite, dir.path(), &flags).await;
    let (_, alice) = account(&s, "alice").await;
    assert_eq!(chat(&s, &alice, "u1").await.status, 200);
    drop(s);
    let again = state(common::Backend::Sqlite, dir.path(), &flags).await;
    assert_eq!(limit_hit(&chat(&again, &alice, "u1").await), "account.tokens_per_day");
}
