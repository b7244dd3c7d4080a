//! Which models Duet uses, where their files are, and what state each is in.
//! Files live either in a local folder or in `MODELS_DIR` in the Hugging Face hub cache layout
//! (`models--Owner--Name/snapshots/<commit>/…`), so files other tools fetched are reused.

pub mod loader;

use crate::config::ModelSpec;
use app::types::{ModelHealth, ModelRole, ModelState};
use std::{
    path::{Path, PathBuf},
    sync::RwLock,
};

/// One configured model and its current state; shared between the loader and `/health`.
pub struct ModelSlot {
    pub role: ModelRole,
    pub spec: ModelSpec,
    pub device: String,
    status: RwLock<Status>,
}

#[derive(Clone, Debug)]
struct Status {
    state: ModelState,
    path: Option<PathBuf>,
    detail: Option<String>,
    progress: Option<f32>,
}

impl ModelSlot {
    /// A slot whose files have been looked for in `models_dir` (or the local folder).
    pub fn locate(role: ModelRole, spec: ModelSpec, device: &str, models_dir: &Path) -> ModelSlot {
        let status = match find_files(&spec, models_dir) {
            Some(path) => {
                let missing = crate::inference::missing_files(&path, required_files(role));
                if missing.is_empty() {
                    Status { state: ModelState::Loading, path: Some(path), detail: None, progress: None }
                } else {
                    let detail = format!("missing files: {}", missing.join(", "));
                    Status { state: ModelState::Error, path: Some(path), detail: Some(detail), progress: None }
                }
            }
            None => Status {
                state: ModelState::Missing,
                path: None,
                detail: Some(format!(
                    "not in {}; set {} to a local model folder or download it into MODELS_DIR",
                    models_dir.display(),
                    env_name(role)
                )),
                progress: None,
            },
        };
        ModelSlot { role, spec, device: device.to_string(), status: RwLock::new(status) }
    }

    /// A slot answered by a mock engine: nothing to load.
    pub fn mock(role: ModelRole, spec: ModelSpec) -> ModelSlot {
        let status = Status { state: ModelState::Ready, path: None, detail: None, progress: None };
        ModelSlot { role, spec, device: "mock".into(), status: RwLock::new(status) }
    }

    pub fn state(&self) -> ModelState {
        self.read().state
    }

    /// The folder to load from, when the files were found.
    pub fn path(&self) -> Option<PathBuf> {
        self.read().path.clone()
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
            progress: s.progress,
        }
    }

    // A poisoned lock only means a writer panicked mid-update of plain data; keep serving it.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Status> {
        self.status.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Status> {
        self.status.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn env_name(role: ModelRole) -> &'static str {
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
pub fn find_files(spec: &ModelSpec, models_dir: &Path) -> Option<PathBuf> {
    match spec {
        ModelSpec::Local(dir) => dir.is_dir().then(|| dir.clone()),
        ModelSpec::Repo(id) => snapshot_dir(models_dir, id),
    }
}

/// `models--Owner--Name` for `Owner/Name`, as huggingface_hub names cache folders.
pub fn cache_folder_name(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

/// The snapshot `refs/main` points at, else the most recently written snapshot.
fn snapshot_dir(models_dir: &Path, repo_id: &str) -> Option<PathBuf> {
    let repo = models_dir.join(cache_folder_name(repo_id));
    let snapshots = repo.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(commit.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
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
        assert_eq!(find_files(&ModelSpec::Repo(repo.into()), dir.path()), None);
        let snap = cache_with(dir.path(), repo, "abc123", crate::inference::llm::REQUIRED_FILES);
        assert_eq!(find_files(&ModelSpec::Repo(repo.into()), dir.path()), Some(snap));
        assert_eq!(cached_repos(dir.path()), vec![repo.to_string()]);
    }

    #[test]
    fn slot_states_follow_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec::Repo("OpenVINO/stable-diffusion-v1-5-int8-ov".into());
        let slot = ModelSlot::locate(ModelRole::Sd, spec.clone(), "CPU", dir.path());
        assert_eq!(slot.state(), ModelState::Missing);
        assert!(slot.health().detail.unwrap().contains("SD_MODEL"));

        cache_with(dir.path(), "OpenVINO/stable-diffusion-v1-5-int8-ov", "c1", &["model_index.json"]);
        let slot = ModelSlot::locate(ModelRole::Sd, spec.clone(), "CPU", dir.path());
        assert_eq!(slot.state(), ModelState::Error);
        assert!(slot.health().detail.unwrap().contains("unet/openvino_model.xml"));

        cache_with(
            dir.path(),
            "OpenVINO/stable-diffusion-v1-5-int8-ov",
            "c1",
            crate::inference::diffusion::REQUIRED_FILES,
        );
        let slot = ModelSlot::locate(ModelRole::Sd, spec, "CPU", dir.path());
        assert_eq!(slot.state(), ModelState::Loading);
        slot.set_ready();
        assert_eq!(slot.health().state, ModelState::Ready);
    }
}
