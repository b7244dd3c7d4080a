//! Which models run, where they come from, and the OpenVINO runtime that runs them.

use super::{parse_bool, Secret};
use crate::{inference::runtime::RuntimeSearch, models::ModelSpec};
use clap::{ArgAction, Args};
use std::path::PathBuf;

/// The default chat model: DeepSeek-R1-Distill-Qwen-1.5B, INT4 channel-wise, exported for OpenVINO.
pub const DEFAULT_LLM_MODEL: &str = "OpenVINO/DeepSeek-R1-Distill-Qwen-1.5B-int4-cw-ov";
/// The default image model: Stable Diffusion 1.5, INT8, exported for OpenVINO.
pub const DEFAULT_SD_MODEL: &str = "OpenVINO/stable-diffusion-v1-5-int8-ov";

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Models")]
pub struct ModelsConfig {
    /// Chat model: a Hugging Face repo id or a local model directory.
    #[arg(long, env = "LLM_MODEL", default_value = DEFAULT_LLM_MODEL,
          value_parser = |s: &str| ModelSpec::parse("LLM_MODEL", s), global = true)]
    pub llm_model: ModelSpec,

    /// Image model: a Hugging Face repo id or a local model directory.
    #[arg(long, env = "SD_MODEL", default_value = DEFAULT_SD_MODEL,
          value_parser = |s: &str| ModelSpec::parse("SD_MODEL", s), global = true)]
    pub sd_model: ModelSpec,

    /// Answer with deterministic mock engines instead of running the models (true/false).
    #[arg(long, env = "USE_MOCKS", default_value = "false", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("USE_MOCKS", s), global = true)]
    pub use_mocks: bool,

    /// Model cache in the Hugging Face hub layout (default `DATA_DIR/models`).
    #[arg(long, env = "MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,

    /// Fetch missing model files from Hugging Face at start-up (true/false).
    #[arg(long, env = "AUTO_DOWNLOAD_MODELS", default_value = "false", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("AUTO_DOWNLOAD_MODELS", s), global = true)]
    pub auto_download_models: bool,

    /// Access token for gated or private Hugging Face repositories.
    #[arg(long, env = "HUGGINGFACE_TOKEN", hide_env_values = true, global = true)]
    pub huggingface_token: Option<Secret>,

    /// The hub to download from: Hugging Face, or a mirror that serves the same API.
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co", global = true,
          value_parser = parse_endpoint)]
    pub hf_endpoint: String,

    /// Never contact the hub: use only what is in MODELS_DIR (true/false, or 1/0).
    #[arg(long, env = "HF_HUB_OFFLINE", default_value = "false", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("HF_HUB_OFFLINE", s), global = true)]
    pub hf_hub_offline: bool,

    /// Revision of LLM_MODEL to download and run: a branch, a tag or a commit id.
    #[arg(long, env = "LLM_REVISION", default_value = "main", global = true,
          value_parser = |s: &str| parse_revision("LLM_REVISION", s))]
    pub llm_revision: String,

    /// Revision of SD_MODEL to download and run: a branch, a tag or a commit id.
    #[arg(long, env = "SD_REVISION", default_value = "main", global = true,
          value_parser = |s: &str| parse_revision("SD_REVISION", s))]
    pub sd_revision: String,

    /// OpenVINO device that runs the models.
    #[arg(long, env = "DEVICE", default_value = "CPU", value_parser = ["CPU", "GPU", "NPU", "AUTO"],
          global = true)]
    pub device: String,

    /// Where OpenVINO keeps compiled models so the next start is fast (default `MODELS_DIR/cache`).
    #[arg(long, env = "OPENVINO_CACHE_DIR", global = true)]
    pub openvino_cache_dir: Option<PathBuf>,

    /// Folder holding `libopenvino_c.so*`; when unset: INTEL_OPENVINO_DIR, system paths, then `.openvino/`.
    #[arg(long, env = "OPENVINO_LIB_DIR", global = true)]
    pub openvino_lib_dir: Option<PathBuf>,

    /// OpenVINO install root, as set by OpenVINO's `setupvars.sh`.
    #[arg(long, env = "INTEL_OPENVINO_DIR", global = true)]
    pub intel_openvino_dir: Option<PathBuf>,

    /// Put OpenVINO's model buffers on transparent huge pages (glibc's `glibc.malloc.hugetlb`
    /// tunable; the server starts itself again once to set it): faster decoding and UNet steps,
    /// a slower start (true/false).
    #[arg(long, env = "HUGE_PAGES", default_value = "true", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("HUGE_PAGES", s), global = true)]
    pub huge_pages: bool,
}

impl ModelsConfig {
    /// Where to look for the OpenVINO runtime: the configured folders, the system's, and a
    /// project-local `.openvino/` above the working directory or the executable.
    pub fn runtime_search(&self) -> RuntimeSearch {
        let mut project_roots = Vec::new();
        project_roots.extend(std::env::current_dir().ok());
        project_roots.extend(std::env::current_exe().ok().and_then(|e| e.parent().map(|p| p.to_path_buf())));
        RuntimeSearch {
            explicit_dir: self.openvino_lib_dir.clone(),
            intel_openvino_dir: self.intel_openvino_dir.clone(),
            system_paths: true,
            project_roots,
        }
    }
}

/// The hub's address: https, or plain http only to this machine (a mirror over http anywhere
/// else could be answered by anyone on the way, and its answers name the files we write).
fn parse_endpoint(value: &str) -> Result<String, String> {
    let value = value.trim().trim_end_matches('/');
    let lower = value.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").unwrap_or(("", ""));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || !matches!(scheme, "http" | "https") {
        return Err("HF_ENDPOINT: expected an http:// or https:// address, e.g. https://huggingface.co \
                    (plain http only to this machine)"
            .into());
    }
    if scheme == "http" && !crate::hosts::is_loopback_host(host) {
        return Err(format!(
            "HF_ENDPOINT: {value} is plain http to another machine; use https (http is accepted only for \
             localhost and loopback addresses)"
        ));
    }
    Ok(value.to_string())
}

/// A branch, tag or commit: it names a file under `refs/`, so it must stay a plain relative path.
pub fn parse_revision(variable: &str, value: &str) -> Result<String, String> {
    if crate::models::transfer::safe_relative_path(value) {
        Ok(value.to_string())
    } else {
        Err(format!("{variable}: {value:?} is not a branch, tag or commit name (e.g. main, v1.0, or a commit id)"))
    }
}
