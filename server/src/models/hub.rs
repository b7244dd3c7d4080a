//! Fetching a model repository from the Hugging Face hub (or the mirror in `HF_ENDPOINT`) into
//! `MODELS_DIR` in the hub's cache layout (`blobs/`, `snapshots/<commit>/`, `refs/`). hf-hub
//! builds the client (endpoint, token, user agent) and asks for the file list; the files
//! themselves come through `transfer`, under names we check.
//!
//! The revision is resolved to a commit first and every file is fetched at that commit, so a push
//! to the repository mid-download cannot mix two versions. The hub's answers are not trusted as
//! paths: the commit must be 40 hex characters, each file a plain relative path with a hex hash
//! and a size, or nothing is written. Each file is checked against that hash (LFS sha256, or the
//! git blob id of small files); a file already on disk that checks out is kept, a corrupt or
//! partial one is fetched again, and an interrupted transfer resumes from its last whole chunk.

use super::{
    cache_folder_name,
    manifest::{check_hash, BlobName, FileEntry, Manifest, Problem},
    progress::Tracker,
    transfer,
};
use app::types::ModelRole;
use hf_hub::{
    api::tokio::{Api, ApiBuilder},
    Cache, Repo, RepoType,
};
use serde::Deserialize;
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// hf-hub's default: a cut connection loses at most this much.
pub const DEFAULT_CHUNK_BYTES: usize = 10_000_000;

#[derive(Clone, Debug)]
pub struct HubOptions {
    /// `https://huggingface.co` or a mirror.
    pub endpoint: String,
    pub token: Option<String>,
    /// Never touch the network (`HF_HUB_OFFLINE`): only what is in `models_dir` counts.
    pub offline: bool,
    pub models_dir: PathBuf,
    /// Bytes per ranged request; an interrupted download resumes from the last whole chunk.
    pub chunk_bytes: usize,
    /// Tries per file before giving up; each resumes what the previous one kept.
    pub attempts: u32,
    /// Fetch the SD repository's `safety_checker/` too.
    pub safety_checker: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "HF_HUB_OFFLINE is set and {repo} is not complete in {dir}: {detail}; unset HF_HUB_OFFLINE \
         to download it, or stage the files by hand (README, \"Models on a machine that is always offline\")"
    )]
    Offline { repo: String, dir: String, detail: String },
    #[error(
        "{repo} is gated or private (HTTP {status} from {endpoint}): set HUGGINGFACE_TOKEN to a token \
         with access to it (accept the model's terms on its page first)"
    )]
    Unauthorized { repo: String, endpoint: String, status: u16 },
    #[error("{what} was not found on {endpoint} (HTTP 404)")]
    NotFound { what: String, endpoint: String },
    #[error("could not download {what} from {endpoint}: {message}")]
    Network { what: String, endpoint: String, message: String },
    #[error("{file} of {repo} does not match the hub's hash after {attempts} tries ({problem})")]
    Corrupt { repo: String, file: String, attempts: u32, problem: Problem },
    #[error("{repo} at {commit} has no {files}: is it an OpenVINO export of the expected model?")]
    NotAModel { repo: String, commit: String, files: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The hub (or a mirror) answered something no hub would: a file name that leaves the
    /// snapshot folder, a commit that is not one, a file without size or hash.
    #[error("refused {repo} from {endpoint}: {why}")]
    Untrusted { repo: String, endpoint: String, why: String },
}

impl DownloadError {
    /// Worth another try: the network or the server failed, not the request.
    pub fn transient(&self) -> bool {
        matches!(self, DownloadError::Network { .. })
    }
}

/// A complete snapshot on disk.
#[derive(Debug)]
pub struct Fetched {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Files transferred now; the others were already there and intact.
    pub downloaded: usize,
}

/// Whether Duet uses a file of a model repository. The OpenVINO tokenizer IRs are skipped (Duet
/// tokenizes with `tokenizer.json`), as are the VAE encoder (no image-to-image yet) and, unless
/// the NSFW filter is on, the safety checker; of that, only the files it runs from (not, say,
/// `pytorch_model.bin` beside `model.safetensors`).
pub fn wanted(role: ModelRole, path: &str, safety_checker: bool) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with("openvino_tokenizer.") || name.starts_with("openvino_detokenizer.") {
        return false;
    }
    match (role, path.split('/').next().unwrap_or("")) {
        (ModelRole::Sd, "vae_encoder") => false,
        (ModelRole::Sd, "safety_checker" | "feature_extractor") => {
            safety_checker && crate::inference::diffusion::safety::FILES.contains(&path)
        }
        _ => true,
    }
}

/// A full commit id, as opposed to a branch or tag name.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit a revision points at in the local cache (a ref file that holds anything but a
/// commit id points nowhere).
pub fn local_commit(models_dir: &Path, repo: &str, revision: &str) -> Option<String> {
    if is_commit(revision) {
        return Some(revision.to_string());
    }
    if !transfer::safe_relative_path(revision) {
        return None;
    }
    let text = std::fs::read_to_string(models_dir.join(cache_folder_name(repo)).join("refs").join(revision)).ok()?;
    Some(text.trim().to_string()).filter(|c| is_commit(c))
}

pub fn snapshot_path(models_dir: &Path, repo: &str, commit: &str) -> PathBuf {
    models_dir.join(cache_folder_name(repo)).join("snapshots").join(commit)
}

/// Make `repo` at `revision` complete in `MODELS_DIR`, reporting to `tracker`.
pub async fn fetch(
    options: &HubOptions,
    role: ModelRole,
    repo: &str,
    revision: &str,
    tracker: &Tracker,
) -> Result<Fetched, DownloadError> {
    if options.offline {
        return local(options, role, repo, revision);
    }
    let api = ApiBuilder::from_cache(Cache::new(options.models_dir.clone()))
        .with_endpoint(options.endpoint.clone())
        .with_token(options.token.clone())
        .with_progress(false)
        .with_chunk_size(Some(options.chunk_bytes))
        .with_user_agent("duet", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| network(options, repo, &e))?;
    let info = repo_info(&api, options, repo, revision).await?;
    check_listing(&info).map_err(|why| DownloadError::Untrusted {
        repo: repo.into(),
        endpoint: options.endpoint.clone(),
        why,
    })?;
    let commit = info.sha.clone();
    let files: Vec<&Sibling> =
        info.siblings.iter().filter(|s| wanted(role, &s.rfilename, options.safety_checker)).collect();
    let absent: Vec<&str> =
        super::required_files(role).iter().filter(|req| !files.iter().any(|f| f.rfilename == **req)).copied().collect();
    if !absent.is_empty() {
        return Err(DownloadError::NotAModel { repo: repo.into(), commit, files: absent.join(", ") });
    }
    tracing::info!(repo, revision, commit = %commit, files = files.len(), "model download planned");
    tracker.plan(files.len() as u32, files.iter().filter_map(|f| f.size()).sum());

    let pinned = api.repo(Repo::with_revision(repo.to_string(), RepoType::Model, commit.clone()));
    let snapshot = snapshot_path(&options.models_dir, repo, &commit);
    let mut entries = Vec::with_capacity(files.len());
    let mut downloaded = 0;
    for file in files {
        let dest = snapshot.join(&file.rfilename);
        let entry = match hashing(dest.clone(), file, intact).await {
            Some(entry) => entry,
            None => {
                downloaded += 1;
                let target = Target { api: &api, pinned: &pinned, repo, commit: &commit, dest: &dest };
                fetch_file(options, &target, file, tracker).await?
            }
        };
        tracker.finish_file(entry.size);
        entries.push(entry);
    }

    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Io { path, source }
    };
    let refs = options.models_dir.join(cache_folder_name(repo)).join("refs");
    if !is_commit(revision) {
        let ref_file = refs.join(revision);
        std::fs::create_dir_all(ref_file.parent().unwrap_or(&refs)).map_err(io(&ref_file))?;
        std::fs::write(&ref_file, &commit).map_err(io(&ref_file))?;
    }
    let manifest = Manifest {
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit: commit.clone(),
        downloaded_at: now_rfc3339(),
        files: entries,
    };
    manifest.save(&options.models_dir).map_err(io(&options.models_dir))?;
    tracing::info!(repo, commit = %commit, downloaded, bytes = manifest.total_bytes(), "model download complete");
    Ok(Fetched { dir: snapshot, manifest, downloaded })
}

/// Where one file goes: the repository at its commit, and the snapshot entry.
struct Target<'a> {
    api: &'a Api,
    pinned: &'a hf_hub::api::tokio::ApiRepo,
    repo: &'a str,
    commit: &'a str,
    dest: &'a Path,
}

/// One file, tried up to `attempts` times; each try resumes what the last one kept, and a file
/// that arrives with the wrong hash is thrown away and fetched again.
async fn fetch_file(
    options: &HubOptions,
    target: &Target<'_>,
    file: &Sibling,
    tracker: &Tracker,
) -> Result<FileEntry, DownloadError> {
    let (repo, name) = (target.repo, file.rfilename.as_str());
    let repo_dir = options.models_dir.join(cache_folder_name(repo));
    discard(target.dest, &repo_dir);
    // Checked by `check_listing`: every wanted file has both.
    let (Some(size), Some(blob)) = (file.size(), file.expected()) else {
        return Err(DownloadError::Untrusted {
            repo: repo.into(),
            endpoint: options.endpoint.clone(),
            why: format!("{name} has no size or hash in the file list"),
        });
    };
    let wanted = transfer::Wanted { url: target.pinned.url(name), path: name, size, blob: &blob };
    tracing::info!(repo, file = name, bytes = size, "file download started");
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let progress = tracker.start_file(name, size);
        let fetched =
            transfer::fetch(target.api.client(), &repo_dir, target.commit, &wanted, options.chunk_bytes, &progress)
                .await;
        let outcome = match fetched {
            Ok(path) => hashing(path.clone(), file, checked).await.map_err(|problem| {
                tracing::warn!(repo, file = name, %problem, attempt, "downloaded file does not match the hub's hash");
                discard(&path, &repo_dir);
                DownloadError::Corrupt { repo: repo.into(), file: name.into(), attempts: attempt, problem }
            }),
            Err(err) => Err(classify(options, repo, name, err)),
        };
        match outcome {
            Ok(entry) => {
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(repo, file = name, bytes = entry.size, ms, attempts = attempt, "file download finished");
                return Ok(entry);
            }
            Err(err)
                if attempt < options.attempts && (err.transient() || matches!(err, DownloadError::Corrupt { .. })) =>
            {
                tracing::warn!(repo, file = name, attempt, error = %err, "file download failed; trying again");
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
            }
            Err(err) => {
                tracing::error!(repo, file = name, attempt, error = %err, "file download failed");
                return Err(err);
            }
        }
    }
}

/// A listing Duet will write from: the commit is a commit, and each file has a path that stays
/// inside the snapshot folder, a hash that names its blob and a size that bounds its transfer.
fn check_listing(info: &RepoInfo) -> Result<(), String> {
    if !is_commit(&info.sha) {
        return Err(format!("the commit {:?} is not 40 hex characters", info.sha.chars().take(80).collect::<String>()));
    }
    for file in &info.siblings {
        let name = &file.rfilename;
        if !transfer::safe_relative_path(name) {
            return Err(format!(
                "the file name {:?} leaves the snapshot folder",
                name.chars().take(200).collect::<String>()
            ));
        }
        if file.size().is_none() || file.expected().is_none() {
            return Err(format!("{name} has no size or no hash (sha256 or git blob id) in the file list"));
        }
    }
    Ok(())
}

/// Run a hash check off the async workers: a gigabyte takes seconds, and the server keeps
/// answering meanwhile.
async fn hashing<T: Send + 'static>(path: PathBuf, file: &Sibling, check: fn(&Path, &Sibling) -> T) -> T {
    let file = file.clone();
    tokio::task::spawn_blocking(move || check(&path, &file)).await.expect("hash check does not panic")
}

/// The manifest entry of a file already in the snapshot, if it matches the hub's hash.
fn intact(dest: &Path, file: &Sibling) -> Option<FileEntry> {
    std::fs::metadata(dest).ok().filter(|m| m.is_file())?;
    checked(dest, file).ok()
}

/// Hash a file and compare it with what the hub reported.
fn checked(path: &Path, file: &Sibling) -> Result<FileEntry, Problem> {
    let (size, sha256) = check_hash(path, file.size(), file.expected().as_ref(), &mut |_| {})?;
    Ok(FileEntry { path: file.rfilename.clone(), size, sha256 })
}

/// Remove a snapshot entry and the blob it links to, so the next try starts clean. Only a blob of
/// this repository is removed, by its name, whatever the link says (a cache filled by another tool
/// could hold a link to anywhere).
fn discard(path: &Path, repo_dir: &Path) {
    if let Some(blob) = BlobName::of_link(path) {
        let _ = std::fs::remove_file(repo_dir.join("blobs").join(blob.as_str()));
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
        let _ = std::fs::remove_file(path);
    }
}

/// What a complete snapshot looks like without the network (`HF_HUB_OFFLINE`).
fn local(options: &HubOptions, role: ModelRole, repo: &str, revision: &str) -> Result<Fetched, DownloadError> {
    let dir = options.models_dir.display().to_string();
    let offline = |detail: String| DownloadError::Offline { repo: repo.into(), dir: dir.clone(), detail };
    let commit = local_commit(&options.models_dir, repo, revision)
        .ok_or_else(|| offline(format!("no snapshot for revision {revision}")))?;
    let snapshot = snapshot_path(&options.models_dir, repo, &commit);
    let missing = crate::inference::missing_files(&snapshot, super::required_files(role));
    if !missing.is_empty() {
        return Err(offline(format!("missing {}", missing.join(", "))));
    }
    let manifest = Manifest::load(&options.models_dir, repo, &commit)
        .ok_or_else(|| offline(format!("no manifest for commit {commit}; run `server verify-models` to check it")))?;
    let problems = manifest.size_problems(&snapshot);
    if let Some((file, problem)) = problems.first() {
        return Err(offline(format!("{file}: {problem}")));
    }
    Ok(Fetched { dir: snapshot, manifest, downloaded: 0 })
}

#[derive(Debug, Deserialize)]
struct RepoInfo {
    sha: String,
    siblings: Vec<Sibling>,
}

#[derive(Clone, Debug, Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(Clone, Debug, Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

impl Sibling {
    fn size(&self) -> Option<u64> {
        self.lfs.as_ref().map(|l| l.size).or(self.size)
    }

    /// The hub's hash of the file: LFS files by sha256, others by git blob id.
    fn expected(&self) -> Option<BlobName> {
        match &self.lfs {
            Some(lfs) => BlobName::parse(&lfs.sha256),
            None => self.blob_id.as_deref().and_then(BlobName::parse),
        }
    }
}

/// The repository's file list and the commit `revision` resolves to (`?blobs=true` adds sizes
/// and hashes).
async fn repo_info(api: &Api, options: &HubOptions, repo: &str, revision: &str) -> Result<RepoInfo, DownloadError> {
    let handle = api.repo(Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string()));
    let response =
        handle.info_request().query(&[("blobs", "true")]).send().await.map_err(|e| network(options, repo, &e))?;
    let status = response.status().as_u16();
    match status {
        200..=299 => {}
        401 | 403 => {
            return Err(DownloadError::Unauthorized { repo: repo.into(), endpoint: options.endpoint.clone(), status })
        }
        404 => {
            return Err(DownloadError::NotFound {
                what: format!("repository {repo} at revision {revision}"),
                endpoint: options.endpoint.clone(),
            })
        }
        _ => {
            return Err(DownloadError::Network {
                what: repo.into(),
                endpoint: options.endpoint.clone(),
                message: format!("HTTP {status}"),
            })
        }
    }
    response.json().await.map_err(|e| network(options, repo, &e))
}

fn classify(options: &HubOptions, repo: &str, file: &str, err: transfer::TransferError) -> DownloadError {
    use transfer::TransferError;
    let endpoint = options.endpoint.clone();
    match err {
        TransferError::Status(status @ (401 | 403)) => {
            DownloadError::Unauthorized { repo: repo.into(), endpoint, status }
        }
        TransferError::Status(404) => DownloadError::NotFound { what: format!("{file} in {repo}"), endpoint },
        TransferError::Status(status) => {
            DownloadError::Network { what: format!("{file} of {repo}"), endpoint, message: format!("HTTP {status}") }
        }
        TransferError::Network(message) => {
            DownloadError::Network { what: format!("{file} of {repo}"), endpoint, message }
        }
        TransferError::Io { path, source } => DownloadError::Io { path, source },
        TransferError::Refused(why) => {
            DownloadError::Untrusted { repo: repo.into(), endpoint, why: format!("{file}: {why}") }
        }
    }
}

fn network(options: &HubOptions, repo: &str, err: &dyn std::error::Error) -> DownloadError {
    DownloadError::Network { what: repo.into(), endpoint: options.endpoint.clone(), message: chain(err) }
}

/// An error and its causes on one line ("error sending request: connection refused").
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
        source = std::error::Error::source(source.expect("checked"));
    }
    text
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_duet_runs_are_fetched() {
        use ModelRole::{Llm, Sd};
        assert!(wanted(Llm, "openvino_model.bin", false));
        assert!(wanted(Llm, "tokenizer.json", false));
        assert!(!wanted(Llm, "openvino_tokenizer.bin", false));
        assert!(!wanted(Llm, "openvino_detokenizer.xml", false));
        assert!(wanted(Sd, "unet/openvino_model.bin", false));
        assert!(wanted(Sd, "tokenizer/vocab.json", false));
        assert!(!wanted(Sd, "tokenizer/openvino_tokenizer.xml", false));
        assert!(!wanted(Sd, "vae_encoder/openvino_model.bin", true));
        assert!(!wanted(Sd, "safety_checker/openvino_model.bin", false));
        assert!(wanted(Sd, "safety_checker/openvino_model.bin", true));
        assert!(wanted(Sd, "feature_extractor/preprocessor_config.json", true));
        // The real repository's form: the weights as safetensors, not the same again for PyTorch.
        assert!(wanted(Sd, "safety_checker/model.safetensors", true));
        assert!(wanted(Sd, "safety_checker/config.json", true));
        assert!(!wanted(Sd, "safety_checker/model.safetensors", false));
        assert!(!wanted(Sd, "safety_checker/pytorch_model.bin", true));
        assert!(!wanted(Sd, "safety_checker/flax_model.msgpack", true));
    }

    #[test]
    fn commits_are_told_from_branch_names() {
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("main"));
        assert!(!is_commit("v1.0"));
    }

    #[test]
    fn the_hub_hash_comes_from_lfs_or_the_blob_id() {
        let lfs: Sibling = serde_json::from_str(
            r#"{"rfilename":"a.bin","size":134,"blobId":"ce013625030ba8dba906f756967f9e9ca394464a",
                "lfs":{"sha256":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","size":6,"pointerSize":134}}"#,
        )
        .unwrap();
        assert_eq!(lfs.size(), Some(6));
        assert!(matches!(lfs.expected(), Some(BlobName::Sha256(_))));
        let small: Sibling =
            serde_json::from_str(r#"{"rfilename":"c.json","blobId":"ce013625030ba8dba906f756967f9e9ca394464a"}"#)
                .unwrap();
        assert_eq!(small.size(), None);
        assert!(matches!(small.expected(), Some(BlobName::GitSha1(_))));
    }
}
