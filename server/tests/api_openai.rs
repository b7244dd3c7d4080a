//! The OpenAI-compatible routes with the request bodies the official clients send (openai-python
//! 1.x `chat.completions.create` / `images.generate`, Open WebUI), through the real router on the
//! mock engines.

mod common;

use common::api::{get, mock_state_on, post};
use serde_json::json;

on_both_databases! {
async fn models_lists_both(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let body = get(&state, "/v1/models").await.json();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [server::config::DEFAULT_LLM_MODEL, server::config::DEFAULT_SD_MODEL]);
}

async fn chat_completions_answer_with_reasoning_content(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    // What openai-python sends for client.chat.completions.create(model=..., messages=[...], max_tokens=64).
    let body = json!({
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        "model": server::config::DEFAULT_LLM_MODEL,
        "max_tokens": 64
    });
    let res = post(&state, "/v1/chat/completions", body).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let c = res.json();
    assert_eq!(c["object"], "chat.completion");
    assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let message = &c["choices"][0]["message"];
    assert_eq!(
        (message["role"].as_str(), message["content"].as_str()),
        (Some("assistant"), Some("You said: Hello there"))
    );
    assert_eq!(message["reasoning_content"], "The user wrote 2 words. Echo them back.");
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    let u = &c["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    // Length-limited replies say so.
    let short =
        post(&state, "/v1/chat/completions", json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
            .await
            .json();
    assert_eq!(short["choices"][0]["finish_reason"], "length");
}

async fn streamed_chunks_end_with_usage_and_done(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    // Open WebUI's shape: content parts, stream with usage.
    let body = json!({
        "model": server::config::DEFAULT_LLM_MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "temperature": 0.6,
        "seed": 1
    });
    let res = post(&state, "/v1/chat/completions", body).await;
    assert_eq!(res.status, 200);
    let text = String::from_utf8(res.body).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let chunks: Vec<serde_json::Value> = text
        .split("\n\n")
        .filter_map(|b| b.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let joined =
        |key: &str| -> String { chunks.iter().filter_map(|c| c["choices"][0]["delta"][key].as_str()).collect() };
    assert_eq!(joined("reasoning_content"), "The user wrote 2 words. Echo them back.");
    assert_eq!(joined("content"), "You said: Hello there");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

async fn openai_errors_have_openai_shape(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let res = post(
        &state,
        "/v1/chat/completions",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(res.error_param(404).as_deref(), Some("model"));
    assert_eq!(res.json()["error"]["code"], "model_not_found");
    for (body, param) in [
        (json!({"messages": []}), "messages"),
        (json!({"messages": [{"role": "user", "content": "hi"}], "n": 3}), "n"),
        (json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 9}), "temperature"),
        (json!({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"messages": [{"role": "function", "content": "hi"}]}), "messages[0].role"),
    ] {
        let res = post(&state, "/v1/chat/completions", body.clone()).await;
        assert_eq!(res.error_param(422).as_deref(), Some(param), "{body}");
        assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    }
}

async fn image_generations_give_urls_or_base64(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &["--allowed-hosts", "duet.local"]).await;
    // openai-python: client.images.generate(prompt=..., n=2, size="256x256")
    let req = axum::http::Request::post("/v1/images/generations")
        .header("content-type", "application/json")
        .header("host", "duet.local:3000")
        .body(axum::body::Body::from(
            json!({"prompt": "a red fox", "n": 2, "size": "256x256", "seed": 5, "num_inference_steps": 2}).to_string(),
        ))
        .unwrap();
    let res = common::api::raw(&state, req).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let url = data[0]["url"].as_str().unwrap();
    assert!(url.starts_with("http://duet.local:3000/images/") && url.ends_with(".png"), "{url}");
    let png = get(&state, url.trim_start_matches("http://duet.local:3000")).await;
    let made = server::inference::diffusion::image_file::read_request(&png.body).unwrap();
    assert_eq!((made.width, made.seed), (256, 5));
    let second = get(&state, data[1]["url"].as_str().unwrap().trim_start_matches("http://duet.local:3000")).await;
    assert_eq!(
        server::inference::diffusion::image_file::read_request(&second.body).unwrap().seed,
        6,
        "n images, seeds in a row"
    );

    let b64 = post(&state, "/v1/images/generations",
        json!({"prompt": "a red fox", "size": "256x256", "seed": 5, "num_inference_steps": 2, "response_format": "b64_json"}))
    .await
    .json();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["b64_json"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, png.body, "same seed, same picture, either way");

    for (body, param) in [
        (json!({"prompt": "x", "n": 5}), "n"),
        (json!({"prompt": "x", "size": "1792x1024"}), "size"),
        (json!({"prompt": "x", "size": "big"}), "size"),
        (json!({"prompt": "x", "response_format": "png"}), "response_format"),
        (json!({"n": 1}), "prompt"),
    ] {
        let res = post(&state, "/v1/images/generations", body.clone()).await;
        assert_eq!(res.error_param(422).as_deref(), Some(param), "{body}");
    }
}
}
