//! Model downloads with hf-hub against a local server that answers like the hub and serves the
//! fixture models: full download into the cache layout, resume after a cut connection, corrupt
//! files (in transit and on disk), a missing file, a gated repository, offline mode, the
//! `download-models` / `verify-models` commands, and a background download while serving.

mod common;

use app::types::{ModelRole, ModelState};
use common::hub::{git_blob_id, sha256_hex, MockHub, MockRepo};
use server::{
    config::ModelSpec,
    models::{
        hub::{fetch, wanted, DownloadError, HubOptions},
        manifest::Manifest,
        progress::Tracker,
        ModelSlot,
    },
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const REPO: &str = "duet-test/tiny-deepseek";
const COMMIT: &str = "1111111111111111111111111111111111111111";

fn llm_repo() -> MockRepo {
    MockRepo::from_dir(REPO, COMMIT, &common::fixture(common::LLM_FIXTURE))
}

fn options(hub: &MockHub, models_dir: &Path) -> HubOptions {
    common::hub::options(hub, models_dir, 32 * 1024)
}

fn snapshot(models_dir: &Path) -> PathBuf {
    models_dir.join("models--duet-test--tiny-deepseek/snapshots").join(COMMIT)
}

fn wanted_files(repo: &MockRepo) -> Vec<&(String, Vec<u8>)> {
    repo.files.iter().filter(|(p, _)| wanted(ModelRole::Llm, p, false)).collect()
}

async fn fetch_llm(options: &HubOptions) -> Result<server::models::hub::Fetched, DownloadError> {
    fetch(options, ModelRole::Llm, REPO, "main", &Tracker::new(|_| {})).await
}

#[tokio::test]
async fn a_full_download_fills_the_hub_cache_and_records_a_manifest() {
    let repo = llm_repo();
    let expected = wanted_files(&repo).len();
    let total: u64 = wanted_files(&repo).iter().map(|(_, b)| b.len() as u64).sum();
    let hub = MockHub::start(vec![llm_repo()]).await;
    let dir = tempfile::tempdir().unwrap();
    let options = options(&hub, dir.path());

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let tracker = Tracker::new(move |p| log.lock().unwrap().push(p.clone()));
    let fetched = fetch(&options, ModelRole::Llm, REPO, "main", &tracker).await.expect("download");
    assert_eq!(fetched.dir, snapshot(dir.path()));
    assert_eq!(fetched.downloaded, expected);
    assert_eq!(fetched.manifest.commit, COMMIT);

    // Every file Duet runs, byte for byte, linked to a blob named by the hub's hash.
    for (path, bytes) in wanted_files(&repo) {
        let file = fetched.dir.join(path);
        assert_eq!(&std::fs::read(&file).unwrap(), bytes, "{path}");
        let blob = std::fs::read_link(&file).unwrap_or_else(|_| panic!("{path} is a link into blobs/"));
        let name = blob.file_name().unwrap().to_str().unwrap().to_string();
        let hash = if path.ends_with(".bin") { sha256_hex(bytes) } else { git_blob_id(bytes) };
        assert_eq!(name, hash, "{path}");
    }
    assert!(!fetched.dir.join("openvino_tokenizer.bin").exists(), "tokenizer IRs are not fetched");
    let repo_dir = dir.path().join("models--duet-test--tiny-deepseek");
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), COMMIT);
    assert!(!repo_dir.join("refs").join(COMMIT).exists());

    let manifest = Manifest::load(dir.path(), REPO, COMMIT).expect("manifest written");
    assert_eq!(manifest.files.len(), expected);
    let model_bin = manifest.files.iter().find(|f| f.path == "openvino_model.bin").unwrap();
    assert_eq!(model_bin.sha256, sha256_hex(repo.file("openvino_model.bin")));

    // Progress reached the whole, file by file.
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.files_done, last.files_total), (expected as u32, expected as u32));
    assert_eq!((last.bytes_done, last.bytes_total), (total, total));
    assert!(seen.lock().unwrap().iter().any(|p| p.bytes_done > 0 && p.bytes_done < total));

    // The server finds it where a repo id points.
    let slot = ModelSlot::locate(ModelRole::Llm, ModelSpec::Repo(REPO.into()), "main", "CPU", dir.path());
    assert_eq!(slot.state(), ModelState::Loading);
    assert_eq!(slot.path(), Some(snapshot(dir.path())));

    // Again: everything is intact, so nothing is transferred.
    let before = hub.requests().len();
    let again = fetch_llm(&options).await.unwrap();
    assert_eq!(again.downloaded, 0);
    let after: Vec<_> = hub.requests().into_iter().skip(before).map(|s| s.path).collect();
    assert_eq!(after, vec![format!("/api/models/{REPO}/revision/main")], "only the file list is asked for");
}

/// The real SD 1.5 repository ships its safety checker as PyTorch weights: with the NSFW filter
/// on, the download takes exactly what the checker runs from (not the same weights again for
/// PyTorch), and the checker then loads from them.
#[tokio::test]
async fn the_safety_checker_is_fetched_as_the_real_repository_ships_it() {
    const SD_REPO: &str = "duet-test/tiny-sd";
    let mut repo = MockRepo::from_dir(SD_REPO, COMMIT, &common::fixture(common::SD_FIXTURE));
    let checker = MockRepo::from_dir(SD_REPO, COMMIT, &common::fixture(common::SD_SAFETY_FIXTURE));
    repo.files.extend(checker.files.into_iter().filter(|(p, _)| !p.contains("openvino_model")));
    repo.files.push(("safety_checker/pytorch_model.bin".into(), b"the same weights for PyTorch".to_vec()));
    let hub = MockHub::start(vec![repo]).await;
    let dir = tempfile::tempdir().unwrap();
    let options = HubOptions { safety_checker: true, ..options(&hub, dir.path()) };
    let fetched = fetch(&options, ModelRole::Sd, SD_REPO, "main", &Tracker::new(|_| {})).await.expect("download");

    let mut fetched_checker: Vec<String> = Manifest::load(dir.path(), SD_REPO, COMMIT)
        .unwrap()
        .files
        .into_iter()
        .map(|f| f.path)
        .filter(|p| p.starts_with("safety_checker/") || p.starts_with("feature_extractor/"))
        .collect();
    fetched_checker.sort();
    assert_eq!(
        fetched_checker,
        [
            "feature_extractor/preprocessor_config.json",
            "safety_checker/config.json",
            "safety_checker/model.safetensors"
        ]
    );
    assert!(!fetched.dir.join("safety_checker/pytorch_model.bin").exists());
    assert!(!hub.requests().iter().any(|s| s.path.ends_with("pytorch_model.bin")), "never asked for");

    common::load_runtime();
    let checker = server::inference::diffusion::safety::SafetyChecker::load(
        &mut server::inference::new_core().unwrap(),
        &fetched.dir,
        "CPU",
    )
    .unwrap()
    .expect("a checker in the download");
    assert_eq!(checker.form(), "safetensors");

    // Off: none of it is fetched.
    let plain = tempfile::tempdir().unwrap();
    let fetched = fetch(
        &common::hub::options(&hub, plain.path(), 32 * 1024),
        ModelRole::Sd,
        SD_REPO,
        "main",
        &Tracker::new(|_| {}),
    )
    .await
    .unwrap();
    assert!(!fetched.dir.join("safety_checker").exists() && !fetched.dir.join("feature_extractor").exists());
}

#[tokio::test]
async fn an_interrupted_download_resumes_where_it_stopped() {
    let repo = llm_repo();
    let hub = MockHub::start(vec![llm_repo()]).await;
    let dir = tempfile::tempdir().unwrap();
    let options = options(&hub, dir.path());
    // The connection drops inside the fourth 32 KiB chunk of the weights.
    hub.faults().cut = Some(("openvino_model.bin".into(), 100_000));

    let err = fetch_llm(&options).await.expect_err("the cut fails the only try");
    assert!(matches!(err, DownloadError::Network { .. }), "{err}");
    assert!(err.to_string().contains("openvino_model.bin"), "{err}");
    let parts: Vec<_> = std::fs::read_dir(dir.path().join("models--duet-test--tiny-deepseek/blobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sync.part"))
        .collect();
    assert_eq!(parts.len(), 1, "the partial file is kept for the next try");
    let slot = ModelSlot::locate(ModelRole::Llm, ModelSpec::Repo(REPO.into()), "main", "CPU", dir.path());
    assert_eq!(slot.state(), ModelState::Missing, "{:?}", slot.health().detail);

    let before = hub.transfers(&repo, "openvino_model.bin").len();
    let fetched = fetch_llm(&options).await.expect("the second run completes");
    let resumed = hub.transfers(&repo, "openvino_model.bin").into_iter().skip(before).collect::<Vec<_>>();
    let first = resumed.iter().filter_map(|s| s.range_start()).min().expect("ranged requests");
    assert_eq!(first, 3 * 32 * 1024, "the second run starts after the three whole chunks it kept: {resumed:?}");
    assert_eq!(std::fs::read(fetched.dir.join("openvino_model.bin")).unwrap(), repo.file("openvino_model.bin"));
}

#[tokio::test]
async fn retries_resume_within_one_run() {
    let repo = llm_repo();
    let hub = MockHub::start(vec![llm_repo()]).await;
    let dir = tempfile::tempdir().unwrap();
    let options = HubOptions { attempts: 3, ..options(&hub, dir.path()) };
    hub.faults().cut = Some(("openvino_model.xml".into(), 150_000));
    let fetched = fetch_llm(&options).await.expect("a second try finishes the file");
    assert_eq!(std::fs::read(fetched.dir.join("openvino_model.xml")).unwrap(), repo.file("openvino_model.xml"));
    let starts: Vec<u64> = hub.transfers(&repo, "openvino_model.xml").iter().filter_map(|s| s.range_start()).collect();
    assert_eq!(starts.iter().filter(|s| **s == 0).count(), 1, "never restarted from zero: {starts:?}");
}

#[tokio::test]
async fn a_file_corrupted_in_transit_is_fetched_again() {
    let repo = llm_repo();
    let hub = MockHub::start(vec![llm_repo()]).await;
    let dir = tempfile::tempdir().unwrap();

    // One try: the hash check fails the download and leaves nothing behind.
    hub.faults().corrupt.insert("tokenizer.json".into());
    let err = fetch_llm(&options(&hub, dir.path())).await.expect_err("corrupt file");
    assert!(matches!(err, DownloadError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    assert!(!snapshot(dir.path()).join("tokenizer.json").exists(), "the bad file is not kept");

    // Two tries: the second transfer is good and the download completes.
    hub.faults().corrupt.insert("tokenizer.json".into());
    let options = HubOptions { attempts: 2, ..options(&hub, dir.path()) };
    let fetched = fetch_llm(&options).await.expect("fetched again");
    assert_eq!(std::fs::read(fetched.dir.join("tokenizer.json")).unwrap(), repo.file("tokenizer.json"));
}

#[tokio::test]
async fn damaged_files_on_disk_are_found_and_replaced() {
    let repo = llm_repo();
    let hub = MockHub::start(vec![llm_repo()]).await;
    let dir = tempfile::tempdir().unwrap();
    let options = options(&hub, dir.path());
    fetch_llm(&options).await.unwrap();
    let snap = snapshot(dir.path());

    // Same length, other bytes: only a hash finds it. Cut short: start-up finds it by size.
    let mut config = std::fs::read(snap.join("config.json")).unwrap();
    config[0] ^= 0xff;
    std::fs::write(snap.join("config.json"), &config).unwrap();
    let bin = std::fs::read(snap.join("openvino_model.bin")).unwrap();
    std::fs::write(snap.join("openvino_model.bin"), &bin[..1000]).unwrap();
    let slot = ModelSlot::locate(ModelRole::Llm, ModelSpec::Repo(REPO.into()), "main", "CPU", dir.path());
    assert_eq!(slot.state(), ModelState::Missing);
    let detail = slot.health().detail.unwrap();
    assert!(detail.contains("openvino_model.bin (1000 bytes, expected"), "{detail}");

    let fetched = fetch_llm(&options).await.unwrap();
    assert_eq!(fetched.downloaded, 2, "only the two damaged files are fetched");
    assert_eq!(std::fs::read(snap.join("config.json")).unwrap(), repo.file("config.json"));
    assert_eq!(std::fs::read(snap.join("openvino_model.bin")).unwrap(), repo.file("openvino_model.bin"));
}

#[tokio::test]
async fn a_missing_file_or_repository_is_a_404_naming_it() {
    let mut repo = llm_repo();
    repo.unavailable.push("generation_config.json".into());
    let hub = MockHub::start(vec![repo]).await;
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_llm(&options(&hub, dir.path())).await.expect_err("404");
    assert!(matches!(err, DownloadError::NotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("generation_config.json") && text.contains("404"), "{text}");

    let err =
        fetch(&options(&hub, dir.path()), ModelRole::Llm, "duet-test/no-such-model", "main", &Tracker::new(|_| {}))
            .await
            .expect_err("unknown repo");
    assert!(err.to_string().contains("repository duet-test/no-such-model"), "{err}");
    let err =
        fetch(&options(&hub, dir.path()), ModelRole::Llm, REPO, "v9", &Tracker::new(|_| {})).await.expect_err("rev");
    assert!(err.to_string().contains("revision v9"), "{err}");
}

#[tokio::test]
async fn a_repository_that_is_not_the_right_model_is_refused_before_downloading() {
    let hub = MockHub::start(vec![llm_repo()]).await;
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(&options(&hub, dir.path()), ModelRole::Sd, REPO, "main", &Tracker::new(|_| {}))
        .await
        .expect_err("an LLM repo is no SD model");
    assert!(err.to_string().contains("unet/openvino_model.xml"), "{err}");
    assert_eq!(hub.requests().len(), 1, "nothing but the file list was fetched");
}

#[tokio::test]
async fn a_gated_repository_needs_a_token() {
    let mut repo = llm_repo();
    repo.token = Some("hf_test_token".into());
    let hub = MockHub::start(vec![repo]).await;
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_llm(&options(&hub, dir.path())).await.expect_err("401");
    assert!(matches!(err, DownloadError::Unauthorized { status: 401, .. }), "{err}");
    assert!(err.to_string().contains("HUGGINGFACE_TOKEN"), "{err}");

    let wrong = HubOptions { token: Some("hf_wrong".into()), ..options(&hub, dir.path()) };
    assert!(matches!(fetch_llm(&wrong).await, Err(DownloadError::Unauthorized { .. })));
    let right = HubOptions { token: Some("hf_test_token".into()), ..options(&hub, dir.path()) };
    fetch_llm(&right).await.expect("the token opens it");
}

#[tokio::test]
async fn offline_mode_uses_only_the_cache_and_never_the_network() {
    let hub = MockHub::start(vec![llm_repo()]).await;
    let dir = tempfile::tempdir().unwrap();
    let offline = HubOptions { offline: true, ..options(&hub, dir.path()) };
    let err = fetch_llm(&offline).await.expect_err("nothing cached");
    assert!(matches!(err, DownloadError::Offline { .. }), "{err}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    assert!(hub.requests().is_empty(), "offline mode made a request: {:?}", hub.requests());

    fetch_llm(&options(&hub, dir.path())).await.unwrap();
    let before = hub.requests().len();
    let fetched = fetch_llm(&offline).await.expect("complete in the cache");
    assert_eq!(fetched.downloaded, 0);
    assert_eq!(hub.requests().len(), before, "offline mode made a request");

    // A partial file is caught offline too (by its size in the manifest).
    std::fs::write(snapshot(dir.path()).join("tokenizer.json"), b"{}").unwrap();
    let err = fetch_llm(&offline).await.expect_err("partial");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

/// The real binary, with only the variables given (the developer's own are cleared).
async fn server_cli(dir: &Path, hub: &MockHub, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.current_dir(dir).args(args).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir)
        .env("HF_ENDPOINT", &hub.url)
        .env("LLM_MODEL", REPO)
        .env("SD_MODEL", "duet-test/tiny-sd");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().await.expect("server binary runs")
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test]
async fn download_and_verify_commands() {
    let sd = MockRepo::from_dir(
        "duet-test/tiny-sd",
        "2222222222222222222222222222222222222222",
        &common::fixture(common::SD_FIXTURE),
    );
    let hub = MockHub::start(vec![llm_repo(), sd]).await;
    let dir = tempfile::tempdir().unwrap();

    // Both configured models, in mock mode too.
    let out = server_cli(dir.path(), &hub, &["download-models"], &[("USE_MOCKS", "true")]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{REPO}: 8 files")) && stdout.contains(COMMIT), "{stdout}");
    assert!(stdout.contains("duet-test/tiny-sd: "), "{stdout}");
    let models = dir.path().join("models");
    assert!(models
        .join("models--duet-test--tiny-sd/snapshots/2222222222222222222222222222222222222222/unet/openvino_model.bin")
        .is_file());
    assert!(!models
        .join("models--duet-test--tiny-sd/snapshots/2222222222222222222222222222222222222222/vae_encoder")
        .exists());

    let out = server_cli(dir.path(), &hub, &["verify-models"], &[("HF_HUB_OFFLINE", "1")]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("ok {REPO}: commit {COMMIT}: 8 files")),
        "{}",
        text(&out)
    );

    // A flipped byte: verify fails naming the file; download fetches it again; verify passes.
    let file = models.join("models--duet-test--tiny-deepseek/snapshots").join(COMMIT).join("tokenizer_config.json");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let out = server_cli(dir.path(), &hub, &["verify-models", "--llm"], &[]).await;
    assert!(!out.status.success());
    let report = text(&out);
    assert!(report.contains(&format!("FAILED {REPO}")) && report.contains("tokenizer_config.json: sha256"), "{report}");
    assert!(report.contains("server download-models"), "{report}");
    let out = server_cli(dir.path(), &hub, &["download-models", "--llm"], &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(1 downloaded, 7 already there"), "{}", text(&out));
    let out = server_cli(dir.path(), &hub, &["verify-models", "--llm"], &[]).await;
    assert!(out.status.success(), "{}", text(&out));

    // Failures exit non-zero with the reason.
    let out = server_cli(dir.path(), &hub, &["download-models", "--llm", "duet-test/gone"], &[]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("repository duet-test/gone at revision main was not found"), "{}", text(&out));
    let out =
        server_cli(dir.path(), &hub, &["download-models", "--sd"], &[("HF_ENDPOINT", "http://127.0.0.1:9")]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("could not download duet-test/tiny-sd from http://127.0.0.1:9"), "{}", text(&out));
}

#[tokio::test]
async fn verify_checks_a_cache_filled_by_another_tool_against_its_blob_names() {
    let hub = MockHub::start(vec![llm_repo()]).await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    fetch_llm(&options(&hub, &models)).await.unwrap();
    // As huggingface-cli would leave it: the cache without Duet's manifest.
    std::fs::remove_dir_all(models.join(".duet")).unwrap();
    let out = server_cli(dir.path(), &hub, &["verify-models", "--llm"], &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("8 checked against their blob names"), "{}", text(&out));
    assert!(Manifest::load(&models, REPO, COMMIT).is_some(), "verify records a manifest");
}

#[tokio::test]
async fn missing_models_download_in_the_background_while_the_server_answers() {
    let hub = MockHub::start(vec![llm_repo()]).await;
    // Slow enough to watch: a pause before every 16 KiB.
    hub.faults().pace = Some(Duration::from_millis(40));
    let dir = tempfile::tempdir().unwrap();
    let url = hub.url.clone();
    let sd = common::fixture(common::SD_FIXTURE);
    let config = common::config(
        dir.path(),
        &[
            "--auto-download-models",
            "true",
            "--hf-hub-offline",
            "false",
            "--hf-endpoint",
            &url,
            "--llm-model",
            REPO,
            "--sd-model",
            sd.to_str().unwrap(),
        ],
    );
    let state = server::build_state(config).await.expect("the server starts without the model");

    let mut saw_progress = false;
    let mut refused = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let health = common::api::get(&state, "/health").await.json();
        let llm = &health["models"][0];
        match llm["state"].as_str().unwrap() {
            "downloading" => {
                let done = llm["download"]["bytes_done"].as_u64().unwrap();
                let total = llm["download"]["bytes_total"].as_u64().unwrap();
                let file_total = llm["download"]["file_bytes_total"].as_u64().unwrap();
                assert!(llm["download"]["file_bytes_done"].as_u64().unwrap() <= file_total, "{llm}");
                saw_progress |= done > 0 && done < total && llm["progress"].as_f64().unwrap() > 0.0;
                if !refused {
                    let reply =
                        common::api::post(&state, "/chat", serde_json::json!({"user_id": "u", "message": "hi"})).await;
                    assert_eq!(reply.status, 503, "{}", String::from_utf8_lossy(&reply.body));
                    assert!(reply.headers.contains_key("retry-after"));
                    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("downloading"));
                    refused = true;
                }
            }
            "loading" => {}
            "ready" => break,
            other => panic!("unexpected state {other}: {llm}"),
        }
        assert!(Instant::now() < deadline, "not ready after 120 s: {llm}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_progress && refused, "the download was watched (progress {saw_progress}, 503 {refused})");
    let reply =
        common::api::post(&state, "/chat", serde_json::json!({"user_id": "u", "message": "hi", "max_tokens": 4})).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

#[tokio::test]
async fn without_auto_download_health_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), &["--llm-model", REPO, "--hf-endpoint", "http://127.0.0.1:9"]);
    let state = server::build_state(config).await.unwrap();
    let health = common::api::get(&state, "/health").await.json();
    assert_eq!(health["models"][0]["state"], "missing");
    let detail = health["models"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("server download-models") && detail.contains("AUTO_DOWNLOAD_MODELS"), "{detail}");
    let reply = common::api::post(&state, "/chat", serde_json::json!({"user_id": "u", "message": "hi"})).await;
    assert_eq!(reply.status, 503);
}
