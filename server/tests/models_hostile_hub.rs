//! A hostile hub (a mirror in `HF_ENDPOINT`, or anyone on a plain-http path to it) names files,
//! commits and blobs: none of it may create, change or remove anything outside `MODELS_DIR`, and
//! a plain-http endpoint is refused unless it is this machine.

mod common;

use app::types::ModelRole;
use common::hub::{MockHub, MockRepo};
use server::models::{
    hub::{fetch, DownloadError, HubOptions},
    progress::Tracker,
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

const REPO: &str = "duet-test/tiny-deepseek";
const COMMIT: &str = "2222222222222222222222222222222222222222";

/// A folder with MODELS_DIR inside it and files of the user's beside it.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("models")).unwrap();
        std::fs::write(dir.path().join("sentinel.txt"), "the user's file").unwrap();
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        std::fs::write(dir.path().join("elsewhere/notes.txt"), "more of the user's").unwrap();
        Root { dir }
    }

    fn models(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    /// Every file and folder outside MODELS_DIR, with the content of the files.
    fn outside(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        let mut found = BTreeMap::new();
        walk(self.dir.path(), &self.models(), &mut found);
        found
    }
}

fn walk(dir: &Path, skip: &Path, found: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path == skip {
            continue;
        }
        if path.is_dir() {
            found.insert(path.clone(), None);
            walk(&path, skip, found);
        } else {
            found.insert(path.clone(), Some(std::fs::read(&path).unwrap_or_default()));
        }
    }
}

fn options(hub: &MockHub, models_dir: &Path) -> HubOptions {
    common::hub::options(hub, models_dir, 64 * 1024)
}

async fn fetch_llm(options: &HubOptions) -> Result<server::models::hub::Fetched, DownloadError> {
    fetch(options, ModelRole::Llm, REPO, "main", &Tracker::new(|_| {})).await
}

fn repo() -> MockRepo {
    MockRepo::from_dir(REPO, COMMIT, &common::fixture(common::LLM_FIXTURE))
}

#[tokio::test]
async fn file_names_that_leave_the_snapshot_are_refused_before_anything_is_written() {
    // snapshots/<commit>/ is four folders below MODELS_DIR's parent.
    for name in ["../../../../sentinel.txt", "../../../../elsewhere/notes.txt", "/tmp/duet-absolute-escape.txt"] {
        let root = Root::new();
        let before = root.outside();
        let hub = MockHub::start(vec![repo()]).await;
        hub.faults().extra_names = vec![name.to_string()];
        let err = fetch_llm(&options(&hub, &root.models())).await.expect_err("a hostile listing is refused");
        assert!(matches!(err, DownloadError::Untrusted { .. }), "{name}: {err}");
        assert!(err.to_string().contains("leaves the snapshot folder"), "{err}");
        assert_eq!(root.outside(), before, "{name}: nothing outside MODELS_DIR changed");
        assert!(!Path::new("/tmp/duet-absolute-escape.txt").exists());
        let requested: Vec<String> = hub.requests().into_iter().map(|s| s.path).collect();
        assert_eq!(requested, [format!("/api/models/{REPO}/revision/main")], "no file was asked for");
    }
}

#[tokio::test]
async fn a_commit_that_is_not_one_is_refused() {
    for commit in ["../../../../elsewhere", "/tmp/duet-commit-escape", "main", "2222"] {
        let root = Root::new();
        let before = root.outside();
        let hub = MockHub::start(vec![repo()]).await;
        hub.faults().listed_commit = Some(commit.to_string());
        let err = fetch_llm(&options(&hub, &root.models())).await.expect_err("not a commit");
        assert!(matches!(err, DownloadError::Untrusted { .. }), "{commit}: {err}");
        assert!(err.to_string().contains("not 40 hex characters"), "{err}");
        assert_eq!(root.outside(), before, "{commit}");
        assert!(!Path::new("/tmp/duet-commit-escape").exists());
    }
}

#[tokio::test]
async fn header_values_never_become_paths() {
    for evil in ["../../../escaped", "/tmp/duet-header-escape"] {
        let root = Root::new();
        let before = root.outside();
        let hub = MockHub::start(vec![repo()]).await;
        hub.faults().header_path = Some(evil.to_string());
        // The files themselves are right: the download completes, named by what the listing
        // said (and checked against), whatever the headers claim.
        let fetched = fetch_llm(&options(&hub, &root.models())).await.expect("the download completes");
        assert!(fetched.dir.starts_with(root.models()), "{}", fetched.dir.display());
        assert!(fetched.dir.ends_with(COMMIT));
        assert_eq!(root.outside(), before, "{evil}: nothing outside MODELS_DIR was written");
        assert!(!Path::new("/tmp/duet-header-escape").exists());
        assert!(!Path::new("/tmp/duet-header-escape.sync.part").exists());
        let config = std::fs::read(fetched.dir.join("config.json")).unwrap();
        assert_eq!(config, repo().file("config.json"));
    }
}

#[tokio::test]
async fn a_link_to_outside_left_in_the_cache_is_not_followed_when_discarded() {
    // A cache filled by another tool, with a snapshot entry that links to the user's file and
    // does not match the hub's hash: the download replaces the link, never deletes its target.
    let root = Root::new();
    let before = root.outside();
    let hub = MockHub::start(vec![repo()]).await;
    let snapshot = root.models().join("models--duet-test--tiny-deepseek/snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink(root.dir.path().join("sentinel.txt"), snapshot.join("config.json")).unwrap();
    let fetched = fetch_llm(&options(&hub, &root.models())).await.expect("the download completes");
    assert_eq!(std::fs::read(fetched.dir.join("config.json")).unwrap(), repo().file("config.json"));
    assert_eq!(root.outside(), before, "the linked file is still there, unchanged");
}

#[test]
fn plain_http_endpoints_are_only_for_this_machine() {
    let parse = |endpoint: &str| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_string();
        <server::cli::Cli as clap::Parser>::try_parse_from(["server", "--data-dir", &data, "--hf-endpoint", endpoint])
            .map(|cli| cli.config.models.hf_endpoint)
            .map_err(|e| e.to_string())
    };
    for ok in [
        "https://huggingface.co",
        "https://hf-mirror.example/",
        "http://127.0.0.1:8080",
        "http://localhost:9",
        "http://[::1]:80",
    ] {
        assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
    }
    for bad in [
        "http://hf-mirror.example",
        "http://10.0.0.5:8080",
        "http://127.0.0.1.evil.example",
        "ftp://x",
        "huggingface.co",
    ] {
        let err = parse(bad).expect_err(bad);
        assert!(err.contains("HF_ENDPOINT"), "{bad}: {err}");
    }
}

#[test]
fn revisions_are_names_not_paths() {
    let parse = |revision: &str| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_string();
        <server::cli::Cli as clap::Parser>::try_parse_from(["server", "--data-dir", &data, "--llm-revision", revision])
            .map(|cli| cli.config.models.llm_revision)
            .map_err(|e| e.to_string())
    };
    assert_eq!(parse("main").unwrap(), "main");
    assert_eq!(parse("refs/pr/1").unwrap(), "refs/pr/1");
    for bad in ["../../x", "/etc", ""] {
        assert!(parse(bad).unwrap_err().contains("LLM_REVISION"), "{bad}");
    }
}
