//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

pub mod api;
pub mod haproxy;
pub mod hub;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod s3;

use clap::Parser;
use server::cli::Cli;
use std::path::{Path, PathBuf};

pub const LLM_FIXTURE: &str = "fixtures/llm/tiny-deepseek-r1-distill-qwen-int4-cw-ov";
pub const SD_FIXTURE: &str = "fixtures/sd/tiny-stable-diffusion-v1-5-int8-ov";
/// The optional NSFW filter (`safety_checker/`, `feature_extractor/`), to lay over SD_FIXTURE.
pub const SD_SAFETY_FIXTURE: &str = "fixtures/sd/tiny-sd-safety-checker";

/// Load OpenVINO's C library (the project's `.openvino/` or a system install), once per process.
pub fn load_runtime() {
    let search = server::inference::runtime::RuntimeSearch {
        system_paths: true,
        project_roots: vec![repo_root()],
        ..Default::default()
    };
    server::inference::runtime::load(&search).expect("OpenVINO runtime: run scripts/setup.sh openvino");
}

/// The repository root (tests run with the crate folder as working directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub fn fixture(rel: &str) -> PathBuf {
    let path = repo_root().join(rel);
    assert!(path.exists(), "missing fixture {}: run scripts/make-fixtures.sh", path.display());
    path
}

/// Copy a folder's files and subfolders into `to` (made when missing), e.g. to lay the safety
/// checker fixture over a copy of the image pipeline.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A configuration from flags alone (every value the test cares about is explicit, so variables
/// in the developer's environment cannot change the outcome). Accounts are off
/// (AUTH_REQUIRED=false) unless the flags say otherwise: the suites about accounts turn them on.
pub fn config(data_dir: &Path, extra: &[&str]) -> server::config::Config {
    let db = format!("sqlite://{}/duet.db", data_dir.display());
    config_with_db(data_dir, &db, extra)
}

fn config_with_db(data_dir: &Path, db: &str, extra: &[&str]) -> server::config::Config {
    let data = data_dir.to_str().unwrap().to_string();
    let mut args = vec!["server", "--data-dir", &data, "--database-url", db];
    if !extra.contains(&"--auth-required") {
        args.extend(["--auth-required", "false"]);
    }
    args.extend_from_slice(extra);
    Cli::try_parse_from(args).expect("test configuration parses").config
}

/// The databases the service suites run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A file in the test's data folder.
    Sqlite,
    /// A fresh database in a throwaway cluster this test process starts.
    Postgres,
}

/// `config` on the given database. As with SQLite's file in the data folder, the same data folder
/// means the same Postgres database, so a test can "restart" the server on its data.
pub async fn config_on(backend: Backend, data_dir: &Path, extra: &[&str]) -> server::config::Config {
    static DATABASES: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    match backend {
        Backend::Sqlite => config(data_dir, extra),
        Backend::Postgres => {
            let known = DATABASES.lock().unwrap().iter().find(|(d, _)| d == data_dir).map(|(_, url)| url.clone());
            let url = match known {
                Some(url) => url,
                None => {
                    let url = postgres::fresh_database().await;
                    DATABASES.lock().unwrap().push((data_dir.to_path_buf(), url.clone()));
                    url
                }
            };
            config_with_db(data_dir, &url, extra)
        }
    }
}

/// Where a test's pictures are kept: the data folder, or an S3-compatible server's bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Folder,
    S3,
}

impl Store {
    /// `extra` with this store's server flags added.
    pub fn flags(self, extra: &[&str]) -> Vec<String> {
        let mut flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if self == Store::S3 {
            flags.extend(s3::fresh_store());
        }
        flags
    }
}

/// One async test body, run three times: `NAME::sqlite` and `NAME::postgres` with pictures in the
/// data folder, and `NAME::postgres_s3` with pictures in an S3-compatible server.
#[macro_export]
macro_rules! on_every_store {
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident, $store:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($backend: common::Backend, $store: common::Store) $body
            #[tokio::test]
            async fn sqlite() {
                run(common::Backend::Sqlite, common::Store::Folder).await
            }
            #[tokio::test]
            async fn postgres() {
                run(common::Backend::Postgres, common::Store::Folder).await
            }
            #[tokio::test]
            async fn postgres_s3() {
                run(common::Backend::Postgres, common::Store::S3).await
            }
        }
    )*};
}

/// One async test body, run twice: `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($backend: common::Backend) $body
            #[tokio::test]
            async fn sqlite() {
                run(common::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                run(common::Backend::Postgres).await
            }
        }
    )*};
}

/// Run the `server` binary from the repository root with a fresh data folder and no RUST_LOG;
/// returns (exit code, stdout, stderr).
pub fn run_server(args: &[&str]) -> (i32, String, String) {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(repo_root())
        .env_remove("RUST_LOG")
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .output()
        .expect("run the server binary");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}
