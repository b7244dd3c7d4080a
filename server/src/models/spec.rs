//! Where a model comes from: a Hugging Face repository or a local folder (`LLM_MODEL`, `SD_MODEL`).

use std::{fmt, path::PathBuf};

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSpec {
    /// A Hugging Face repository, e.g. `OpenVINO/stable-diffusion-v1-5-int8-ov`.
    Repo(String),
    /// A folder on this machine holding an exported model.
    Local(PathBuf),
}

impl ModelSpec {
    /// An existing directory is local; otherwise the value must look like `owner/name`.
    pub fn parse(variable: &str, value: &str) -> Result<ModelSpec, String> {
        let path = PathBuf::from(value);
        if path.is_dir() {
            return Ok(ModelSpec::Local(path));
        }
        let looks_like_path = value.starts_with(['/', '.', '~']) || value.matches('/').count() > 1;
        if looks_like_path {
            return Err(format!(
                "{variable}: no directory at {value}; expected an existing local model \
                                directory or a Hugging Face repo id like owner/name"
            ));
        }
        if is_repo_id(value) {
            Ok(ModelSpec::Repo(value.to_string()))
        } else {
            Err(format!(
                "{variable}: {value:?} is neither a local directory nor a Hugging Face repo id \
                         (owner/name, letters, digits, '-', '_', '.')"
            ))
        }
    }
}

fn is_repo_id(value: &str) -> bool {
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 96
            && !part.starts_with(['-', '.'])
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(value.split_once('/'), Some((owner, name)) if valid(owner) && valid(name))
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Repo(id) => f.write_str(id),
            ModelSpec::Local(path) => write!(f, "{}", path.display()),
        }
    }
}
