//! `GET /health` through the real router: mock mode, the fixture models on OpenVINO, and models
//! that are not on disk.

mod common;
use common::api::wait_until_loaded;

use app::types::{HealthReport, ModelRole, ModelState, ServiceStatus};
use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tower::ServiceExt;

async fn get_health(state: &server::AppState) -> (axum::http::HeaderMap, HealthReport) {
    let res = server::app(state.clone()).oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (headers, serde_json::from_slice(&body).expect("health JSON"))
}

#[tokio::test]
async fn mock_mode_is_ready_without_openvino() {
    let dir = tempfile::tempdir().unwrap();
    let state = server::build_state(common::config(dir.path(), &["--use-mocks", "true"])).await.unwrap();
    let (headers, report) = get_health(&state).await;
    assert!(headers.contains_key("x-request-id"), "every response carries its request id");
    assert_eq!(report.status, ServiceStatus::Ok);
    assert!(report.use_mocks);
    assert!(!report.auto_download_models);
    assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(report.database.backend, "sqlite");
    assert!(report.database.ok);
    assert!(report.openvino.is_none());
    let roles: Vec<_> = report.models.iter().map(|m| (m.role, m.state, m.device.as_str())).collect();
    assert_eq!(roles, vec![(ModelRole::Llm, ModelState::Ready, "mock"), (ModelRole::Sd, ModelState::Ready, "mock")]);
    assert_eq!(report.models[0].id, server::config::DEFAULT_LLM_MODEL);
}

#[tokio::test]
async fn health_json_has_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let state = server::build_state(common::config(dir.path(), &["--use-mocks", "true"])).await.unwrap();
    let res = server::app(state).oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for key in ["status", "use_mocks", "auto_download_models", "cached_models", "models", "version"] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    for key in ["id", "path", "state", "device"] {
        assert!(json["models"][0].get(key).is_some(), "missing models[].{key} in {json}");
    }
    assert_eq!(json["status"], "ok");
    assert_eq!(json["models"][1]["state"], "ready");
}

#[tokio::test]
async fn fixture_models_load_on_openvino_and_report_ready() {
    let dir = tempfile::tempdir().unwrap();
    let llm = common::fixture(common::LLM_FIXTURE);
    let sd = common::fixture(common::SD_FIXTURE);
    let config =
        common::config(dir.path(), &["--llm-model", llm.to_str().unwrap(), "--sd-model", sd.to_str().unwrap()]);
    let state = server::build_state(config).await.unwrap();
    wait_until_loaded(&state).await;
    let (_, report) = get_health(&state).await;
    for model in &report.models {
        assert_eq!(model.state, ModelState::Ready, "{model:?}");
        assert_eq!(model.device, "CPU");
    }
    assert_eq!(report.models[0].path.as_deref(), Some(llm.to_str().unwrap()));
    assert_eq!(report.status, ServiceStatus::Ok);
    let runtime = report.openvino.expect("OpenVINO is reported");
    assert!(runtime.version.starts_with("2026.4"), "{}", runtime.version);
    assert!(runtime.library.is_some_and(|l| l.contains("libopenvino_c.so")), "shown with accounts off");
    let idle = report.models[0].engine.clone().expect("the chat engine reports its activity");
    assert_eq!((idle.running, idle.kept_conversations, idle.kv_tokens_used), (0, 0, 0), "{idle:?}");
    assert!(idle.kv_tokens_allocated >= 2048, "paged attention allocates its first blocks: {idle:?}");
    assert!(report.models[1].engine.is_none(), "the image model has no such figures");

    // A turn of a conversation: its KV cache stays for the next one, and /health says so.
    let said = common::api::post(&state, "/chat", serde_json::json!({"user_id": "u", "message": "Hello"})).await;
    assert_eq!(said.status, 200, "{}", String::from_utf8_lossy(&said.body));
    let deadline = Instant::now() + Duration::from_secs(5);
    let kept = loop {
        let engine = get_health(&state).await.1.models[0].engine.clone().unwrap();
        if engine.kept_conversations == 1 || Instant::now() > deadline {
            break engine;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((kept.running, kept.kept_conversations), (0, 1), "{kept:?}");
    assert!(kept.kv_tokens_used > 0 && kept.kv_tokens_used <= kept.kv_tokens_allocated, "{kept:?}");
}

#[tokio::test]
async fn missing_models_are_reported_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    // Another repo in the cache is listed, but is not the configured one.
    std::fs::create_dir_all(models.join("models--someone--other-model/snapshots/abc")).unwrap();
    let state =
        server::build_state(common::config(dir.path(), &["--models-dir", models.to_str().unwrap()])).await.unwrap();
    let (_, report) = get_health(&state).await;
    assert_eq!(report.status, ServiceStatus::Degraded);
    assert_eq!(report.cached_models, vec!["someone/other-model".to_string()]);
    assert!(report.openvino.is_some());
    for (model, var) in report.models.iter().zip(["LLM_MODEL", "SD_MODEL"]) {
        assert_eq!(model.state, ModelState::Missing);
        assert_eq!(model.path, None);
        assert!(model.detail.as_deref().unwrap().contains(var), "{model:?}");
    }
}

#[tokio::test]
async fn a_model_folder_with_missing_files_is_an_error_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken-sd");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("model_index.json"), "{}").unwrap();
    let config = common::config(dir.path(), &["--sd-model", broken.to_str().unwrap()]);
    let state = server::build_state(config).await.unwrap();
    let (_, report) = get_health(&state).await;
    let sd = &report.models[1];
    assert_eq!(sd.state, ModelState::Error);
    assert!(sd.detail.as_deref().unwrap().contains("unet/openvino_model.xml"), "{sd:?}");
}
