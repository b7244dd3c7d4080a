//! The service on the real engines: `POST /chat` and `POST /image` through the router with the
//! fixture models running on OpenVINO.

mod common;

use app::types::ModelState;
use common::api::{get, post, wait_until_loaded};
use serde_json::json;
use std::time::Duration;

async fn fixture_state(dir: &std::path::Path) -> server::AppState {
    let llm = common::fixture(common::LLM_FIXTURE);
    let sd = common::fixture(common::SD_FIXTURE);
    let config = common::config(dir, &["--llm-model", llm.to_str().unwrap(), "--sd-model", sd.to_str().unwrap()]);
    let state = server::build_state(config).await.unwrap();
    wait_until_loaded(&state).await;
    assert_eq!(state.llm.state(), ModelState::Ready, "{:?}", state.llm.health());
    assert_eq!(state.sd.state(), ModelState::Ready, "{:?}", state.sd.health());
    state
}

#[tokio::test]
async fn chat_and_images_run_on_the_fixture_models() {
    let dir = tempfile::tempdir().unwrap();
    let state = fixture_state(dir.path()).await;

    let ask = json!({"user_id": "u", "message": "Hello, who are you?", "temperature": 0, "max_tokens": 12});
    let first = post(&state, "/chat", ask.clone()).await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    let first = first.json();
    assert_eq!(first["mock"], false);
    let used = first["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&used), "{first}");
    assert!(first["usage"]["prompt_tokens"].as_u64().unwrap() > 20, "the system prompt is in the context");
    // Greedy is deterministic: a new conversation with the same message gets the same reply.
    let again = post(&state, "/chat", ask).await.json();
    assert_eq!((&again["reply"], &again["reasoning"]), (&first["reply"], &first["reasoning"]));
    // A follow-up turn runs on the conversation's cache and its history.
    let follow = json!({"user_id": "u", "message": "And then?", "temperature": 0, "max_tokens": 8,
                        "conversation_id": first["conversation_id"]});
    let second = post(&state, "/chat", follow).await;
    assert_eq!(second.status, 200);
    assert!(second.json()["usage"]["prompt_tokens"].as_u64() > first["usage"]["prompt_tokens"].as_u64());

    let recipe = json!({"prompt": "a red fox", "num_inference_steps": 2, "width": 256, "height": 256, "seed": 3});
    let image = post(&state, "/image?wait=true", recipe.clone()).await;
    assert_eq!(image.status, 200, "{}", String::from_utf8_lossy(&image.body));
    let image = image.json();
    assert_eq!((image["status"].as_str(), image["provider"].as_str()), (Some("done"), Some("openvino")));
    let png = get(&state, image["image_url"].as_str().unwrap()).await;
    let made = server::inference::diffusion::image_file::read_request(&png.body).unwrap();
    assert_eq!((made.width, made.height, made.seed, made.steps), (256, 256, 3, 2));
    let twin = post(&state, "/image?wait=true", recipe).await.json();
    assert_eq!(get(&state, twin["image_url"].as_str().unwrap()).await.body, png.body, "same seed, same bytes");

    // /imagine streams the job's steps to the end.
    let events = post(
        &state,
        "/chat",
        json!({"user_id": "u", "message": "/imagine a small boat", "stream": true,
                                             "image": {"num_inference_steps": 2, "width": 256, "height": 256}}),
    )
    .await
    .events();
    let last = &events.last().unwrap().1["response"]["image_job"];
    assert_eq!(last["status"], "done", "{events:?}");
}

#[tokio::test]
async fn jobs_and_openai_routes_on_the_fixture_models() {
    use axum::http::Method;
    let dir = tempfile::tempdir().unwrap();
    let state = fixture_state(dir.path()).await;

    // Job events follow a real render to the end.
    let job =
        post(&state, "/image", json!({"prompt": "a boat", "num_inference_steps": 3, "width": 256, "height": 256}))
            .await
            .json();
    let events = get(&state, &format!("{}/events", job["status_url"].as_str().unwrap())).await.events();
    let last = &events.last().unwrap().1;
    assert_eq!((last["status"].as_str(), last["step"].as_u64()), (Some("done"), Some(3)), "{events:?}");
    assert_eq!(get(&state, job["status_url"].as_str().unwrap()).await.json()["status"], "done");

    // A long render cancelled at once stops before it ends.
    let long =
        post(&state, "/image", json!({"prompt": "a boat", "num_inference_steps": 100, "width": 256, "height": 256}))
            .await
            .json();
    let status_url = long["status_url"].as_str().unwrap();
    assert!([200, 202].contains(&common::api::send(&state, Method::DELETE, status_url, None).await.status.as_u16()));
    let ended = common::api::wait_for_job(&state, status_url, Duration::from_secs(60)).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    assert!(ended["step"].as_u64().unwrap() < 100);
    assert_eq!(get(&state, long["image_url"].as_str().unwrap()).await.status, 404, "no file for a cancelled job");

    // OpenAI routes on the real engines.
    let model = state.config.models.llm_model.to_string();
    let c = post(
        &state,
        "/v1/chat/completions",
        json!({"model": model, "max_tokens": 6, "temperature": 0,
        "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(c.status, 200, "{}", String::from_utf8_lossy(&c.body));
    let c = c.json();
    assert!((1..=6).contains(&c["usage"]["completion_tokens"].as_u64().unwrap()), "{c}");
    let streamed = post(
        &state,
        "/v1/chat/completions",
        json!({"max_tokens": 6, "temperature": 0, "stream": true,
        "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    let text = String::from_utf8(streamed.body).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let images = post(
        &state,
        "/v1/images/generations",
        json!({"prompt": "a boat", "size": "256x256",
        "num_inference_steps": 2, "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(images.status, 200, "{}", String::from_utf8_lossy(&images.body));
    assert!(images.json()["data"][0]["b64_json"].as_str().unwrap().len() > 1000);
}

/// A streamed `/imagine` on the real image engine; hanging up after the first progress event
/// cancels the render before its next step.
#[tokio::test]
async fn hanging_up_a_stream_cancels_its_image_on_the_fixture_model() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let state = fixture_state(dir.path()).await;
    let body = json!({"user_id": "u", "message": "/imagine a slow boat", "stream": true,
                      "image": {"num_inference_steps": 100, "width": 256, "height": 256}});
    let req = axum::http::Request::post("/chat")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = server::app(state.clone()).oneshot(req).await.unwrap();
    let mut stream = res.into_body();
    let mut text = String::new();
    let mut job_id = None;
    while job_id.is_none() {
        let frame = stream.frame().await.expect("stream open").unwrap();
        if let Some(data) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(data));
        }
        for (name, data) in common::api::parse_sse(&text) {
            if name == "image_job" && data["job"]["step"].as_u64().unwrap_or(0) >= 1 {
                job_id = data["job"]["job_id"].as_str().map(String::from);
            }
        }
    }
    drop(stream);
    let ended = common::api::wait_for_job(&state, &format!("/jobs/{}", job_id.unwrap()), Duration::from_secs(60)).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    assert!(ended["step"].as_u64().unwrap() < 100, "{ended}");
}
