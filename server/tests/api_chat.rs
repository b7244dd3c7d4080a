//! `POST /chat` through the real router with the mock engines: the seed's request shape,
//! conversations that survive a restart, pictures from the chat, streaming, Stop, overload and
//! bad input.

mod common;

use common::api::{count, get, mock_state_on, post, wait_for_job};
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases! {
async fn the_seed_request_gets_a_reply_with_reasoning_apart(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let res = post(&state, "/chat", json!({"user_id": "alice", "message": "Hello there"})).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert_eq!(body["reply"], "You said: Hello there");
    assert_eq!(body["reasoning"], "The user wrote 2 words. Echo them back.");
    assert_eq!(body["image_job"], Value::Null);
    assert_eq!(body["mock"], true);
    assert_eq!(body["finish_reason"], "eos");
    assert_eq!(body["model"], server::config::DEFAULT_LLM_MODEL);
    assert_eq!(body["usage"]["completion_tokens"], 8 + 4);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 2);
    assert!(body["timings"]["total_ms"].as_f64().unwrap() >= body["timings"]["ttft_ms"].as_f64().unwrap());
    for key in ["conversation_id", "message_id"] {
        assert!(uuid::Uuid::parse_str(body[key].as_str().unwrap()).is_ok(), "{key}: {body}");
    }
    // Stored: the user's message and the reply with its reasoning apart.
    assert_eq!(count(&state.db, "SELECT COUNT(*) FROM messages").await, 2);
    assert_eq!(
        count(&state.db, "SELECT COUNT(*) FROM messages WHERE role = 'assistant' AND reasoning LIKE 'The user%'").await,
        1
    );
}

async fn conversations_continue_after_a_restart_and_stay_with_their_user(backend) {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let state = mock_state_on(backend, dir.path(), &[]).await;
        post(&state, "/chat", json!({"user_id": "alice", "message": "one two three"})).await.json()
    };
    // A new server over the same data folder still has the conversation.
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let id = first["conversation_id"].as_str().unwrap();
    let second = post(&state, "/chat", json!({"user_id": "alice", "message": "four", "conversation_id": id})).await;
    assert_eq!(second.status, 200);
    let second = second.json();
    assert_eq!(second["conversation_id"], id);
    // The mock counts every word it was sent: the earlier turn is in the context.
    let alone = post(&state, "/chat", json!({"user_id": "alice", "message": "four"})).await.json();
    let with_history = second["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(with_history > alone["usage"]["prompt_tokens"].as_u64().unwrap() + 3, "{second} vs {alone}");
    // Another user cannot continue it, and cannot tell it exists.
    let other = post(&state, "/chat", json!({"user_id": "mallory", "message": "hi", "conversation_id": id})).await;
    assert_eq!(other.error_param(404), None);
    let unknown = uuid::Uuid::new_v4().to_string();
    let missing = post(&state, "/chat", json!({"user_id": "alice", "message": "hi", "conversation_id": unknown})).await;
    assert_eq!(missing.json(), other.json(), "someone else's conversation looks exactly like none");
}

async fn a_picture_request_queues_an_image_and_hides_the_block(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let body = post(&state, "/chat", json!({"user_id": "bob", "message": "please draw a red fox"})).await.json();
    assert_eq!(body["reply"], "You said: please draw a red fox");
    let job = &body["image_job"];
    assert_eq!(job["prompt"], "please draw a red fox");
    assert!(["queued", "running"].contains(&job["status"].as_str().unwrap()), "{job}");
    assert_eq!((job["width"].as_u64(), job["num_inference_steps"].as_u64()), (Some(512), Some(20)));
    let done = wait_for_job(&state, job["status_url"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(done["status"], "done");
    let png = get(&state, job["image_url"].as_str().unwrap()).await;
    assert_eq!(png.status, 200);
    assert_eq!(png.headers["content-type"], "image/png");
    let recipe = server::inference::diffusion::image_file::read_request(&png.body).unwrap();
    assert_eq!((recipe.prompt.as_str(), recipe.seed as u64), ("please draw a red fox", job["seed"].as_u64().unwrap()));
    // The image row points back at the reply that asked for it.
    let linked = count(
        &state.db,
        "SELECT COUNT(*) FROM images i JOIN messages m ON m.id = i.message_id WHERE m.image_prompt IS NOT NULL",
    )
    .await;
    assert_eq!(linked, 1);
}

async fn stored_replies_keep_how_long_the_model_thought(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &["--mock-token-ms", "5"]).await;
    let said = post(&state, "/chat", json!({"user_id": "u", "message": "Hello there friend"})).await.json();
    let id = said["conversation_id"].as_str().unwrap();
    let messages = get(&state, &format!("/conversations/{id}")).await.json()["messages"].clone();
    let (user, reply) = (&messages[0], &messages[1]);
    assert!(user["thought_ms"].is_null(), "{user}");
    let thought = reply["thought_ms"].as_i64().expect("a reply with reasoning records its thinking time");
    // The mock paces every token, reasoning ones included: at least a few of them went by.
    assert!(thought >= 20 && thought <= reply["total_ms"].as_i64().unwrap() + 1, "{reply}");
    let imagined = post(&state, "/chat", json!({"user_id": "u", "message": "/imagine a boat"})).await.json();
    let id = imagined["conversation_id"].as_str().unwrap();
    let messages = get(&state, &format!("/conversations/{id}")).await.json()["messages"].clone();
    assert!(messages[1]["thought_ms"].is_null(), "no reasoning, no thinking time: {}", messages[1]);
}

async fn imagine_and_image_options_always_make_a_picture(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let body = post(&state, "/chat", json!({"user_id": "u", "message": "/imagine a lighthouse at dusk"})).await.json();
    assert_eq!((body["reply"].as_str(), body["finish_reason"].as_str()), (Some(""), Some("image")));
    assert_eq!(body["usage"]["completion_tokens"], 0, "no chat model run for /imagine");
    assert_eq!(body["image_job"]["prompt"], "a lighthouse at dusk");
    // While it is queued or drawing, the stored conversation says so (a page loaded now follows
    // it); once done, the reply holds the picture instead.
    let conversation = format!("/conversations/{}", body["conversation_id"].as_str().unwrap());
    let reply = get(&state, &conversation).await.json()["messages"][1].clone();
    let job_id = body["image_job"]["job_id"].as_str().unwrap();
    assert_eq!(reply["image_job"]["job_id"], job_id, "{reply}");
    assert!(["queued", "running"].contains(&reply["image_job"]["status"].as_str().unwrap()), "{reply}");
    assert_eq!(reply["image_ids"], json!([]));
    wait_for_job(&state, &format!("/jobs/{job_id}"), Duration::from_secs(20)).await;
    let reply = get(&state, &conversation).await.json()["messages"][1].clone();
    assert!(reply["image_job"].is_null(), "{reply}");
    assert_eq!(reply["image_ids"], json!([job_id]));
    // An `image` object asks for a picture even when the reply has no block; its settings apply.
    let body = post(
        &state,
        "/chat",
        json!({"user_id": "u", "message": "a quiet harbour",
               "image": {"width": 256, "height": 320, "seed": 7, "scheduler": "euler_a", "num_inference_steps": 3}}),
    )
    .await
    .json();
    let job = &body["image_job"];
    assert_eq!(job["prompt"], "a quiet harbour");
    assert_eq!((job["width"].as_u64(), job["height"].as_u64(), job["seed"].as_u64()), (Some(256), Some(320), Some(7)));
    assert_eq!((job["scheduler"].as_str(), job["num_inference_steps"].as_u64()), (Some("euler_a"), Some(3)));
    let done = wait_for_job(&state, job["status_url"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["step"], 3);
}

async fn bad_input_names_the_field_and_stores_nothing(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let cases = [
        (json!({"message": "hi"}), 422, Some("user_id")),
        (json!({"user_id": "a"}), 422, Some("message")),
        (json!({"user_id": "a", "message": "   "}), 422, Some("message")),
        (json!({"user_id": "a", "message": 5}), 422, Some("message")),
        (json!({"user_id": "a", "message": "hi", "temperature": 3}), 422, Some("temperature")),
        (json!({"user_id": "a", "message": "hi", "max_tokens": 0}), 422, Some("max_tokens")),
        (json!({"user_id": "a", "message": "hi", "conversation_id": "nope"}), 422, Some("conversation_id")),
        (json!({"user_id": "a", "message": "hi", "image": {"width": 500}}), 422, Some("image.width")),
        (json!({"user_id": "a", "message": "hi", "image": {"seed": -1}}), 422, Some("image.seed")),
        (json!({"user_id": "a", "message": "/imagine"}), 422, Some("message")),
        (json!(["not", "an", "object"]), 422, None),
    ];
    for (body, status, param) in cases {
        let res = post(&state, "/chat", body.clone()).await;
        assert_eq!(res.error_param(status).as_deref(), param, "{body}");
    }
    let req = axum::http::Request::post("/chat")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{\"user_id\": "))
        .unwrap();
    assert_eq!(common::api::raw(&state, req).await.error_param(400), None);
    let req = axum::http::Request::post("/chat")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("hello"))
        .unwrap();
    assert_eq!(common::api::raw(&state, req).await.status, 415);
    assert_eq!(count(&state.db, "SELECT COUNT(*) FROM conversations").await, 0);
    assert_eq!(count(&state.db, "SELECT COUNT(*) FROM messages").await, 0);
}

async fn streaming_sends_reasoning_then_answer_then_the_image_then_done(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let res = post(&state, "/chat", json!({"user_id": "s", "message": "paint a blue whale", "stream": true})).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["content-type"], "text/event-stream");
    let events = res.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"start"));
    assert_eq!(names.last(), Some(&"done"));
    let first_answer = names.iter().position(|n| *n == "answer").unwrap();
    assert!(names[..first_answer].contains(&"reasoning") && !names[first_answer..].contains(&"reasoning"));
    let text = |kind: &str| -> String {
        events.iter().filter(|(n, _)| n == kind).map(|(_, d)| d["text"].as_str().unwrap()).collect()
    };
    assert_eq!(text("reasoning"), "The user wrote 4 words. Echo them back.");
    let streamed_answer = text("answer");
    assert!(!streamed_answer.contains("image_prompt"), "the block never streams: {streamed_answer:?}");
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["reply"], "You said: paint a blue whale");
    assert_eq!(streamed_answer.trim(), done["reply"]);
    // Image progress comes between the reply and done, ending with the finished job.
    let jobs: Vec<&Value> = events.iter().filter(|(n, _)| n == "image_job").map(|(_, d)| &d["job"]).collect();
    assert!(jobs.len() >= 3, "{jobs:?}");
    let steps: Vec<u64> = jobs.iter().map(|j| j["step"].as_u64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "steps only go up: {steps:?}");
    assert_eq!(jobs.last().unwrap()["status"], "done");
    assert_eq!(done["image_job"]["status"], "done");
}

/// Reads a stream's first events, then hangs up like a browser whose user pressed Stop.
async fn hanging_up_stops_the_reply_and_keeps_what_was_said(backend) {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &["--mock-token-ms", "20"]).await;
    let long = "word ".repeat(300);
    let req = axum::http::Request::post("/chat")
        .header("content-type", "application/json")
        .body(Body::from(json!({"user_id": "s", "message": long, "stream": true}).to_string()))
        .unwrap();
    let res = server::app(state.clone()).oneshot(req).await.unwrap();
    let mut body = res.into_body();
    let mut seen = 0;
    while seen < 5 {
        let frame = body.frame().await.unwrap().unwrap();
        if frame.is_data() {
            seen += 1;
        }
    }
    drop(body);
    // The turn notices within a token, and stores the partial reply as cancelled.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored =
            count(&state.db, "SELECT COUNT(*) FROM messages WHERE role = 'assistant' AND finish_reason = 'cancelled'")
                .await;
        if stored == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the cancelled reply was not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tokens = count(&state.db, "SELECT CAST(completion_tokens AS BIGINT) FROM messages WHERE role = 'assistant'").await;
    assert!(tokens < 30, "stopped early, after {tokens} of 300+ tokens");
}

async fn overload_and_timeouts_answer_503_and_504(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state =
        mock_state_on(backend, dir.path(), &[
            "--mock-token-ms", "20", "--chat-concurrency", "1", "--chat-queue", "0", "--request-timeout-secs", "1",
        ])
        .await;
    let long = "word ".repeat(200); // about 4 s of tokens
    let slow = {
        let state = state.clone();
        let long = long.clone();
        tokio::spawn(async move { post(&state, "/chat", json!({"user_id": "a", "message": long})).await })
    };
    // Wait until the first turn holds the one place (not a guess at how long that takes).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.chat_slots.in_use() == 0 {
        assert!(std::time::Instant::now() < deadline, "the first turn never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let busy = post(&state, "/chat", json!({"user_id": "b", "message": "hi"})).await;
    assert_eq!(busy.error_param(503), None);
    assert_eq!(busy.json()["error"]["code"], "queue_full");
    assert_eq!(busy.headers["retry-after"], "5");
    let timed_out = slow.await.unwrap();
    assert_eq!(timed_out.error_param(504), None);
    assert!(timed_out.json()["error"]["message"].as_str().unwrap().contains("REQUEST_TIMEOUT_SECS"));
}

async fn turns_beyond_chat_concurrency_wait_their_turn_and_are_told_their_place(backend) {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--mock-token-ms", "20", "--chat-concurrency", "1", "--chat-queue", "2"];
    let state = mock_state_on(backend, dir.path(), &args).await;
    let until = |what: &'static str, done: Box<dyn Fn() -> bool>| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what} never happened");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let spawn_post = |body: Value| {
        let state = state.clone();
        tokio::spawn(async move { post(&state, "/chat", body).await })
    };
    let first = spawn_post(json!({"user_id": "a", "message": "word ".repeat(50)})); // about 1 s of tokens
    let slots = state.chat_slots.clone();
    until("the first turn starting", Box::new(move || slots.in_use() == 1)).await;
    let second = spawn_post(json!({"user_id": "b", "message": "hi", "stream": true}));
    let slots = state.chat_slots.clone();
    until("the second turn queueing", Box::new(move || slots.waiting() == 1)).await;
    let third = spawn_post(json!({"user_id": "c", "message": "hello"}));
    let slots = state.chat_slots.clone();
    until("the third turn queueing", Box::new(move || slots.waiting() == 2)).await;
    // b already holds its share of the two places (two users wait): its next turn is 429, for b alone.
    let over = post(&state, "/chat", json!({"user_id": "b", "message": "again"})).await;
    assert_eq!(over.error_param(429).as_deref(), Some("user.queued_turns"));
    assert!(over.headers.contains_key("retry-after"));
    // The queue is full: anyone else is turned away at once, told when to come back.
    let full = post(&state, "/chat", json!({"user_id": "d", "message": "hi"})).await;
    assert_eq!(full.error_param(503), None);
    assert_eq!(full.json()["error"]["code"], "queue_full");
    assert!(full.headers.contains_key("retry-after"));
    assert_eq!(first.await.unwrap().status, 200);
    let streamed = second.await.unwrap();
    let events = streamed.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..2], ["queued", "start"], "{names:?}");
    assert_eq!((events[0].1["position"].as_u64(), events[0].1["waiting"].as_u64()), (Some(1), Some(1)));
    assert_eq!(names.last(), Some(&"done"));
    let third = third.await.unwrap();
    assert_eq!(third.status, 200, "{}", String::from_utf8_lossy(&third.body));
    assert_eq!(third.json()["reply"], "You said: hello");
    assert_eq!((state.chat_slots.in_use(), state.chat_slots.waiting()), (0, 0));
    // Nothing was stored for the refused turns: three turns, two messages each.
    assert_eq!(count(&state.db, "SELECT COUNT(*) FROM messages").await, 6);
}

async fn replace_from_edits_or_regenerates_the_last_turn(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let first = post(&state, "/chat", json!({"user_id": "alice", "message": "one"})).await.json();
    let id = first["conversation_id"].as_str().unwrap();
    post(&state, "/chat", json!({"user_id": "alice", "message": "two", "conversation_id": id})).await;
    let detail = get(&state, &format!("/conversations/{id}")).await.json();
    let second_user = detail["messages"][2]["id"].as_str().unwrap().to_string();
    let first_reply = detail["messages"][1]["id"].as_str().unwrap().to_string();

    // A reply's id is not a user message: 404, and nothing is deleted.
    let wrong = json!({"user_id": "alice", "message": "x", "conversation_id": id, "replace_from": first_reply});
    assert_eq!(post(&state, "/chat", wrong).await.error_param(404), None);
    assert_eq!(get(&state, &format!("/conversations/{id}")).await.json()["messages"].as_array().unwrap().len(), 4);

    let edit = json!({"user_id": "alice", "message": "three", "conversation_id": id, "replace_from": second_user});
    let res = post(&state, "/chat", edit).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["reply"], "You said: three");
    let after = get(&state, &format!("/conversations/{id}")).await.json();
    let said: Vec<&str> = after["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(said, ["one", "You said: one", "three", "You said: three"]);
    // The old turn is gone from the context too: the mock counts the words it was sent.
    assert_eq!(count(&state.db, "SELECT COUNT(*) FROM messages WHERE content LIKE '%two%'").await, 0);
}
}
