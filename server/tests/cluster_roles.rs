//! The roles' edges, with mock engines over a throwaway Postgres: a web process refuses to start
//! without what it needs (Postgres, the shared secret); a worker answers its internal routes only
//! with the secret; a web process with no worker, or only workers with another secret, answers
//! 503 with Retry-After and says why on /health; the stop button reaches the worker (the reply
//! is stored cut short, `cancelled`); and the OpenAI-compatible API works through workers.

mod common;

use common::process::{free_port, server_command, ServerProcess};
use serde_json::{json, Value};
use std::{
    path::Path,
    time::{Duration, Instant},
};

const SECRET: &str = "roles-test-shared-secret";

async fn duet(role: &str, secret: &str, data: &Path, database: &str, extra: &[&str]) -> ServerProcess {
    let port = free_port();
    let mut command = server_command(port);
    command
        .args(["--role", role, "--worker-secret", secret, "--data-dir", data.to_str().unwrap()])
        .args(["--database-url", database, "--use-mocks", "true"])
        .args(["--auth-required", "false", "--process-heartbeat-ms", "300"])
        .args(extra);
    ServerProcess::start(command, port).await
}

/// Until `web` reports its chat model in `state`.
async fn until_chat(web: &ServerProcess, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = web.json("GET", "/health", None).await;
        if health["models"][0]["state"] == state {
            return health;
        }
        assert!(Instant::now() < deadline, "chat never became {state}: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Read a chat stream until `event` appears: its conversation id, and what was read.
async fn read_until(stream: &mut reqwest::Response, event: &str) -> (String, String) {
    let mut seen = String::new();
    while !seen.contains(event) {
        seen.push_str(&String::from_utf8_lossy(&stream.chunk().await.unwrap().expect("more of the stream")));
    }
    let conversation = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| serde_json::from_str::<Value>(d.trim()).ok()?["conversation_id"].as_str().map(String::from))
        .unwrap();
    (conversation, seen)
}

#[test]
fn a_web_process_says_what_it_is_missing() {
    let (code, _, err) = common::run_server(&["--role", "web", "--worker-secret", SECRET, "--use-mocks", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("ROLE=web") && err.contains("postgres://"), "{err}");
    let (code, _, err) = common::run_server(&["--role", "worker", "--use-mocks", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("WORKER_SECRET"), "{err}");
    let (code, _, err) = common::run_server(&["--role", "web", "--worker-secret", "short", "--use-mocks", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("WORKER_SECRET") && err.contains("16"), "{err}");
    let (code, _, err) = common::run_server(&["--role", "banana"]);
    assert_ne!(code, 0);
    assert!(err.contains("banana") && err.contains("worker"), "{err}");
    let (code, _, err) = common::run_server(&["--chat-endpoints", "ftp://x/v1"]);
    assert_ne!(code, 0);
    assert!(err.contains("CHAT_ENDPOINTS") || err.contains("chat-endpoints"), "{err}");
}

#[tokio::test]
async fn workers_answer_web_processes_only_with_the_secret() {
    let database = common::postgres::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let worker = duet("worker", SECRET, dir.path(), &database, &[]).await;
    let call = json!({"id": "x", "request": {"conversation": null, "prompt": {"messages": [{"role": "user", "content": "hi"}]},
        "params": {"sampling": {}, "max_new_tokens": 8, "stop": [], "ignore_eos": false}}});
    let http = reqwest::Client::new();
    for secret in [None, Some("wrong-secret-of-some-length")] {
        let mut request = http.post(worker.url("/internal/generate")).body(call.to_string());
        if let Some(secret) = secret {
            request = request.header("x-duet-worker-secret", secret);
        }
        let res = request.send().await.unwrap();
        assert_eq!(res.status(), 401, "{secret:?}");
    }
    let res = http.post(worker.url("/internal/generate")).header("x-duet-worker-secret", SECRET).body(call.to_string());
    let body = res.send().await.unwrap().text().await.unwrap();
    let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events[0].get("started").is_some(), "{body}");
    assert!(events.last().unwrap().get("done").is_some(), "{body}");
    // Anyone may read its health, without folders or library paths.
    let health = worker.json("GET", "/health", None).await;
    assert!(health["models"].as_array().unwrap().iter().all(|m| m["path"].is_null()), "{health}");
    // Its other routes are not there: a worker serves no pages or API.
    let (status, _) = worker.request("GET", "/conversations", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_web_process_without_a_usable_worker_says_so_with_503() {
    let database = common::postgres::fresh_database().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let web = duet("web", SECRET, dirs[0].path(), &database, &[]).await;
    let health = until_chat(&web, "error").await;
    assert!(health["models"][0]["detail"].as_str().unwrap().contains("ROLE=worker"), "{health}");
    let res = web.send("POST", "/chat", Some(&json!({"user_id": "u", "message": "hello"}))).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("retry-after").is_some());

    // A worker with another secret is found, and skipped, saying why.
    let _worker = duet("worker", "another-secret-entirely", dirs[1].path(), &database, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = web.json("GET", "/health", None).await;
        let endpoints = health["endpoints"].as_array().unwrap().clone();
        if endpoints.iter().any(|e| e["detail"].as_str().is_some_and(|d| d.contains("WORKER_SECRET"))) {
            assert_eq!(health["models"][0]["state"], "error", "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker's refusal never showed: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = web.request("POST", "/chat", Some(&json!({"user_id": "u", "message": "hello"}))).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn the_stop_button_and_the_openai_api_work_through_workers() {
    let database = common::postgres::fresh_database().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let _worker = duet("worker", SECRET, dirs[0].path(), &database, &["--mock-token-ms", "40"]).await;
    let web = duet("web", SECRET, dirs[1].path(), &database, &[]).await;
    until_chat(&web, "ready").await;

    // A streamed reply whose client hangs up after its first answer piece stops on the worker:
    // what was written is stored, marked cancelled.
    let words = (0..80).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let mut stream =
        web.send("POST", "/chat", Some(&json!({"user_id": "u", "message": words, "stream": true}))).await.unwrap();
    let (conversation, _) = read_until(&mut stream, "event: answer").await;
    let started = Instant::now();
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let history = web.json("GET", &format!("/conversations/{conversation}"), None).await;
        let last = history["messages"].as_array().unwrap().last().cloned().unwrap();
        if last["role"] == "assistant" {
            break last;
        }
        assert!(Instant::now() < deadline, "no reply stored: {history}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply["finish_reason"], "cancelled", "{reply}");
    let full = format!("You said: {words}");
    assert!(reply["content"].as_str().unwrap().len() < full.len(), "cut short: {reply}");
    // 80 words at 40 ms would take 3.2 s more: it stopped well before.
    assert!(started.elapsed() < Duration::from_secs(3), "stopped after {:?}", started.elapsed());

    // The OpenAI-compatible API: plain and streamed, answered by the worker.
    let body = json!({"messages": [{"role": "user", "content": "ping pong"}], "max_tokens": 16});
    let plain = web.json("POST", "/v1/chat/completions", Some(body.clone())).await;
    assert_eq!(plain["choices"][0]["message"]["content"], "You said: ping pong", "{plain}");
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (status, bytes) = web.request("POST", "/v1/chat/completions", Some(&streamed)).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("ping") && text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn a_worker_lost_mid_reply_fails_that_turn_and_the_next_goes_to_the_other() {
    let database = common::postgres::fresh_database().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let slow = ["--mock-token-ms", "300"];
    let mut workers = [
        Some(duet("worker", SECRET, dirs[0].path(), &database, &slow).await),
        Some(duet("worker", SECRET, dirs[1].path(), &database, &slow).await),
    ];
    let web = duet("web", SECRET, dirs[2].path(), &database, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while web.json("GET", "/health", None).await["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "ok")
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "the workers were not found");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stream =
        web.send("POST", "/chat", Some(&json!({"user_id": "u", "message": "hi", "stream": true}))).await.unwrap();
    let (conversation, mut seen) = read_until(&mut stream, "event: reasoning").await;
    // The worker the conversation hashes to (every web process ranks alike): killed mid-reply.
    let db = sqlx::PgPool::connect(&database).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, url FROM processes WHERE role = 'worker'").fetch_all(&db).await.unwrap();
    let first = server::inference::remote::rendezvous::rank(&conversation, &rows, |(name, _)| name.as_str())[0].clone();
    let index = workers.iter().position(|w| w.as_ref().unwrap().url("") == first.1).expect("one of the workers");
    workers[index].take().unwrap().kill();
    while let Ok(Some(chunk)) = stream.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: error") && seen.contains(&first.1), "the error names the worker: {seen}");
    // The next turn of the same conversation: the other worker, from the stored history.
    let next = web
        .json("POST", "/chat", Some(json!({"user_id": "u", "message": "again", "conversation_id": conversation})))
        .await;
    let other = workers.iter().flatten().next().unwrap().url("");
    assert_eq!(next["provider"].as_str(), Some(other.as_str()), "{next}");
    assert_eq!(next["reply"], "You said: again");
}
