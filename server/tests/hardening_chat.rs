//! Long conversations and hostile ones, on the fixture chat model through OpenVINO: bounded at
//! validation, fitted to the context window without re-running the whole conversation per turn
//! dropped, and a prompt too long even alone is the caller's error (400,
//! `context_length_exceeded`) with nothing stored.

mod common;

use app::types::ModelState;
use axum::http::Method;
use common::api::{call, mock_state, post, wait_until_loaded, Auth};
use serde_json::{json, Value};
use std::time::Instant;

async fn fixture_state(dir: &std::path::Path, extra: &[&str]) -> server::AppState {
    fixture_state_on(common::Backend::Sqlite, dir, extra).await
}

async fn fixture_state_on(backend: common::Backend, dir: &std::path::Path, extra: &[&str]) -> server::AppState {
    let llm = common::fixture(common::LLM_FIXTURE);
    let mut flags = vec!["--llm-model", llm.to_str().unwrap(), "--sd-model", "no/such-model"];
    flags.extend_from_slice(extra);
    let state = server::build_state(common::config_on(backend, dir, &flags).await).await.unwrap();
    wait_until_loaded(&state).await;
    assert_eq!(state.llm.state(), ModelState::Ready, "{:?}", state.llm.health().detail);
    state
}

fn turns(count: usize, user: impl Fn(usize) -> String) -> Vec<Value> {
    let mut messages = Vec::new();
    for i in 0..count {
        messages.push(json!({"role": "user", "content": user(i)}));
        messages.push(json!({"role": "assistant", "content": format!("Answer {i}.")}));
    }
    messages.push(json!({"role": "user", "content": "And now?"}));
    messages
}

#[tokio::test]
async fn a_huge_system_prompt_with_many_turns_is_refused_as_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let s = fixture_state(dir.path(), &[]).await;
    // The request: 100 KB of system prompt and 800 short turns, which used to take the
    // engine thread 11 s and then answer 500.
    let mut messages = vec![json!({"role": "system", "content": "You are helpful. ".repeat(6_000)})];
    messages.extend(turns(800, |i| format!("q{i}")));
    let started = Instant::now();
    let reply = post(&s, "/v1/chat/completions", json!({"messages": messages, "max_tokens": 8})).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&reply.body));
    let error = &reply.json()["error"];
    assert_eq!((error["code"].as_str(), error["param"].as_str()), (Some("context_length_exceeded"), Some("messages")));
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error["message"].as_str().unwrap().contains("fit in the context"), "{error}");
    eprintln!("refused a 100 KB system prompt with 800 turns in {took:?}");
    // The engine is free at once for everyone else.
    let next =
        post(&s, "/v1/chat/completions", json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}))
            .await;
    assert_eq!(next.status, 200, "{}", String::from_utf8_lossy(&next.body));
}

#[tokio::test]
async fn a_conversation_far_longer_than_the_window_keeps_its_newest_turns() {
    let dir = tempfile::tempdir().unwrap();
    let s = fixture_state(dir.path(), &["--llm-context-tokens", "2048"]).await;
    let mut messages = vec![json!({"role": "system", "content": "Be brief."})];
    messages.extend(turns(1_000, |i| format!("Question number {i}: what is {i} plus {i}?")));
    let reply = post(&s, "/v1/chat/completions", json!({"messages": messages, "max_tokens": 4})).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let prompt = reply.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    // 2048 - 4 tokens for the reply; the oldest turns went, down to about half of that (the
    // window slides in blocks, so the next turns keep its start and reuse the cache).
    assert!(prompt <= 1100 && prompt > 700, "prompt of {prompt} tokens");
}

on_both_databases! {
async fn a_chat_message_too_long_for_the_window_stores_nothing(backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = fixture_state_on(backend, dir.path(), &["--llm-context-tokens", "512"]).await;
    let too_long = "many words here ".repeat(600);
    for stream in [false, true] {
        let reply = post(&s, "/chat", json!({"user_id": "u", "message": too_long, "stream": stream})).await;
        assert_eq!(reply.status, 400, "stream={stream}: {}", String::from_utf8_lossy(&reply.body));
        let error = &reply.json()["error"];
        assert_eq!(
            (error["code"].as_str(), error["param"].as_str()),
            (Some("context_length_exceeded"), Some("message"))
        );
    }
    let list = call(&s, &Auth::None, Method::GET, "/conversations?user_id=u", None).await.json();
    assert_eq!(list["conversations"], json!([]), "no conversation was made for a refused message");

    // In a conversation, an edit that does not fit leaves the conversation as it was.
    let first = post(&s, "/chat", json!({"user_id": "u", "message": "Hello", "max_tokens": 4})).await.json();
    let id = first["conversation_id"].as_str().unwrap().to_string();
    let before = call(&s, &Auth::None, Method::GET, &format!("/conversations/{id}"), None).await.json();
    let user_message = before["messages"][0]["id"].as_str().unwrap().to_string();
    let edit = json!({"user_id": "u", "conversation_id": id, "replace_from": user_message, "message": too_long});
    assert_eq!(post(&s, "/chat", edit).await.status, 400);
    let after = call(&s, &Auth::None, Method::GET, &format!("/conversations/{id}"), None).await.json();
    assert_eq!(after["messages"], before["messages"], "nothing already stored was lost");
}
}

#[tokio::test]
async fn the_size_of_a_request_is_bounded_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = mock_state(dir.path(), &[]).await;
    let many: Vec<Value> =
        (0..=server::service::validate::MAX_MESSAGES).map(|_| json!({"role": "user", "content": "x"})).collect();
    let reply = post(&s, "/v1/chat/completions", json!({"messages": many})).await;
    assert_eq!(reply.error_param(422).as_deref(), Some("messages"));
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("at most 2048 messages"));
    let half = "y".repeat(server::service::validate::MAX_CONVERSATION_CHARS / 2);
    let big = json!([
        {"role": "system", "content": half},
        {"role": "user", "content": half},
        {"role": "user", "content": "one more"},
    ]);
    let reply = post(&s, "/v1/chat/completions", json!({"messages": big})).await;
    assert_eq!(reply.error_param(422).as_deref(), Some("messages[2].content"));
    // Right at the bounds is fine.
    let edge = json!([{"role": "system", "content": half}, {"role": "user", "content": half}]);
    assert_eq!(post(&s, "/v1/chat/completions", json!({"messages": edge, "max_tokens": 2})).await.status, 200);
}
