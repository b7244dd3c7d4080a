//! `POST /image`, `/jobs/{id}` (status, cancel, events) and `/images/{id}.png` through the real
//! router with the mock image engine.

mod common;

use axum::http::Method;
use common::api::{get, mock_state_on, post, send, wait_for_job};
use serde_json::json;
use std::time::Duration;

on_both_databases! {
async fn the_seed_request_queues_a_job_that_makes_a_reproducible_png(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let seed_request = json!({
        "prompt": "a red fox in snow", "negative_prompt": "blurry", "num_inference_steps": 4,
        "guidance_scale": 6.5, "seed": 1234, "width": 256, "height": 384
    });
    let res = post(&state, "/image", seed_request.clone()).await;
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert_eq!((body["provider"].as_str(), body["mock"].as_bool()), (Some("mock"), Some(true)));
    let p = &body["parameters"];
    assert_eq!(p["prompt"], "a red fox in snow");
    assert_eq!(p["negative_prompt"], "blurry");
    assert_eq!((p["num_inference_steps"].as_u64(), p["seed"].as_u64()), (Some(4), Some(1234)));
    assert_eq!(
        (p["width"].as_u64(), p["height"].as_u64(), p["guidance_scale"].as_f64()),
        (Some(256), Some(384), Some(6.5))
    );
    assert_eq!(p["scheduler"], "pndm");
    let id = body["job_id"].as_str().unwrap();
    assert_eq!(body["status_url"], format!("/jobs/{id}"));
    assert_eq!(body["image_url"], format!("/images/{id}.png"));
    assert!(body["created_at"].as_i64().unwrap() > 1_700_000_000_000);

    let done = wait_for_job(&state, body["status_url"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(
        (done["status"].as_str(), done["step"].as_u64(), done["total_steps"].as_u64()),
        (Some("done"), Some(4), Some(4))
    );
    let first = get(&state, &format!("/images/{id}.png")).await;
    assert_eq!(first.status, 200);
    let recipe = server::inference::diffusion::image_file::read_request(&first.body).unwrap();
    assert_eq!((recipe.width, recipe.height, recipe.seed, recipe.steps), (256, 384, 1234, 4));

    // ?wait=true answers once the image exists; the same recipe gives the same bytes.
    let again = post(&state, "/image?wait=true", seed_request).await;
    assert_eq!(again.status, 200);
    let again = again.json();
    assert_eq!(again["status"], "done");
    let second = get(&state, again["image_url"].as_str().unwrap()).await;
    assert_eq!(first.body, second.body);
    // A file lives under the data folder with the server's name for it.
    assert!(dir.path().join("images").join(format!("{id}.png")).is_file());
}

async fn a_missing_seed_is_chosen_and_reported(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let a = post(&state, "/image", json!({"prompt": "x", "num_inference_steps": 1})).await.json();
    let b = post(&state, "/image", json!({"prompt": "x", "num_inference_steps": 1})).await.json();
    let (sa, sb) = (a["parameters"]["seed"].as_u64().unwrap(), b["parameters"]["seed"].as_u64().unwrap());
    assert_ne!(sa, sb, "fresh seeds");
    assert_eq!(a["parameters"]["width"], 512);
}

async fn every_bad_field_is_named(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let long = "p".repeat(1001);
    let cases = [
        (json!({}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": long}), "prompt"),
        (json!({"prompt": "x", "negative_prompt": long}), "negative_prompt"),
        (json!({"prompt": "x", "num_inference_steps": 0}), "num_inference_steps"),
        (json!({"prompt": "x", "num_inference_steps": 101}), "num_inference_steps"),
        (json!({"prompt": "x", "num_inference_steps": 2.5}), "num_inference_steps"),
        (json!({"prompt": "x", "guidance_scale": 30.5}), "guidance_scale"),
        (json!({"prompt": "x", "guidance_scale": -1}), "guidance_scale"),
        (json!({"prompt": "x", "width": 255}), "width"),
        (json!({"prompt": "x", "height": 1032}), "height"),
        (json!({"prompt": "x", "seed": -1}), "seed"),
        (json!({"prompt": "x", "seed": 4294967296u64}), "seed"),
        (json!({"prompt": "x", "scheduler": "k_lms"}), "scheduler"),
    ];
    for (body, field) in cases {
        let res = post(&state, "/image", body.clone()).await;
        assert_eq!(res.error_param(422).as_deref(), Some(field), "{body}");
    }
    assert_eq!(
        post(&state, "/image?wait=maybe", json!({"prompt": "x"})).await.error_param(422).as_deref(),
        Some("wait")
    );
    // The largest allowed values pass.
    let ok = post(
        &state,
        "/image",
        json!({"prompt": "x", "num_inference_steps": 1, "seed": 4294967295u64,
                                          "guidance_scale": 30, "width": 1024, "height": 256}),
    )
    .await;
    assert_eq!(ok.status, 202);
}

async fn unknown_ids_are_404(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &[]).await;
    let unknown = uuid::Uuid::new_v4();
    for uri in [
        format!("/jobs/{unknown}"),
        "/jobs/not-an-id".to_string(),
        format!("/images/{unknown}.png"),
        "/images/..%2F..%2Fduet.db".to_string(),
        format!("/jobs/{unknown}/events"),
    ] {
        assert_eq!(get(&state, &uri).await.error_param(404), None, "{uri}");
    }
    assert_eq!(send(&state, Method::DELETE, &format!("/jobs/{unknown}"), None).await.status, 404);
}

async fn queue_positions_cancel_and_a_full_queue(backend) {
    let dir = tempfile::tempdir().unwrap();
    // 20 steps of 50 ms: each image takes a second.
    let state = mock_state_on(backend, dir.path(), &["--mock-image-step-ms", "50", "--image-queue-size", "2"]).await;
    let job = |seed: u32| json!({"prompt": "x", "seed": seed, "num_inference_steps": 20, "width": 256, "height": 256});
    let running = post(&state, "/image", job(1)).await.json();
    // Wait until it is rendering (a step done), so the next two wait in the queue.
    let url = running["status_url"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&state, &url).await.json()["step"].as_u64().unwrap_or(0) < 1 {
        assert!(std::time::Instant::now() < deadline, "the first job never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = post(&state, "/image", job(2)).await.json();
    let third = post(&state, "/image", job(3)).await.json();
    let full = post(&state, "/image", job(4)).await;
    assert_eq!(full.error_param(503), None);
    assert_eq!(full.json()["error"]["code"], "queue_full");
    assert!(full.headers.contains_key("retry-after"));

    let status = |body: &serde_json::Value| body["status_url"].as_str().unwrap().to_string();
    let r = get(&state, &status(&running)).await.json();
    assert_eq!(r["status"], "running");
    assert!(r["step"].as_u64().unwrap() >= 1);
    let t = get(&state, &status(&third)).await.json();
    assert_eq!((t["status"].as_str(), t["position"].as_u64()), (Some("queued"), Some(1)));

    // Cancelling a waiting job is immediate and moves the next one up.
    let cancelled = send(&state, Method::DELETE, &status(&second), None).await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.json()["status"], "cancelled");
    let t = get(&state, &status(&third)).await.json();
    assert_eq!(t["position"], 0);
    // Cancelling the running one stops it before its next step.
    let stopping = send(&state, Method::DELETE, &status(&running), None).await;
    assert!([200, 202].contains(&stopping.status.as_u16()));
    let ended = wait_for_job(&state, &status(&running), Duration::from_secs(5)).await;
    assert_eq!(ended["status"], "cancelled");
    assert!(ended["step"].as_u64().unwrap() < 20);
    // The third runs, finishes, and once one job has been timed queued jobs get an estimate.
    let done = wait_for_job(&state, &status(&third), Duration::from_secs(10)).await;
    assert_eq!(done["status"], "done");
    post(&state, "/image", job(5)).await;
    let waiting = post(&state, "/image", job(6)).await.json();
    let w = get(&state, &status(&waiting)).await.json();
    assert_eq!(w["status"], "queued");
    let eta = w["eta_ms"].as_u64().expect("an estimate once a job was timed");
    assert!((1000..4000).contains(&eta), "two 1-second jobs ahead or running: {eta}");
}

async fn job_events_stream_until_the_image_is_done(backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state_on(backend, dir.path(), &["--mock-image-step-ms", "10"]).await;
    let body = post(&state, "/image", json!({"prompt": "x", "num_inference_steps": 5, "width": 256, "height": 256}))
        .await
        .json();
    let res = get(&state, &format!("{}/events", body["status_url"].as_str().unwrap())).await;
    assert_eq!(res.headers["content-type"], "text/event-stream");
    let events = res.events();
    assert!(events.iter().all(|(name, _)| name == "job"));
    let steps: Vec<u64> = events.iter().map(|(_, j)| j["step"].as_u64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
    assert!(steps.len() >= 3, "progress events: {steps:?}");
    assert_eq!(events.last().unwrap().1["status"], "done");
    // A finished job's stream is its final state alone.
    let again = get(&state, &format!("{}/events", body["status_url"].as_str().unwrap())).await.events();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1["status"], "done");
}
}
