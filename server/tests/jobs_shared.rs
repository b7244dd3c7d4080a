//! Two server processes over one Postgres database, one Redis and one S3-compatible store (each
//! with a data folder of its own) share one image queue: jobs are rows claimed with leases, so
//! each runs exactly once whichever process took it in; a job drawn by one process is followed,
//! fetched and cancelled through the other; a process killed (SIGKILL) mid-job leaves it to the
//! other once its lease runs out; and an account's limit on generations at once holds across
//! both. Mock engines; and one job each on the fixture models through OpenVINO.

mod common;

use common::process::{free_port, server_command, ServerProcess};
use serde_json::{json, Value};
use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

struct Pair {
    a: ServerProcess,
    b: ServerProcess,
    db: sqlx::PgPool,
    _redis: common::redis::TempRedis,
    _dirs: [tempfile::TempDir; 2],
}

async fn start(data: &Path, database: &str, redis: &str, store: &[String], extra: &[&str]) -> ServerProcess {
    let port = free_port();
    let mut command = server_command(port);
    command
        .args(["--data-dir", data.to_str().unwrap(), "--database-url", database, "--redis-url", redis])
        .args(store)
        .args(["--auth-required", "false"])
        .args(["--account-requests-per-minute", "0", "--user-requests-per-minute", "0"])
        .args(extra);
    ServerProcess::start(command, port).await
}

/// Two processes on mock engines over fresh stores, with `extra` settings.
async fn pair(extra: &[&str]) -> Pair {
    pair_on(&[&["--use-mocks", "true"], extra].concat()).await
}

/// Two processes over a fresh database, Redis and bucket, with `extra` settings.
async fn pair_on(extra: &[&str]) -> Pair {
    let database = common::postgres::fresh_database().await;
    let redis = common::redis::TempRedis::start();
    let store = common::s3::fresh_store();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = start(dirs[0].path(), &database, &redis.url(), &store, extra).await;
    let b = start(dirs[1].path(), &database, &redis.url(), &store, extra).await;
    let db = sqlx::PgPool::connect(&database).await.unwrap();
    Pair { a, b, db, _redis: redis, _dirs: dirs }
}

fn recipe(seed: u32, steps: u32) -> Value {
    json!({"prompt": format!("a harbour at dawn, picture {seed}"), "width": 256, "height": 256,
           "num_inference_steps": steps, "seed": seed, "scheduler": "ddim"})
}

async fn submit(server: &ServerProcess, seed: u32, steps: u32) -> String {
    let job = server.json("POST", "/image", Some(recipe(seed, steps))).await;
    job["job_id"].as_str().unwrap_or_else(|| panic!("a job: {job}")).to_string()
}

/// The process drawing (or that drew) a job, and how many times one started it.
async fn drawn_by(db: &sqlx::PgPool, id: &str) -> (Option<String>, i32) {
    sqlx::query_as("SELECT worker, attempts FROM image_jobs WHERE id = $1").bind(id).fetch_one(db).await.unwrap()
}

/// Which of the pair a worker name belongs to (names carry the process id).
fn is_process(worker: &str, server: &ServerProcess) -> bool {
    worker.split(':').nth(1) == Some(server.child.id().to_string().as_str())
}

#[tokio::test]
async fn fifty_jobs_submitted_to_both_processes_each_run_exactly_once() {
    let p =
        pair(&["--image-queue-size", "64", "--account-concurrent-generations", "0", "--mock-image-step-ms", "5"]).await;
    let started = Instant::now();
    let submissions = (0..50u32).map(|i| {
        let server = if i % 2 == 0 { &p.a } else { &p.b };
        submit(server, i, 4)
    });
    let ids: Vec<String> = futures::future::join_all(submissions).await;
    let submitted = started.elapsed();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 50);
    for (i, id) in ids.iter().enumerate() {
        let other = if i % 2 == 0 { &p.b } else { &p.a };
        let job = other.until_job(id, 60, |j| j["status"] != "queued" && j["status"] != "running").await;
        assert_eq!(job["status"], "done", "{job}");
    }
    let all_done = started.elapsed();
    let attempts: Vec<(String, i32)> =
        sqlx::query_as("SELECT worker, attempts FROM image_jobs").fetch_all(&p.db).await.unwrap();
    assert_eq!(attempts.len(), 50);
    assert!(attempts.iter().all(|(_, n)| *n == 1), "each claimed once: {attempts:?}");
    let on_a = attempts.iter().filter(|(w, _)| is_process(w, &p.a)).count();
    let on_b = attempts.iter().filter(|(w, _)| is_process(w, &p.b)).count();
    assert_eq!(on_a + on_b, 50);
    assert!(on_a > 0 && on_b > 0, "both processes drew: {on_a} and {on_b}");
    let images: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images").fetch_one(&p.db).await.unwrap();
    assert_eq!(images, 50);
    eprintln!(
        "50 jobs: submitted in {:.2} s ({:.0} jobs/s), all drawn in {:.2} s; A drew {on_a}, B {on_b}",
        submitted.as_secs_f64(),
        50.0 / submitted.as_secs_f64(),
        all_done.as_secs_f64()
    );
}

/// Submit through `a` until one of the pair draws it: the job, and whether `a` draws it.
async fn running_job(p: &Pair, steps: u32) -> (String, bool) {
    let id = submit(&p.a, 7, steps).await;
    p.a.until_job(&id, 30, |j| j["status"] == "running" && j["step"].as_u64() >= Some(2)).await;
    let (worker, _) = drawn_by(&p.db, &id).await;
    let worker = worker.expect("a running job names its process");
    let on_a = is_process(&worker, &p.a);
    assert!(on_a || is_process(&worker, &p.b), "{worker} is one of the pair");
    (id, on_a)
}

impl Pair {
    /// (drawing, other) for a job `a` draws or not.
    fn split(&self, on_a: bool) -> (&ServerProcess, &ServerProcess) {
        if on_a {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        }
    }
}

#[tokio::test]
async fn a_job_drawn_by_one_process_is_followed_fetched_and_cancelled_through_the_other() {
    let p = pair(&["--mock-image-step-ms", "120"]).await;
    let steps = 20;
    let (id, on_a) = running_job(&p, steps).await;
    let (drawing, other) = p.split(on_a);

    // Followed step by step through the process that is not drawing it.
    let events = other.send("GET", &format!("/jobs/{id}/events"), None).await.unwrap();
    assert_eq!(events.status(), 200);
    let text = events.text().await.unwrap();
    let infos: Vec<Value> = common::api::parse_sse(&text).into_iter().map(|(_, v)| v).collect();
    let last = infos.last().unwrap();
    assert_eq!(last["status"], "done", "{text}");
    let running: Vec<u64> =
        infos.iter().filter(|i| i["status"] == "running").map(|i| i["step"].as_u64().unwrap()).collect();
    assert!(running.windows(2).all(|w| w[0] <= w[1]), "steps in order: {running:?}");
    let distinct: HashSet<u64> = running.iter().copied().collect();
    assert!(distinct.len() as u32 >= steps - 5, "followed step by step from the other process: {running:?}");

    // Fetched through either.
    let (status, png) = other.request("GET", &format!("/images/{id}.png"), None).await;
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG"));
    assert_eq!(drawing.request("GET", &format!("/images/{id}.png"), None).await.1, png);

    // A cancel sent to the other process stops the drawing one before its next step.
    let (id, on_a) = running_job(&p, 100).await;
    let (drawing, other) = p.split(on_a);
    let asked = other.json("DELETE", &format!("/jobs/{id}"), None).await;
    assert_eq!(asked["status"], "running", "it stops between steps: {asked}");
    let asked_at = asked["step"].as_u64().unwrap();
    let ended = drawing.until_job(&id, 10, |j| j["status"] != "running").await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    assert!(ended["step"].as_u64().unwrap() <= asked_at + 2, "stopped at once: asked at {asked_at}, {ended}");
    assert_eq!(other.request("GET", &format!("/images/{id}.png"), None).await.0, 404);
}

#[tokio::test]
async fn a_job_of_a_killed_process_is_drawn_by_the_other_once_its_lease_runs_out() {
    let p = pair(&["--mock-image-step-ms", "100", "--image-job-lease-ms", "2000"]).await;
    let (id, on_a) = running_job(&p, 30).await;
    let Pair { a, b, db, _redis, _dirs } = p;
    let killed_at = Instant::now();
    let survivor = if on_a {
        a.kill();
        b
    } else {
        b.kill();
        a
    };
    let job = survivor.until_job(&id, 30, |j| j["status"] == "done").await;
    let (worker, attempts) = drawn_by(&db, &id).await;
    assert_eq!(attempts, 2, "drawn again from the start: {job}");
    assert!(is_process(&worker.unwrap(), &survivor), "by the survivor");
    assert!(killed_at.elapsed() >= Duration::from_secs(2), "not before the lease ran out");
    assert_eq!(survivor.request("GET", &format!("/images/{id}.png"), None).await.0, 200);
}

#[tokio::test]
async fn an_accounts_limit_on_generations_at_once_holds_across_both_processes() {
    let p = pair(&["--mock-image-step-ms", "200", "--account-concurrent-generations", "3"]).await;
    // Six at once, three to each: exactly three get in.
    let posts = (0..6u32).map(|i| {
        let server = if i % 2 == 0 { &p.a } else { &p.b };
        async move { server.request("POST", "/image", Some(&recipe(i, 50))).await }
    });
    let answers = futures::future::join_all(posts).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");
    let refused = answers.iter().find(|(s, _)| *s == 429).unwrap();
    let body: Value = serde_json::from_slice(&refused.1).unwrap();
    assert_eq!(body["error"]["param"], "account.concurrent_generations", "{body}");
    let unfinished: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM image_jobs WHERE status IN ('queued', 'running')")
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(unfinished, 3);
}

#[tokio::test]
async fn on_the_fixture_models_one_job_each_is_drawn_once_followed_and_fetched_through_the_other() {
    let models = ["--llm-model", common::LLM_FIXTURE, "--sd-model", common::SD_FIXTURE];
    let p = pair_on(&models).await;
    p.a.until_models_ready(120).await;
    p.b.until_models_ready(120).await;
    // The same recipe through each process: whichever draws it, the same picture.
    let ids = [submit(&p.a, 5, 8).await, submit(&p.b, 5, 8).await];
    let mut pictures = Vec::new();
    for (id, other) in ids.iter().zip([&p.b, &p.a]) {
        let events = other.send("GET", &format!("/jobs/{id}/events"), None).await.unwrap().text().await.unwrap();
        let infos: Vec<Value> = common::api::parse_sse(&events).into_iter().map(|(_, v)| v).collect();
        assert_eq!(infos.last().unwrap()["status"], "done", "{events}");
        let (worker, attempts) = drawn_by(&p.db, id).await;
        assert_eq!(attempts, 1);
        assert!(worker.is_some_and(|w| is_process(&w, &p.a) || is_process(&w, &p.b)));
        let (status, png) = other.request("GET", &format!("/images/{id}.png"), None).await;
        assert_eq!(status, 200);
        assert!(png.starts_with(b"\x89PNG"));
        pictures.push(png);
    }
    assert_eq!(pictures[0], pictures[1], "one recipe, one picture, whichever process drew it");
}

#[tokio::test]
async fn a_reply_cut_off_by_a_killed_process_is_marked_interrupted_by_the_other() {
    let p = pair(&["--mock-token-ms", "50", "--process-heartbeat-ms", "200"]).await;
    let ask = json!({"user_id": "u1", "message": "tell me a long story, slowly", "stream": true});
    let mut stream = p.a.send("POST", "/chat", Some(&ask)).await.unwrap();
    let mut text = String::new();
    while let Ok(Some(chunk)) = stream.chunk().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.matches("event: reasoning").count() >= 2 {
            break;
        }
    }
    let started = common::api::parse_sse(&text).into_iter().find(|(e, _)| e == "start").expect("a start event").1;
    let conversation = started["conversation_id"].as_str().unwrap().to_string();
    let Pair { a, b, _redis, _dirs, .. } = p;
    a.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let detail = b.json("GET", &format!("/conversations/{conversation}"), None).await;
        if let Some(reply) = detail["messages"].as_array().unwrap().get(1) {
            break reply.clone();
        }
        assert!(Instant::now() < deadline, "the cut-off reply was not marked: {detail}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((reply["role"].as_str(), reply["finish_reason"].as_str()), (Some("assistant"), Some("interrupted")));
    assert_eq!(reply["id"], started["message_id"]);
    // And the conversation goes on, on the process left.
    let next = b
        .json("POST", "/chat", Some(json!({"user_id": "u1", "message": "again", "conversation_id": conversation})))
        .await;
    assert_eq!(next["reply"], "You said: again");
}

#[tokio::test]
async fn replies_being_written_on_one_process_count_against_the_account_on_the_other() {
    let p = pair(&["--mock-token-ms", "100", "--account-concurrent-generations", "2"]).await;
    let mut streams = Vec::new();
    for user in ["u1", "u2"] {
        let ask = json!({"user_id": user, "message": "tell me a long story, slowly", "stream": true});
        let mut stream = p.a.send("POST", "/chat", Some(&ask)).await.unwrap();
        assert_eq!(stream.status(), 200);
        stream.chunk().await.unwrap().expect("the reply began");
        streams.push(stream);
    }
    // Two replies are being written on A: B lets in neither a third reply nor a picture.
    let (status, body) = p.b.request("POST", "/chat", Some(&json!({"user_id": "u3", "message": "hi"}))).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["param"], "account.concurrent_generations", "{body}");
    assert_eq!(p.b.request("POST", "/image", Some(&recipe(1, 2))).await.0, 429);
    let quota = p.b.json("GET", "/quota", None).await;
    assert_eq!(quota["account"]["concurrent_generations"]["used"], 2, "{quota}");
    // Hung up, the replies stop and their places come back on B.
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = p.b.request("POST", "/chat", Some(&json!({"user_id": "u3", "message": "hi"}))).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(Instant::now() < deadline, "the places did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_follower_on_one_process_sees_its_place_move_up_as_both_processes_draw() {
    let p = pair(&["--mock-image-step-ms", "100"]).await;
    let mut ids = Vec::new();
    for seed in 0..4 {
        let server = if seed % 2 == 0 { &p.a } else { &p.b };
        ids.push(submit(server, seed, 10).await);
    }
    // Two drawing (one per process), two waiting: the last is second in line.
    let last = p.b.until_job(&ids[3], 10, |j| j["status"] == "queued" && j["position"] == 1).await;
    assert!(last["eta_ms"].is_u64() || last["eta_ms"].is_null(), "{last}");
    let events = p.b.send("GET", &format!("/jobs/{}/events", ids[3]), None).await.unwrap().text().await.unwrap();
    let infos: Vec<Value> = common::api::parse_sse(&events).into_iter().map(|(_, v)| v).collect();
    let mut places: Vec<u64> = infos.iter().filter_map(|i| i["position"].as_u64()).collect();
    places.dedup();
    assert_eq!(places, [1, 0], "its place moved up as jobs ended: {events}");
    let states: Vec<&str> = infos.iter().map(|i| i["status"].as_str().unwrap()).collect();
    let first_running = states.iter().position(|s| *s == "running").expect("it was drawn");
    assert!(states[..first_running].iter().all(|s| *s == "queued"), "{states:?}");
    assert_eq!(states.last(), Some(&"done"));
}
