//! A Stable Diffusion folder as exported by optimum-intel (`OpenVINO/stable-diffusion-v1-5-int8-ov`):
//! which files must be there, and the settings read from its JSON files.

use super::scheduler::{SchedulerConfig, SchedulerKind};
use crate::inference::{require_files, InferenceError};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Files an exported Stable Diffusion folder must hold (besides one of the tokenizer forms).
pub const REQUIRED_FILES: &[&str] = &[
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/openvino_model.xml",
    "text_encoder/openvino_model.bin",
    "unet/openvino_model.xml",
    "unet/openvino_model.bin",
    "vae_decoder/openvino_model.xml",
    "vae_decoder/openvino_model.bin",
];

/// The tokenizer comes as `tokenizer.json`, or as `vocab.json` + `merges.txt`.
const TOKENIZER_FORMS: [&[&str]; 2] =
    [&["tokenizer/tokenizer.json"], &["tokenizer/vocab.json", "tokenizer/merges.txt"]];

#[derive(Clone, Debug)]
pub struct SdFiles {
    pub dir: PathBuf,
    /// The folder name, written into PNG metadata as the model.
    pub name: String,
    pub scheduler_config: SchedulerConfig,
    /// The scheduler `scheduler_config.json` names (used when a request names none).
    pub default_scheduler: SchedulerKind,
    pub latent_channels: usize,
    pub text_hidden_size: usize,
    pub vae_scaling_factor: f64,
}

impl SdFiles {
    pub fn open(dir: &Path) -> Result<Self, InferenceError> {
        require_files(dir, REQUIRED_FILES)?;
        if !TOKENIZER_FORMS.iter().any(|form| form.iter().all(|f| dir.join(f).is_file())) {
            return Err(InferenceError::MissingFiles {
                dir: dir.to_path_buf(),
                files: vec!["tokenizer/tokenizer.json (or tokenizer/vocab.json and tokenizer/merges.txt)".into()],
            });
        }
        let scheduler_path = dir.join("scheduler/scheduler_config.json");
        let scheduler_config = std::fs::read_to_string(&scheduler_path)
            .map_err(|e| e.to_string())
            .and_then(|t| SchedulerConfig::from_json(&t).map_err(|e| e.to_string()))
            .map_err(|e| InferenceError::BadModel(format!("{}: {e}", scheduler_path.display())))?;
        let class = scheduler_config.class_name.clone().unwrap_or_default();
        let default_scheduler = SchedulerKind::from_class_name(&class).unwrap_or_else(|| {
            tracing::warn!(%class, "scheduler class not offered; defaulting to PNDM with its config");
            SchedulerKind::Pndm
        });
        json(dir, "model_index.json")?;
        let unet = optional_json(dir, "unet/config.json")?;
        let text = optional_json(dir, "text_encoder/config.json")?;
        let vae = optional_json(dir, "vae_decoder/config.json")?;
        Ok(SdFiles {
            dir: dir.to_path_buf(),
            name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            scheduler_config,
            default_scheduler,
            latent_channels: unet["in_channels"].as_u64().unwrap_or(4) as usize,
            text_hidden_size: text["hidden_size"].as_u64().unwrap_or(768) as usize,
            vae_scaling_factor: vae["scaling_factor"].as_f64().unwrap_or(0.18215),
        })
    }
}

fn json(dir: &Path, name: &str) -> Result<Value, InferenceError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| InferenceError::BadModel(format!("{}: {e}", path.display())))
}

/// A config file that may be absent (defaults apply) but must parse when present.
fn optional_json(dir: &Path, name: &str) -> Result<Value, InferenceError> {
    if dir.join(name).is_file() {
        json(dir, name)
    } else {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in REQUIRED_FILES {
            write(dir.path(), f, "{}");
        }
        write(dir.path(), "tokenizer/vocab.json", "{}");
        write(dir.path(), "tokenizer/merges.txt", "");
        write(
            dir.path(),
            "scheduler/scheduler_config.json",
            r#"{"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear", "steps_offset": 1}"#,
        );
        dir
    }

    #[test]
    fn reads_settings_with_defaults() {
        let dir = folder();
        write(dir.path(), "vae_decoder/config.json", r#"{"scaling_factor": 0.13025}"#);
        let files = SdFiles::open(dir.path()).unwrap();
        assert_eq!(files.default_scheduler, SchedulerKind::Euler);
        assert_eq!(files.scheduler_config.steps_offset, 1);
        assert_eq!((files.latent_channels, files.text_hidden_size), (4, 768));
        assert_eq!(files.vae_scaling_factor, 0.13025);
    }

    #[test]
    fn missing_or_broken_files_are_named() {
        let dir = folder();
        std::fs::remove_file(dir.path().join("unet/openvino_model.bin")).unwrap();
        std::fs::remove_file(dir.path().join("tokenizer/merges.txt")).unwrap();
        let err = SdFiles::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unet/openvino_model.bin"), "{err}");
        write(dir.path(), "unet/openvino_model.bin", "");
        let err = SdFiles::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tokenizer/merges.txt"), "{err}");
        write(dir.path(), "tokenizer/tokenizer.json", "{}");
        write(dir.path(), "scheduler/scheduler_config.json", r#"{"beta_schedule": "cubic"}"#);
        let err = SdFiles::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("scheduler_config.json") && err.contains("cubic"), "{err}");
    }
}
