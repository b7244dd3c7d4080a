//! A real Prometheus scrapes the real server binary running the fixture models (and the tiny NSFW
//! checker): after chat turns (one hung up mid-reply), a picture and a wrong password, the values
//! Prometheus holds match what happened, as the server itself stored it. The admin's API key
//! scrapes the main port too; `promtool check metrics` finds nothing to say about the output.

mod common;

use common::{
    process::{free_port, server_command, ServerProcess},
    prometheus::{promtool_check, Job, TempPrometheus},
};
use serde_json::{json, Value};
use std::{collections::HashMap, time::Duration};

/// Requests as one caller: a bearer key, or the session cookie the server last set, or nobody.
struct Client {
    http: reqwest::Client,
    base: String,
    bearer: Option<String>,
    cookie: std::sync::Mutex<Option<String>>,
}

impl Client {
    fn new(port: u16, bearer: Option<&str>) -> Client {
        let base = format!("http://127.0.0.1:{port}");
        Client { http: reqwest::Client::new(), base, bearer: bearer.map(String::from), cookie: Default::default() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.bearer {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(cookie) = self.cookie.lock().unwrap().clone() {
            request = request.header("cookie", cookie);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let res = request.send().await.unwrap();
        if let Some(set) = res.headers().get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
            *self.cookie.lock().unwrap() = Some(pair);
        }
        res
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let res = self.send(method.clone(), path, body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// Wait until both models are ready (the fixture models compile in a few seconds).
async fn wait_until_ready(client: &Client) {
    for _ in 0..600 {
        let health = client.json(reqwest::Method::GET, "/health", None).await;
        if health["models"].as_array().unwrap().iter().all(|m| m["state"] == "ready") {
            return;
        }
        assert!(!health["models"].as_array().unwrap().iter().any(|m| m["state"] == "error"), "{health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the fixture models did not load within 60 s");
}

/// A streamed turn, hung up after its first generated piece, like a browser's Stop. Returns
/// the conversation it was in.
async fn hung_up_turn(client: &Client) -> String {
    let ask = json!({"user_id": "u", "message": "Tell me a very long story.", "max_tokens": 400, "stream": true});
    let mut res = client.send(reqwest::Method::POST, "/chat", Some(ask)).await;
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("event: reasoning") || text.contains("event: answer") {
            break;
        }
    }
    let start = text.split("\"conversation_id\":\"").nth(1).expect("the stream names its conversation");
    let conversation = start[..start.find('"').unwrap()].to_string();
    drop(res);
    conversation
}

/// The stored replies of a conversation, once its last one is stored.
async fn stored_replies(client: &Client, conversation: &str) -> Vec<Value> {
    for _ in 0..300 {
        let detail = client.json(reqwest::Method::GET, &format!("/conversations/{conversation}"), None).await;
        let messages = detail["messages"].as_array().unwrap();
        if messages.last().is_some_and(|m| m["role"] == "assistant") {
            return messages.iter().filter(|m| m["role"] == "assistant").cloned().collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("conversation {conversation}: no reply stored within 30 s");
}

/// The metrics' word for a stored finish reason.
fn label(finish_reason: &str) -> &'static str {
    match finish_reason {
        "eos" | "stop" => "stop",
        "length" | "context_limit" => "length",
        "cancelled" => "cancelled",
        other => panic!("unexpected finish reason {other}"),
    }
}

#[tokio::test]
async fn prometheus_scrapes_what_happened() {
    common::load_runtime();
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd");
    common::copy_tree(&common::fixture(common::SD_FIXTURE), &sd);
    common::copy_tree(&common::fixture(common::SD_SAFETY_FIXTURE), &sd);
    let (port, metrics_port) = (free_port(), free_port());
    let mut command = server_command(port);
    command
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--llm-model", common::fixture(common::LLM_FIXTURE).to_str().unwrap()])
        .args(["--sd-model", sd.to_str().unwrap(), "--sd-safety-checker", "true"])
        .args(["--auth-required", "true", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    let _server = ServerProcess::start(command, port).await;
    let anyone = Client::new(port, None);
    wait_until_ready(&anyone).await;

    // The first account is the admin; its key scrapes the main port, a user's session cannot.
    let credentials = json!({"username": "admin", "password": "correct horse battery"});
    anyone.json(reqwest::Method::POST, "/auth/register", Some(credentials)).await;
    let created = anyone.json(reqwest::Method::POST, "/account/keys", Some(json!({"name": "prometheus"}))).await;
    let key = created["key"].as_str().unwrap().to_string();
    let admin = Client::new(port, Some(&key));
    let user = json!({"username": "carol", "password": "another long password"});
    admin.json(reqwest::Method::POST, "/admin/accounts", Some(user)).await;
    let carol = Client::new(port, None);
    let wrong = json!({"username": "carol", "password": "not her password"});
    assert_eq!(carol.send(reqwest::Method::POST, "/auth/login", Some(wrong)).await.status(), 401);
    let right = json!({"username": "carol", "password": "another long password"});
    carol.json(reqwest::Method::POST, "/auth/login", Some(right)).await;
    let refused = carol.send(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(refused.status(), 403, "a user who is not an admin reads no metrics");
    let nobody = Client::new(port, None).send(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(nobody.status(), 401, "the main port's metrics need credentials");

    let prometheus = TempPrometheus::start(&[
        Job { name: "duet", target: format!("127.0.0.1:{metrics_port}"), bearer: None },
        Job { name: "duet-main", target: format!("127.0.0.1:{port}"), bearer: Some(&key) },
    ])
    .await;

    // Two turns of one conversation (the second reuses the first's KV cache), then one hung up.
    let first = json!({"user_id": "u", "message": "Hello there", "max_tokens": 24});
    let reply = admin.json(reqwest::Method::POST, "/chat", Some(first)).await;
    let conversation = reply["conversation_id"].as_str().unwrap().to_string();
    let second = json!({"user_id": "u", "message": "And then?", "max_tokens": 24, "conversation_id": conversation});
    let reply = admin.json(reqwest::Method::POST, "/chat", Some(second)).await;
    let cached = reply["usage"]["cached_tokens"].as_u64().unwrap();
    assert!(cached > 0, "the second turn reused the first's cache: {reply}");
    let mut conversations = vec![conversation];
    let mut cancelled = 0;
    // The tiny model is fast: a reply may end before the hang-up is noticed; try again then.
    for attempt in 1..=5 {
        let hung = hung_up_turn(&admin).await;
        let replies = stored_replies(&admin, &hung).await;
        conversations.push(hung);
        if replies.last().unwrap()["finish_reason"] == "cancelled" {
            println!("the hang-up cancelled the reply at attempt {attempt}");
            cancelled += 1;
            break;
        }
    }
    assert_eq!(cancelled, 1, "a hung-up reply was stored as cancelled");

    // What the server stored, by finish reason, and its tokens.
    let (mut by_reason, mut replies, mut prompt, mut generated) = (HashMap::new(), 0.0, 0.0, 0.0);
    for conversation in &conversations {
        for reply in stored_replies(&admin, conversation).await {
            *by_reason.entry(label(reply["finish_reason"].as_str().unwrap())).or_insert(0.0) += 1.0;
            replies += 1.0;
            prompt += reply["prompt_tokens"].as_f64().unwrap();
            generated += reply["completion_tokens"].as_f64().unwrap();
        }
    }

    // A picture: steps counted one by one, its end, and the checker's verdict.
    // DDIM runs the UNet once per step (PNDM once more, as diffusers does).
    let picture = json!({"prompt": "a red fox in the snow", "width": 256, "height": 256, "num_inference_steps": 5,
                         "seed": 7, "scheduler": "ddim"});
    let job = admin.json(reqwest::Method::POST, "/image?wait=true", Some(picture)).await;
    assert_eq!(job["status"], "done", "{job}");
    let info = admin.json(reqwest::Method::GET, job["status_url"].as_str().unwrap(), None).await;
    assert!(info["nsfw"].is_boolean(), "the checker ran: {info}");
    let flagged = if info["nsfw"] == true { 1.0 } else { 0.0 };

    let p = &prometheus;
    for reason in ["stop", "length", "cancelled", "error"] {
        let expected = by_reason.get(reason).copied().unwrap_or(0.0);
        let query = format!("duet_chat_replies_total{{job=\"duet\",finish_reason=\"{reason}\"}}");
        assert_eq!(p.wait_for(&query, expected).await, Some(expected), "{query}: stored {by_reason:?}");
    }
    let cancelled_query = "duet_chat_replies_total{job=\"duet\",finish_reason=\"cancelled\"}";
    assert_eq!(p.query(cancelled_query).await, Some(1.0));
    let histograms = [
        ("duet_chat_time_to_first_token_seconds_count", replies),
        ("duet_chat_reply_duration_seconds_count", replies),
        ("duet_chat_queue_wait_seconds_count", replies),
        ("duet_chat_inter_token_latency_seconds_count", generated - replies),
        ("duet_chat_generated_tokens_total", generated),
        ("duet_image_step_duration_seconds_count", 5.0),
        ("duet_image_generation_duration_seconds_count", 1.0),
        ("duet_image_queue_wait_seconds_count", 1.0),
        ("duet_image_nsfw_flagged_total", flagged),
    ];
    for (name, expected) in histograms {
        let query = format!("{name}{{job=\"duet\"}}");
        assert_eq!(p.wait_for(&query, expected).await, Some(expected), "{query}");
    }
    let all_prompt = "sum(duet_chat_prompt_tokens_total{job=\"duet\"})";
    assert_eq!(p.wait_for(all_prompt, prompt).await, Some(prompt), "{all_prompt}");
    // From the cache: the second turn's own, and what the later conversations (same system
    // prompt) took from blocks the first one published.
    let shared = p.query("duet_chat_shared_prefix_tokens_total{job=\"duet\"}").await.expect("shared prefix counter");
    assert!(shared > 0.0, "new conversations with the same system prompt shared its blocks");
    let cache = "duet_chat_prompt_tokens_total{job=\"duet\",source=\"cache\"}";
    let from_cache = cached as f64 + shared;
    assert_eq!(p.wait_for(cache, from_cache).await, Some(from_cache), "{cache}");
    let checks = [
        ("duet_image_jobs_total{job=\"duet\",state=\"done\"}", 1.0),
        ("duet_image_jobs_total{job=\"duet\",state=\"failed\"}", 0.0),
        ("duet_login_failures_total{job=\"duet\",reason=\"credentials\"}", 1.0),
        ("duet_http_requests_total{job=\"duet\",route=\"/image\",method=\"POST\",status=\"200\"}", 1.0),
        ("duet_http_requests_total{job=\"duet\",route=\"/metrics\",method=\"GET\",status=\"403\"}", 1.0),
        (
            "sum(duet_http_requests_total{job=\"duet\",route=\"/chat\",method=\"POST\"})",
            2.0 + conversations.len() as f64 - 1.0,
        ),
        ("duet_model_state{job=\"duet\",role=\"llm\",state=\"ready\"}", 1.0),
        ("duet_model_state{job=\"duet\",role=\"sd\",state=\"ready\"}", 1.0),
        ("duet_model_state{job=\"duet\",role=\"sd\",state=\"loading\"}", 0.0),
        ("duet_chat_replies_running{job=\"duet\"}", 0.0),
        ("duet_chat_replies_waiting{job=\"duet\"}", 0.0),
        ("duet_image_queue_depth{job=\"duet\"}", 0.0),
        // Registered, logged in as the admin by session, then carol's session.
        ("duet_sessions_active{job=\"duet\"}", 2.0),
        ("up{job=\"duet-main\"}", 1.0),
    ];
    for (query, expected) in checks {
        assert_eq!(p.wait_for(query, expected).await, Some(expected), "{query}");
    }
    // Kept caches and load times are there; their values depend on the machine.
    let kept = p.query("duet_chat_conversations_kept{job=\"duet\"}").await.unwrap();
    assert!(kept >= 1.0, "the conversations' caches are kept: {kept}");
    for role in ["llm", "sd"] {
        let load = p.query(&format!("duet_model_load_duration_seconds{{job=\"duet\",role=\"{role}\"}}")).await;
        assert!(load.is_some_and(|s| s > 0.0 && s < 120.0), "{role} load time {load:?}");
    }
    let targets = p.targets().await;
    for target in targets["data"]["activeTargets"].as_array().unwrap() {
        assert_eq!(target["health"], "up", "{target}");
    }

    // The output is valid for Prometheus' own linter, on both ports.
    let scraped = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.unwrap();
    assert_eq!(scraped.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = scraped.text().await.unwrap();
    assert_eq!(promtool_check(&text), "", "promtool check metrics");
    let main = admin.send(reqwest::Method::GET, "/metrics", None).await.text().await.unwrap();
    assert_eq!(promtool_check(&main), "", "promtool check metrics (main port)");
    assert!(main.contains("duet_chat_replies_total{finish_reason=\"cancelled\"} 1"), "{main}");
}

/// Without METRICS_ADDR nothing is kept, and the main port says how to turn metrics on.
#[tokio::test]
async fn metrics_are_off_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let state = common::api::mock_state(dir.path(), &[]).await;
    assert!(state.metrics.is_none());
    let res = common::api::get(&state, "/metrics").await;
    assert_eq!(res.status, 404);
    assert!(res.json()["error"]["message"].as_str().unwrap().contains("METRICS_ADDR"), "{}", res.json());
}
