//! Image prompt sanitization through the real router (mock engines): one filter for prompts typed
//! into `POST /image`, `/imagine`, a chat request's `image.prompt` and OpenAI's images API, and
//! for prompts the chat model writes — markup and control characters go, the block-list
//! (`IMAGE_PROMPT_BLOCKLIST`) refuses with the rule's name, `IMAGE_NEGATIVE_PROMPT` fills in.

mod common;

use common::api::{count, mock_state, post, wait_for_job};
use serde_json::{json, Value};
use std::time::Duration;

const BLOCKLIST: &str = "# what this server does not draw\ngore\nre:nud(e|ity)\n";

async fn state(dir: &std::path::Path) -> server::AppState {
    let list = dir.join("blocklist.txt");
    std::fs::write(&list, BLOCKLIST).unwrap();
    let list = list.to_str().unwrap().to_string();
    mock_state(dir, &["--image-prompt-blocklist", &list, "--image-negative-prompt", "blurry, lowres"]).await
}

fn refused(reply: &common::api::Reply, param: &str, rule: &str) {
    assert_eq!(reply.error_param(422).as_deref(), Some(param));
    let message = reply.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains(&format!("IMAGE_PROMPT_BLOCKLIST {rule}")), "{message}");
}

async fn rows(state: &server::AppState, table: &str) -> i64 {
    count(&state.db, &format!("SELECT COUNT(*) FROM {table}")).await
}

#[tokio::test]
async fn typed_prompts_are_cleaned_or_refused_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path()).await;

    let made = post(&s, "/image?wait=true", json!({"prompt": "<b>a red</b>\u{0} fox\u{200B} in **snow**", "seed": 1, "width": 256, "height": 256, "num_inference_steps": 2})).await;
    assert_eq!(made.status, 200, "{}", String::from_utf8_lossy(&made.body));
    let made = made.json();
    assert_eq!(made["parameters"]["prompt"], "a red fox in snow");
    assert_eq!(made["parameters"]["negative_prompt"], "blurry, lowres", "the default negative prompt");
    let own = post(
        &s,
        "/image?wait=true",
        json!({"prompt": "a fox", "negative_prompt": "grainy", "width": 256, "height": 256, "num_inference_steps": 2}),
    )
    .await
    .json();
    assert_eq!(own["parameters"]["negative_prompt"], "grainy");

    refused(&post(&s, "/image", json!({"prompt": "a GORE scene"})).await, "prompt", "line 2: gore");
    refused(&post(&s, "/image", json!({"prompt": "Ｎｕｄｉｔｙ"})).await, "prompt", "line 3: re:nud(e|ity)");
    assert_eq!(post(&s, "/image", json!({"prompt": "<p></p>\u{7}"})).await.error_param(422).as_deref(), Some("prompt"));
    refused(
        &post(&s, "/v1/images/generations", json!({"prompt": "gore", "response_format": "b64_json"})).await,
        "prompt",
        "line 2: gore",
    );
    let images_before = rows(&s, "images").await;

    // Typed into a chat turn: refused before anything runs or is stored.
    let messages = rows(&s, "messages").await;
    refused(
        &post(&s, "/chat", json!({"user_id": "u", "message": "/imagine a gore fox"})).await,
        "message",
        "line 2: gore",
    );
    let with_options = json!({"user_id": "u", "message": "a fox", "image": {"prompt": "gore"}});
    refused(&post(&s, "/chat", with_options).await, "image.prompt", "line 2: gore");
    assert_eq!(rows(&s, "messages").await, messages, "nothing stored");
    let imagine = post(&s, "/chat", json!({"user_id": "u", "message": "/imagine a <i>quiet</i> harbour"})).await.json();
    assert_eq!(imagine["image_job"]["prompt"], "a quiet harbour");
    let done = wait_for_job(&s, imagine["image_job"]["status_url"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(done["status"], "done");
    assert_eq!(rows(&s, "images").await, images_before + 1);
}

#[tokio::test]
async fn a_reply_whose_picture_is_refused_says_so_and_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path()).await;
    // The mock model answers a picture request with a block holding the message.
    let body = post(&s, "/chat", json!({"user_id": "u", "message": "draw a gore fox"})).await;
    assert_eq!(body.status, 200, "{}", String::from_utf8_lossy(&body.body));
    let body = body.json();
    assert!(body["image_job"].is_null(), "{body}");
    let reply = body["reply"].as_str().unwrap();
    assert!(reply.starts_with("You said: draw a gore fox\n\n(No picture: its prompt was refused"), "{reply}");
    assert!(reply.contains("IMAGE_PROMPT_BLOCKLIST line 2: gore"), "{reply}");
    // Stored as sent, without an image prompt; the history shows the same text.
    let id = body["conversation_id"].as_str().unwrap();
    let detail = common::api::get(&s, &format!("/conversations/{id}")).await.json();
    let stored: &Value = &detail["messages"][1];
    assert_eq!((stored["content"].as_str(), stored["image_prompt"].as_str()), (Some(reply), None));

    // Streamed: the reply event carries the note, and no image job follows.
    let streamed = post(&s, "/chat", json!({"user_id": "u", "message": "draw a gore owl", "stream": true})).await;
    let events = streamed.events();
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert!(!names.contains(&"image_job"), "{names:?}");
    let (_, reply) = events.iter().find(|(name, _)| name == "reply").expect("a reply event");
    assert!(reply["reply"].as_str().unwrap().contains("(No picture: its prompt was refused"), "{reply}");

    // A harmless picture request is drawn from its cleaned prompt.
    let fine = post(&s, "/chat", json!({"user_id": "u", "message": "draw a `red` fox"})).await.json();
    assert_eq!(fine["image_job"]["prompt"], "draw a red fox");
}
