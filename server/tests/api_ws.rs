//! `GET /ws` over a real socket (tokio-tungstenite against the router served on a loopback
//! port, mock engines): a chat turn streams the same events as `POST /chat`, stop and closing
//! end a reply, jobs are followed and cancelled, and every bound holds — the origin check,
//! sockets per account, frames per second, frame size, pings — with no account seeing another's.

mod common;

use common::api::{account, accounts_state_on, Auth};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The app on a loopback port, served as the binary serves it.
async fn serve(state: server::AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server::serve_on(listener, state, std::future::pending()).await.unwrap() });
    addr.to_string()
}

async fn connect(
    addr: &str,
    auth: &Auth,
    origin: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    match auth {
        Auth::Cookie(cookie) => drop(headers.insert("cookie", HeaderValue::from_str(cookie).unwrap())),
        Auth::Key(key) => {
            drop(headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {key}")).unwrap()))
        }
        Auth::None => {}
    }
    if let Some(origin) = origin {
        headers.insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// The next JSON frame (pings are answered by the library and skipped here).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Frames until one matching `until`, inclusive.
async fn frames_until(socket: &mut Socket, until: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = next(socket).await;
        let end = until(&frame);
        frames.push(frame);
        if end {
            return frames;
        }
    }
}

fn status(err: tokio_tungstenite::tungstenite::Error) -> u16 {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_chat_turn_streams_the_same_events_and_its_picture_can_be_followed() {
    let dir = tempfile::tempdir().unwrap();
    let state = accounts_state_on(common::Backend::Sqlite, dir.path(), &[]).await;
    let (alice, alice_key) = account(&state, "alice").await;
    let (bob, _) = account(&state, "bob").await;
    let addr = serve(state.clone()).await;

    assert_eq!(status(connect(&addr, &Auth::None, None).await.unwrap_err()), 401);
    let mut socket = connect(&addr, &alice_key, None).await.expect("an API key opens a socket");
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next(&mut socket).await, json!({"type": "pong"}));

    let body = json!({"user_id": "u1", "message": "please draw a red fox"});
    send(&mut socket, json!({"type": "chat", "ref": "t1", "body": body})).await;
    let frames = frames_until(&mut socket, |f| f["data"]["event"] == "done").await;
    assert!(frames.iter().all(|f| f["type"] == "chat" && f["ref"] == "t1"), "{frames:#?}");
    let names: Vec<&str> = frames.iter().map(|f| f["data"]["event"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"start"));
    for name in ["reasoning", "answer", "reply", "image_job"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let conversation = frames[0]["data"]["conversation_id"].as_str().unwrap().to_string();
    assert!(frames.iter().all(|f| f["conversation_id"] == conversation.as_str()), "every frame names the conversation");
    let done = &frames.last().unwrap()["data"]["response"];
    assert_eq!(done["reply"], "You said: please draw a red fox");
    let job_id = done["image_job"]["job_id"].as_str().unwrap().to_string();

    // The same turn through REST and the socket is stored alike.
    let stored =
        common::api::call(&state, &alice, axum::http::Method::GET, &format!("/conversations/{conversation}"), None)
            .await;
    assert_eq!(stored.json()["messages"][1]["content"], "You said: please draw a red fox");

    // A job is followed to its end; another account learns nothing of it.
    send(&mut socket, json!({"type": "subscribe", "job_id": job_id})).await;
    let jobs = frames_until(&mut socket, |f| f["type"] == "job" && f["data"]["status"] == "done").await;
    assert!(jobs.iter().all(|f| f["job_id"] == job_id.as_str()), "{jobs:#?}");
    let mut bobs = connect(&addr, &bob, None).await.expect("a session cookie opens a socket");
    send(&mut bobs, json!({"type": "subscribe", "job_id": job_id})).await;
    let refused = next(&mut bobs).await;
    assert_eq!((refused["type"].as_str(), refused["job_id"].as_str()), (Some("error"), Some(job_id.as_str())));
    assert_eq!(refused["error"]["code"], "not_found");
    send(&mut bobs, json!({"type": "cancel_job", "job_id": job_id})).await;
    assert_eq!(next(&mut bobs).await["error"]["code"], "not_found");

    // Bad frames are answered, not fatal.
    send(&mut socket, json!({"type": "dance"})).await;
    assert_eq!(next(&mut socket).await["error"]["code"], "invalid_frame");
    send(&mut socket, json!({"type": "chat", "ref": "t2", "body": {"user_id": "u1"}})).await;
    let invalid = next(&mut socket).await;
    assert_eq!((invalid["ref"].as_str(), invalid["error"]["param"].as_str()), (Some("t2"), Some("message")));
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next(&mut socket).await["type"], "pong");
}

#[tokio::test]
async fn stop_and_closing_end_a_reply_and_keep_what_was_said() {
    let dir = tempfile::tempdir().unwrap();
    let state = accounts_state_on(common::Backend::Sqlite, dir.path(), &["--mock-token-ms", "50"]).await;
    let (alice, key) = account(&state, "alice").await;
    let addr = serve(state.clone()).await;
    let mut socket = connect(&addr, &key, None).await.unwrap();
    let long = "tell me a long story about foxes and owls and the snow";
    send(&mut socket, json!({"type": "chat", "ref": "s", "body": {"user_id": "u", "message": long}})).await;
    let first = frames_until(&mut socket, |f| f["data"]["event"] == "answer").await;
    let conversation = first[0]["conversation_id"].as_str().unwrap().to_string();
    send(&mut socket, json!({"type": "stop", "ref": "s"})).await;
    frames_until(&mut socket, |f| f["type"] == "stopped").await;
    assert_eq!(next_or_quiet(&mut socket).await, None, "nothing follows a stopped reply");
    let stored = wait_for_reply(&state, &alice, &conversation).await;
    assert_eq!(stored["finish_reason"], "cancelled", "{stored}");

    // Closing the socket is a hang-up.
    send(&mut socket, json!({"type": "chat", "ref": "c", "body": {"user_id": "u", "message": long}})).await;
    let first = frames_until(&mut socket, |f| f["data"]["event"] == "answer").await;
    let conversation = first[0]["conversation_id"].as_str().unwrap().to_string();
    socket.close(None).await.unwrap();
    let stored = wait_for_reply(&state, &alice, &conversation).await;
    assert_eq!(stored["finish_reason"], "cancelled", "{stored}");
}

/// A frame within a moment, or none.
async fn next_or_quiet(socket: &mut Socket) -> Option<Value> {
    match tokio::time::timeout(Duration::from_millis(600), socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => Some(serde_json::from_str(text.as_str()).unwrap()),
        _ => None,
    }
}

/// The stored reply of a conversation, once there is one.
async fn wait_for_reply(state: &server::AppState, auth: &Auth, conversation: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let uri = format!("/conversations/{conversation}");
        let detail = common::api::call(state, auth, axum::http::Method::GET, &uri, None).await.json();
        if let Some(reply) = detail["messages"].as_array().and_then(|m| m.get(1)) {
            return reply.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no reply stored: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sockets_are_bounded_by_origin_count_rate_size_and_pings() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--account-websockets", "2", "--ws-messages-per-second", "5", "--ws-ping-secs", "1"];
    let state = accounts_state_on(common::Backend::Sqlite, dir.path(), &flags).await;
    let (alice, key) = account(&state, "alice").await;
    let addr = serve(state.clone()).await;

    // A page of another site may not open a socket with the user's cookie; this site's may.
    assert_eq!(status(connect(&addr, &alice, Some("http://evil.example")).await.unwrap_err()), 403);
    let mut own = connect(&addr, &alice, Some(&format!("http://{addr}"))).await.expect("same-origin page");
    let mut second = connect(&addr, &key, None).await.unwrap();
    assert_eq!(status(connect(&addr, &key, None).await.unwrap_err()), 429, "ACCOUNT_WEBSOCKETS=2");
    drop(second.close(None).await);
    drop(second);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut third = loop {
        match connect(&addr, &key, None).await {
            Ok(socket) => break socket,
            Err(_) => assert!(std::time::Instant::now() < deadline, "a closed socket frees its place"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Frames beyond the rate are answered with 429's error and dropped.
    for _ in 0..30 {
        send(&mut third, json!({"type": "ping"})).await;
    }
    let mut answers = Vec::new();
    while let Some(frame) = next_or_quiet(&mut third).await {
        answers.push(frame);
    }
    let pongs = answers.iter().filter(|f| f["type"] == "pong").count();
    let limited = answers.iter().filter(|f| f["error"]["code"] == "rate_limited").count();
    assert_eq!(pongs + limited, 30, "{answers:?}");
    assert!((5..=12).contains(&pongs) && limited >= 18, "{pongs} pongs, {limited} refused");

    // An oversized frame closes the socket.
    let huge = json!({"type": "chat", "body": {"user_id": "u", "message": "x".repeat(300 << 10)}});
    let _ = third.send(Message::Text(huge.to_string().into())).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match third.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the oversized frame ends the socket");

    // The server pings; a peer that stops reading and answering is closed within three rounds.
    let ping = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(Message::Ping(_))) = own.next().await {
                return;
            }
        }
    })
    .await;
    assert!(ping.is_ok(), "a ping within WS_PING_SECS");
    // Now `own` stops reading, so it answers no more pings: the server closes it within three
    // rounds and its place comes back.
    let me = common::api::call(&state, &alice, axum::http::Method::GET, "/auth/me", None).await.json();
    let account = me["id"].as_str().unwrap().to_string();
    assert_eq!(state.limits.open_sockets(&account), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.limits.open_sockets(&account) > 0 {
        assert!(std::time::Instant::now() < deadline, "the silent peer was never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(own);
}
