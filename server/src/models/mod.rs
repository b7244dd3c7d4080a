//! Which models Duet uses, where their files are, and what state each is in.
//! Files live either in a local folder or in `MODELS_DIR` in the Hugging Face hub cache layout
//! (`models--Owner--Name/snapshots/<commit>/…`), so files other tools fetched are reused.

pub mod auto;
pub mod hub;
pub mod loader;
pub mod manifest;
pub mod progress;
mod spec;
pub mod transfer;

use app::types::{DownloadProgress, EngineActivity, ModelHealth, ModelRole, ModelState};
pub use spec::ModelSpec;
use std::{
    path::{Path, PathBuf},
    sync::{OnceLock, RwLock},
};

/// The `device` of a model answered by Duet workers, or by an OpenAI-compatible endpoint.
pub const DEVICE_WORKERS: &str = "workers";
pub const DEVICE_ENDPOINT: &str = "endpoint";

/// One configured model and its current state; shared between the loader, the downloader and
/// `/health`.
pub struct ModelSlot {
    pub role: ModelRole,
    pub spec: ModelSpec,
    /// Branch, tag or commit of a hub repository (`main` by default).
    pub revision: String,
    pub device: String,
    status: RwLock<Status>,
    /// Reads the running engine's activity (the chat engine's, once started).
    activity: OnceLock<ActivityReader>,
}

type ActivityReader = Box<dyn Fn() -> EngineActivity + Send + Sync>;

#[derive(Clone, Debug)]
struct Status {
    state: ModelState,
    path: Option<PathBuf>,
    detail: Option<String>,
    download: Option<DownloadProgress>,
}

impl Status {
    fn new(state: ModelState, path: Option<PathBuf>, detail: Option<String>) -> Status {
        Status { state, path, detail, download: None }
    }
}

impl ModelSlot {
    /// A slot whose files have been looked for in `models_dir` (or the local folder). A partial
    /// download (a file missing, or shorter than its manifest says) counts as missing.
    pub fn locate(role: ModelRole, spec: ModelSpec, revision: &str, device: &str, models_dir: &Path) -> ModelSlot {
        let status = match find_files(&spec, revision, models_dir) {
            Some(path) => {
                let mut missing = crate::inference::missing_files(&path, required_files(role));
                if let ModelSpec::Repo(repo) = &spec {
                    let commit = path.file_name().and_then(|c| c.to_str()).unwrap_or_default();
                    if let Some(manifest) = manifest::Manifest::load(models_dir, repo, commit) {
                        let problems = manifest.size_problems(&path);
                        missing.extend(problems.into_iter().map(|(file, problem)| format!("{file} ({problem})")));
                    }
                }
                if missing.is_empty() {
                    Status::new(ModelState::Loading, Some(path), None)
                } else {
                    let detail = format!("missing files: {}", missing.join(", "));
                    // Files of a hub repository can be fetched again; a local folder's cannot.
                    let state =
                        if matches!(spec, ModelSpec::Repo(_)) { ModelState::Missing } else { ModelState::Error };
                    Status::new(state, Some(path), Some(detail))
                }
            }
            None => Status::new(
                ModelState::Missing,
                None,
                Some(format!(
                    "not in {}; run `server download-models`, start with AUTO_DOWNLOAD_MODELS=true, \
                     or set {} to a local model folder",
                    models_dir.display(),
                    env_name(role)
                )),
            ),
        };
        ModelSlot {
            role,
            spec,
            revision: revision.to_string(),
            device: device.to_string(),
            status: RwLock::new(status),
            activity: OnceLock::new(),
        }
    }

    /// A slot answered by a mock engine: nothing to load.
    pub fn mock(role: ModelRole, spec: ModelSpec) -> ModelSlot {
        ModelSlot::elsewhere(role, spec, "mock")
    }

    /// A slot whose engine needs nothing loaded here (a mock, workers, an endpoint); `device`
    /// says which.
    pub fn elsewhere(role: ModelRole, spec: ModelSpec, device: &str) -> ModelSlot {
        let status = Status::new(ModelState::Ready, None, None);
        ModelSlot {
            role,
            spec,
            revision: "main".into(),
            device: device.into(),
            status: RwLock::new(status),
            activity: OnceLock::new(),
        }
    }

    /// Whether workers or endpoints answer for this model (its state follows them).
    pub fn answered_elsewhere(&self) -> bool {
        matches!(self.device.as_str(), DEVICE_WORKERS | DEVICE_ENDPOINT)
    }

    pub fn state(&self) -> ModelState {
        self.read().state
    }

    /// The folder to load from, when the files were found.
    pub fn path(&self) -> Option<PathBuf> {
        self.read().path.clone()
    }

    /// The hub repository to fetch, when this model is one and its files are not all there.
    pub fn to_download(&self) -> Option<&str> {
        match &self.spec {
            ModelSpec::Repo(repo) if self.state() == ModelState::Missing => Some(repo),
            _ => None,
        }
    }

    pub fn set_downloading(&self, progress: DownloadProgress) {
        let mut s = self.write();
        s.state = ModelState::Downloading;
        s.detail = None;
        s.download = Some(progress);
    }

    /// The files are all in `path`: next, the engine loads them.
    pub fn set_found(&self, path: PathBuf) {
        let mut s = self.write();
        s.state = ModelState::Loading;
        s.path = Some(path);
        s.detail = None;
        s.download = None;
    }

    pub fn set_ready(&self) {
        let mut s = self.write();
        s.state = ModelState::Ready;
        s.detail = None;
    }

    pub fn set_error(&self, detail: String) {
        let mut s = self.write();
        s.state = ModelState::Error;
        s.detail = Some(detail);
        s.download = None;
    }

    pub fn health(&self) -> ModelHealth {
        let s = self.read();
        ModelHealth {
            role: self.role,
            id: self.spec.to_string(),
            path: s.path.as_ref().map(|p| p.display().to_string()),
            state: s.state,
            device: self.device.clone(),
            detail: s.detail.clone(),
            progress: s.download.as_ref().map(DownloadProgress::fraction),
            download: s.download.clone(),
            engine: self.activity.get().map(|read| read()),
            settings: None,
        }
    }

    /// Where `/health` reads the running engine's activity from.
    pub fn watch_engine(&self, read: impl Fn() -> EngineActivity + Send + Sync + 'static) {
        let _ = self.activity.set(Box::new(read));
    }

    // A poisoned lock only means a writer panicked mid-update of plain data; keep serving it.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Status> {
        self.status.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Status> {
        self.status.write().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn env_name(role: ModelRole) -> &'static str {
    match role {
        ModelRole::Llm => "LLM_MODEL",
        ModelRole::Sd => "SD_MODEL",
    }
}

pub fn required_files(role: ModelRole) -> &'static [&'static str] {
    match role {
        ModelRole::Llm => crate::inference::llm::REQUIRED_FILES,
        ModelRole::Sd => crate::inference::diffusion::REQUIRED_FILES,
    }
}

/// The folder holding a model's files, if present.
pub fn find_files(spec: &ModelSpec, revision: &str, models_dir: &Path) -> Option<PathBuf> {
    match spec {
        ModelSpec::Local(dir) => dir.is_dir().then(|| dir.clone()),
        ModelSpec::Repo(id) => snapshot_dir(models_dir, id, revision),
    }
}

/// `models--Owner--Name` for `Owner/Name`, as huggingface_hub names cache folders.
pub fn cache_folder_name(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

/// The snapshot the revision points at; for `main` without a ref (a cache copied by hand), the
/// most recently written snapshot.
fn snapshot_dir(models_dir: &Path, repo_id: &str, revision: &str) -> Option<PathBuf> {
    if let Some(commit) = hub::local_commit(models_dir, repo_id, revision) {
        let dir = hub::snapshot_path(models_dir, repo_id, &commit);
        if dir.is_dir() {
            return Some(dir);
        }
    }
    if revision != "main" {
        return None;
    }
    let snapshots = models_dir.join(cache_folder_name(repo_id)).join("snapshots");
    std::fs::read_dir(&snapshots)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// Repositories present in the cache (`Owner/Name`), sorted.
pub fn cached_repos(models_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return Vec::new();
    };
    let mut repos: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("snapshots").is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_prefix("models--")?.to_string();
            let (owner, repo) = name.split_once("--")?;
            Some(format!("{owner}/{repo}"))
        })
        .collect();
    repos.sort();
    repos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(models_dir: &Path, repo: &str, commit: &str, files: &[&str]) -> PathBuf {
        let snap = models_dir.join(cache_folder_name(repo)).join("snapshots").join(commit);
        for f in files {
            let p = snap.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let refs = models_dir.join(cache_folder_name(repo)).join("refs");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join("main"), commit).unwrap();
        snap
    }

    #[test]
    fn repo_ids_map_to_the_hub_cache_layout() {
        let dir = tempfile::tempdir().unwrap();
        let repo = "OpenVINO/DeepSeek-R1-Distill-Qwen-1.5B-int4-cw-ov";
        assert_eq!(cache_folder_name(repo), "models--OpenVINO--DeepSeek-R1-Distill-Qwen-1.5B-int4-cw-ov");
        assert_eq!(find_files(&ModelSpec::Repo(repo.into()), "main", dir.path()), None);
        let snap = cache_with(dir.path(), repo, "abc123", crate::inference::llm::REQUIRED_FILES);
        assert_eq!(find_files(&ModelSpec::Repo(repo.into()), "main", dir.path()), Some(snap));
        assert_eq!(cached_repos(dir.path()), vec![repo.to_string()]);
    }

    #[test]
    fn slot_states_follow_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec::Repo("OpenVINO/stable-diffusion-v1-5-int8-ov".into());
        let slot = ModelSlot::locate(ModelRole::Sd, spec.clone(), "main", "CPU", dir.path());
        assert_eq!(slot.state(), ModelState::Missing);
        assert!(slot.health().detail.unwrap().contains("SD_MODEL"));

        cache_with(dir.path(), "OpenVINO/stable-diffusion-v1-5-int8-ov", "c1", &["model_index.json"]);
        let slot = ModelSlot::locate(ModelRole::Sd, spec.clone(), "main", "CPU", dir.path());
        assert_eq!(slot.state(), ModelState::Missing, "a partial snapshot can be fetched again");
        assert!(slot.health().detail.unwrap().contains("unet/openvino_model.xml"));

        cache_with(
            dir.path(),
            "OpenVINO/stable-diffusion-v1-5-int8-ov",
            "c1",
            crate::inference::diffusion::REQUIRED_FILES,
        );
        let slot = ModelSlot::locate(ModelRole::Sd, spec, "main", "CPU", dir.path());
        assert_eq!(slot.state(), ModelState::Loading);
        slot.set_ready();
        assert_eq!(slot.health().state, ModelState::Ready);
    }
}
