//! A cluster of real processes: HAProxy (deploy/haproxy.cfg) in front of two web processes
//! (ROLE=web, no models), two workers (ROLE=worker) with the fixture models on OpenVINO (or mock
//! engines), over one Postgres, one Redis and one S3-compatible store. A conversation stays on
//! the worker its id hashes to and reuses its KV cache there; a worker killed between turns
//! hands the conversation to the other (same greedy answer as a single process); a picture
//! submitted through one web process is followed through the other and drawn by a worker; a web
//! process killed mid-reply leaves the reply to be stored all the same; and a web process with
//! CHAT_ENDPOINTS / IMAGE_ENDPOINTS uses another Duet as its engines.

mod common;

use common::process::{free_port, server_command, ServerProcess};
use serde_json::{json, Value};
use std::{
    path::Path,
    time::{Duration, Instant},
};

const SECRET: &str = "cluster-test-shared-secret";

struct Cluster {
    front: Front,
    webs: Vec<ServerProcess>,
    workers: Vec<Option<ServerProcess>>,
    db: sqlx::PgPool,
    database: String,
    redis: common::redis::TempRedis,
    store: Vec<String>,
    _haproxy: common::haproxy::TempHaproxy,
    _dirs: Vec<tempfile::TempDir>,
}

/// HAProxy's address, spoken to like a server.
struct Front {
    port: u16,
    http: reqwest::Client,
}

impl Front {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let res = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

fn models(mock: bool) -> Vec<&'static str> {
    if mock {
        vec!["--use-mocks", "true", "--mock-token-ms", "40"]
    } else {
        vec!["--llm-model", common::LLM_FIXTURE, "--sd-model", common::SD_FIXTURE, "--llm-precision", "f32"]
    }
}

async fn duet(role: &str, data: &Path, shared: &[String], extra: &[&str]) -> ServerProcess {
    let port = free_port();
    let mut command = server_command(port);
    command
        .env("ROLE", role)
        .env("WORKER_SECRET", SECRET)
        .args(["--data-dir", data.to_str().unwrap()])
        .args(shared)
        .args(["--auth-required", "false", "--process-heartbeat-ms", "300"])
        .args(["--account-requests-per-minute", "0", "--user-requests-per-minute", "0"])
        .args(extra);
    ServerProcess::start(command, port).await
}

impl Cluster {
    async fn start(mock: bool) -> Cluster {
        let database = common::postgres::fresh_database().await;
        let redis = common::redis::TempRedis::start();
        let store = common::s3::fresh_store();
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let shared: Vec<String> =
            [vec!["--database-url".to_string(), database.clone(), "--redis-url".into(), redis.url()], store.clone()]
                .concat();
        let mut workers = Vec::new();
        for dir in &dirs[..2] {
            workers.push(Some(duet("worker", dir.path(), &shared, &models(mock)).await));
        }
        let mut webs = Vec::new();
        for dir in &dirs[2..] {
            webs.push(duet("web", dir.path(), &shared, &[]).await);
        }
        let haproxy = common::haproxy::TempHaproxy::start(webs[0].port, webs[1].port);
        let front = Front { port: haproxy.port, http: reqwest::Client::new() };
        let db = sqlx::PgPool::connect(&database).await.unwrap();
        let cluster = Cluster { front, webs, workers, db, database, redis, store, _haproxy: haproxy, _dirs: dirs };
        cluster.until_ready(120).await;
        cluster
    }

    /// Until both web processes see both workers ready.
    async fn until_ready(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        for web in &self.webs {
            loop {
                let health = web.json("GET", "/health", None).await;
                let up = health["endpoints"].as_array().unwrap().iter().filter(|e| e["state"] == "ok").count();
                // Each worker is listed for chat and for pictures.
                if health["status"] == "ok" && up == 4 {
                    break;
                }
                assert!(Instant::now() < deadline, "the workers did not become ready: {health}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    fn worker_urls(&self) -> Vec<Option<String>> {
        self.workers.iter().map(|w| w.as_ref().map(|w| format!("http://127.0.0.1:{}", w.port))).collect()
    }

    fn worker_at(&self, url: &str) -> usize {
        self.worker_urls().iter().position(|u| u.as_deref() == Some(url)).unwrap_or_else(|| panic!("{url} is a worker"))
    }
}

fn turn(message: &str, conversation: Option<&str>) -> Value {
    let mut body = json!({"user_id": "u", "message": message, "temperature": 0, "max_tokens": 24});
    if let Some(id) = conversation {
        body["conversation_id"] = json!(id);
    }
    body
}

#[tokio::test]
async fn a_conversation_keeps_its_worker_and_cache_survives_losing_it_and_pictures_cross_web_processes() {
    let mut c = Cluster::start(false).await;

    // Five turns through HAProxy: one worker answers them all, reusing its KV cache.
    let mut conversation: Option<String> = None;
    let mut providers = Vec::new();
    let mut previous_prompt = 0u64;
    for i in 0..5 {
        let answer =
            c.front.json("POST", "/chat", Some(turn(&format!("Tell me fact {i}."), conversation.as_deref()))).await;
        conversation = Some(answer["conversation_id"].as_str().unwrap().to_string());
        providers.push(answer["provider"].as_str().unwrap().to_string());
        let (prompt, cached) =
            (answer["usage"]["prompt_tokens"].as_u64().unwrap(), answer["usage"]["cached_tokens"].as_u64().unwrap());
        if i > 0 {
            // Only the new tokens are prefilled: the last turn's prompt is found in the cache.
            assert!(
                cached >= previous_prompt.saturating_sub(4),
                "turn {i}: {cached} cached of {prompt}, the last prompt was {previous_prompt}"
            );
            assert!(
                prompt - cached < prompt - previous_prompt + 8,
                "turn {i}: {} prefilled, {} new",
                prompt - cached,
                prompt - previous_prompt
            );
        } else {
            assert_eq!(cached, 0);
        }
        previous_prompt = prompt;
    }
    let conversation = conversation.unwrap();
    assert!(providers.iter().all(|p| *p == providers[0]), "one worker answered every turn: {providers:?}");
    let holder = c.worker_at(&providers[0]);
    let other = 1 - holder;
    let kept = |health: &Value| health["models"][0]["engine"]["kept_conversations"].as_u64().unwrap_or(0);
    let holder_health = c.workers[holder].as_ref().unwrap().json("GET", "/health", None).await;
    let other_health = c.workers[other].as_ref().unwrap().json("GET", "/health", None).await;
    assert_eq!((kept(&holder_health), kept(&other_health)), (1, 0), "the cache lives on the conversation's worker");

    // Its worker is killed between turns: the other answers, from the stored history.
    c.workers[holder].take().unwrap().kill();
    let sixth = c.front.json("POST", "/chat", Some(turn("And one more?", Some(&conversation)))).await;
    assert_eq!(sixth["provider"].as_str(), c.worker_urls()[other].as_deref(), "{sixth}");
    assert_eq!(sixth["usage"]["cached_tokens"], 0, "a cold prefill on the other worker");
    let history = c.front.json("GET", &format!("/conversations/{conversation}"), None).await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 12, "six turns, each with its reply: {history}");
    assert!(messages.iter().all(|m| m["finish_reason"] != "interrupted"));

    // The same sixth turn on one process of its own (ROLE=all, the same database and models)
    // gives the same greedy answer.
    let single_dir = tempfile::tempdir().unwrap();
    let shared = [vec!["--database-url".to_string(), c.database.clone()], c.store.clone()].concat();
    let port = free_port();
    let mut command = server_command(port);
    command
        .args(["--data-dir", single_dir.path().to_str().unwrap()])
        .args(&shared)
        .args(["--auth-required", "false", "--account-requests-per-minute", "0", "--user-requests-per-minute", "0"])
        .args(models(false));
    let single = ServerProcess::start(command, port).await;
    single.until_models_ready(120).await;
    let user_turn = messages[10]["id"].as_str().unwrap();
    let mut again = turn("And one more?", Some(&conversation));
    again["replace_from"] = json!(user_turn);
    let alone = single.json("POST", "/chat", Some(again)).await;
    assert_eq!(alone["provider"], "local");
    assert_eq!((&alone["reply"], &alone["reasoning"]), (&sixth["reply"], &sixth["reasoning"]), "{alone}\n{sixth}");
    assert_eq!(alone["usage"]["completion_tokens"], sixth["usage"]["completion_tokens"]);
    single.kill();

    // A picture submitted through web A is followed and fetched through web B, drawn by the
    // worker left.
    let recipe =
        json!({"prompt": "a lighthouse at dusk", "width": 256, "height": 256, "num_inference_steps": 3, "seed": 5});
    let job = c.webs[0].json("POST", "/image", Some(recipe)).await;
    let id = job["job_id"].as_str().unwrap();
    let done = c.webs[1].until_job(id, 120, |j| j["status"] == "done" || j["status"] == "failed").await;
    assert_eq!(done["status"], "done", "{done}");
    let (worker,): (String,) =
        sqlx::query_as("SELECT worker FROM image_jobs WHERE id = $1").bind(id).fetch_one(&c.db).await.unwrap();
    let left = c.workers[other].as_ref().unwrap();
    assert_eq!(
        worker.split(':').nth(1),
        Some(left.child.id().to_string().as_str()),
        "drawn by the worker left: {worker}"
    );
    let (status, png) = c.webs[1].request("GET", &format!("/images/{id}.png"), None).await;
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG"), "a PNG through web B");
}

/// Read a chat stream until its first answer piece: the reply's ids.
async fn until_answer_starts(response: &mut reqwest::Response) -> (String, String, String) {
    let (mut conversation, mut message, mut seen) = (String::new(), String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        for line in seen.lines().filter_map(|l| l.strip_prefix("data:")) {
            let Ok(event) = serde_json::from_str::<Value>(line.trim()) else { continue };
            if let (Some(c), Some(m)) = (event["conversation_id"].as_str(), event["message_id"].as_str()) {
                (conversation, message) = (c.to_string(), m.to_string());
            }
        }
        if !message.is_empty() && seen.contains("event: answer") {
            return (conversation, message, seen);
        }
    }
    panic!("no answer began: {seen}");
}

#[tokio::test]
async fn a_web_process_killed_mid_reply_leaves_the_reply_stored_for_the_retry() {
    let mut c = Cluster::start(true).await;
    // A reply that asks for a picture ("draw"): its picture is queued when the reply is stored.
    let words = format!("draw {}", (0..60).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" "));
    let body = json!({"user_id": "u", "message": words, "stream": true});
    let mut stream = c
        .front
        .http
        .post(c.front.url("/chat"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let (conversation, message, _) = until_answer_starts(&mut stream).await;
    // Which web process writes it: its reply in flight names it.
    let (process,): (String,) = sqlx::query_as("SELECT process FROM replies_in_flight WHERE message_id = $1")
        .bind(&message)
        .fetch_one(&c.db)
        .await
        .unwrap();
    let pid = process.split(':').nth(1).unwrap().to_string();
    let writer = c.webs.iter().position(|w| w.child.id().to_string() == pid).expect("a web process writes it");
    c.webs.remove(writer).kill();
    // The client's stream breaks; its retry through HAProxy finds the whole reply stored.
    while let Ok(Some(_)) = stream.chunk().await {}
    let deadline = Instant::now() + Duration::from_secs(60);
    let reply = loop {
        let history = c.front.json("GET", &format!("/conversations/{conversation}"), None).await;
        let last = history["messages"].as_array().unwrap().last().cloned().unwrap();
        if last["role"] == "assistant" {
            break last;
        }
        assert!(Instant::now() < deadline, "no reply stored: {history}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply["id"].as_str(), Some(message.as_str()), "stored under the id its stream announced");
    assert_eq!(reply["content"].as_str(), Some(format!("You said: {words}").as_str()), "{reply}");
    assert_eq!(reply["finish_reason"], "eos", "{reply}");
    assert_eq!(reply["image_prompt"].as_str(), Some(words.as_str()), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Option<(String,)> = sqlx::query_as("SELECT status FROM image_jobs WHERE message_id = $1")
            .bind(&message)
            .fetch_optional(&c.db)
            .await
            .unwrap();
        if status.as_ref().is_some_and(|(s,)| s == "done") {
            break;
        }
        assert!(Instant::now() < deadline, "the reply's picture was not drawn: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its tokens count against the day's quota.
    let (tokens,): (i64,) =
        sqlx::query_as("SELECT COALESCE(SUM(tokens), 0)::BIGINT FROM usage_daily").fetch_one(&c.db).await.unwrap();
    assert!(tokens > 60, "{tokens} tokens counted");
    drop(c.redis);
}

async fn post_with_key(server: &ServerProcess, key: &str, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(server.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// Register on `server` and make an API key.
async fn api_key(server: &ServerProcess) -> String {
    let http = reqwest::Client::new();
    let res = http
        .post(server.url("/auth/register"))
        .header("content-type", "application/json")
        .body(json!({"username": "owner", "password": "endpoint-owner-pw"}).to_string())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let res = http
        .post(server.url("/account/keys"))
        .header("content-type", "application/json")
        .header("cookie", cookie)
        .header("origin", server.url(""))
        .body(json!({"name": "web"}).to_string())
        .send()
        .await
        .unwrap();
    let key: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    key["key"].as_str().unwrap_or_else(|| panic!("a key: {key}")).to_string()
}

#[tokio::test]
async fn a_web_process_uses_another_duet_as_its_openai_compatible_engines() {
    // The endpoint: a Duet of its own (ROLE=all, accounts on) on the fixture models.
    let target_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = server_command(port);
    command.args(["--data-dir", target_dir.path().to_str().unwrap()]).args(models(false));
    let target = ServerProcess::start(command, port).await;
    target.until_models_ready(120).await;
    let key = api_key(&target).await;

    let database = common::postgres::fresh_database().await;
    let web_dir = tempfile::tempdir().unwrap();
    let base = target.url("/v1");
    let shared = vec!["--database-url".to_string(), database];
    // The names the endpoint serves its models by (its GET /v1/models).
    let names = ["--chat-endpoint-model", common::LLM_FIXTURE, "--image-endpoint-model", common::SD_FIXTURE];
    let extra =
        [&["--chat-endpoints", &base, "--image-endpoints", &base, "--endpoint-api-key", &key][..], &names].concat();
    let web = duet("web", web_dir.path(), &shared, &extra).await;
    web.until_models_ready(30).await;
    let health = web.json("GET", "/health", None).await;
    let endpoints = health["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2, "{health}");
    assert!(
        endpoints.iter().all(|e| e["kind"] == "openai" && e["state"] == "ok" && e["url"] == base.as_str()),
        "{health}"
    );

    let answer = web.json("POST", "/chat", Some(turn("Hello there", None))).await;
    assert_eq!(answer["provider"].as_str(), Some(base.as_str()), "{answer}");
    assert!(answer["usage"]["completion_tokens"].as_u64() > Some(0), "{answer}");
    let messages = json!([{"role": "system", "content": server::service::chat::SYSTEM_PROMPT},
                          {"role": "user", "content": "Hello there"}]);
    let direct = post_with_key(
        &target,
        &key,
        "/v1/chat/completions",
        json!({"messages": messages, "temperature": 0, "max_tokens": 24, "user": "cold"}),
    )
    .await;
    // The same words from a cold prefill of its own (another end user: another KV cache), the
    // image block taken out as the chat service does it.
    let content = direct["choices"][0]["message"]["content"].as_str().unwrap();
    let expected = server::service::image_prompt::extract(content);
    assert_eq!(answer["reply"].as_str(), Some(expected.reply.as_str()), "the endpoint's own answer: {direct}");
    assert_eq!(answer["reasoning"], direct["choices"][0]["message"]["reasoning_content"], "{direct}");

    let job = web
        .json(
            "POST",
            "/image",
            Some(json!({"prompt": "a red fox", "width": 256, "height": 256, "num_inference_steps": 2, "seed": 3})),
        )
        .await;
    let id = job["job_id"].as_str().unwrap();
    let done = web.until_job(id, 120, |j| j["status"] == "done" || j["status"] == "failed").await;
    assert_eq!(done["status"], "done", "{done}");
    let (status, png) = web.request("GET", &format!("/images/{id}.png"), None).await;
    assert_eq!(status, 200);
    let decoded = server::inference::diffusion::image_file::read_request(&png).unwrap();
    assert_eq!((decoded.seed, decoded.steps, decoded.prompt.as_str()), (3, 2, "a red fox"), "the recipe is kept");

    // The endpoint gone: /health says so, and a turn is refused with 503, not a 500.
    target.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = web.json("GET", "/health", None).await;
        if health["endpoints"].as_array().unwrap().iter().all(|e| e["state"] == "error") {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint never showed as down: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = web.request("POST", "/chat", Some(&turn("Anyone?", None))).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
}
