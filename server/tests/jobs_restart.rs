//! Image jobs survive the server: three queued, the server killed (SIGKILL) while the first is
//! drawing, started again on the same data: all three finish, each PNG byte for byte what an
//! uninterrupted server draws from the same recipe; a job cancelled before the kill stays
//! cancelled, and jobs are answered for from their rows.

mod common;

use common::process::{free_port, server_command, ServerProcess};
use serde_json::{json, Value};

fn start_command(data: &std::path::Path, port: u16, engines: &[&str]) -> std::process::Command {
    let mut command = server_command(port);
    // The test polls its jobs often: no request rate limit in the way.
    command
        .args(["--data-dir", data.to_str().unwrap(), "--auth-required", "false"])
        .args(["--account-requests-per-minute", "0", "--user-requests-per-minute", "0"])
        .args(engines);
    command
}

async fn start(data: &std::path::Path, engines: &[&str]) -> ServerProcess {
    let port = free_port();
    let server = ServerProcess::start(start_command(data, port, engines), port).await;
    server.until_models_ready(60).await;
    server
}

fn recipe(seed: u32, steps: u32) -> Value {
    json!({"prompt": format!("a lighthouse, picture {seed}"), "width": 256, "height": 256,
           "num_inference_steps": steps, "seed": seed, "scheduler": "ddim"})
}

/// Queue three pictures and a fourth that is cancelled, kill the server during the first one's
/// steps, start it again: the three are drawn (the first from its first step), and each PNG is
/// what a server that was never killed draws from the same recipe.
async fn three_jobs_outlive_a_kill(engines: &[&str], steps: u32) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), engines).await;
    let mut ids = Vec::new();
    for seed in [11, 22, 33, 44] {
        let job = server.json("POST", "/image", Some(recipe(seed, steps))).await;
        ids.push(job["job_id"].as_str().unwrap().to_string());
    }
    let cancelled = ids.pop().unwrap();
    assert_eq!(server.json("DELETE", &format!("/jobs/{cancelled}"), None).await["status"], "cancelled");
    let first = server.until_job(&ids[0], 60, |j| j["status"] == "running" && j["step"].as_u64() > Some(0)).await;
    assert!(first["step"].as_u64().unwrap() < steps as u64, "killed during the first job's steps: {first}");
    server.kill();

    let again = start(dir.path(), engines).await;
    let mut drawn = Vec::new();
    for id in &ids {
        let job = again.until_job(id, 120, |j| j["status"] != "queued" && j["status"] != "running").await;
        assert_eq!(job["status"], "done", "{job}");
        let (status, png) = again.request("GET", &format!("/images/{id}.png"), None).await;
        assert_eq!(status, 200);
        drawn.push(png);
    }
    let job = again.json("GET", &format!("/jobs/{cancelled}"), None).await;
    assert_eq!(job["status"], "cancelled", "a cancelled job is not drawn after the restart: {job}");
    drop(again);

    // The same recipes on a server that was never killed.
    let fresh = tempfile::tempdir().unwrap();
    let uninterrupted = start(fresh.path(), engines).await;
    for (seed, expected) in [11, 22, 33].into_iter().zip(&drawn) {
        let job = uninterrupted.json("POST", "/image?wait=true", Some(recipe(seed, steps))).await;
        assert_eq!(job["status"], "done", "{job}");
        let (_, png) =
            uninterrupted.request("GET", &format!("/images/{}.png", job["job_id"].as_str().unwrap()), None).await;
        assert!(png == *expected, "seed {seed}: the picture drawn after the restart differs from an uninterrupted one");
    }
}

#[tokio::test]
async fn queued_and_running_jobs_are_drawn_after_a_kill_mock_engines() {
    three_jobs_outlive_a_kill(&["--use-mocks", "true", "--mock-image-step-ms", "50"], 10).await;
}

#[tokio::test]
async fn queued_and_running_jobs_are_drawn_after_a_kill_fixture_models() {
    common::load_runtime();
    let llm = common::fixture(common::LLM_FIXTURE);
    let sd = common::fixture(common::SD_FIXTURE);
    let engines = ["--llm-model", llm.to_str().unwrap(), "--sd-model", sd.to_str().unwrap()];
    // Enough steps that the kill lands between the first one and the last.
    three_jobs_outlive_a_kill(&engines, 30).await;
}
