//! The optional NSFW filter: Stable Diffusion's safety checker (a CLIP vision tower whose image
//! embedding is compared with fixed concept embeddings), used when the model folder has
//! `safety_checker/` and the filter is switched on. A flagged image is replaced by black, as
//! diffusers does.
//!
//! Two forms are read. The real SD 1.5 repositories ship the checker as PyTorch weights
//! (`config.json` + `model.safetensors`); their CLIP vision tower runs on OpenVINO as a graph we
//! write over the mapped file (`clip`, `graph`), with the concept comparison in `concepts`. An OpenVINO export of the whole checker (`openvino_model.xml`, as
//! optimum makes it) runs on OpenVINO (`ir`) and is preferred when both are present.

mod clip;
pub mod concepts;
mod graph;
mod ir;
mod preprocess;

pub use concepts::Verdict;
pub use preprocess::{resize_bicubic, ClipPreprocess};

use super::image_file::RgbImage;
use crate::inference::InferenceError;
use openvino::Core;
use std::path::Path;

/// The files a checker is made from, relative to the model folder: what a download fetches.
pub const FILES: [&str; 5] = [
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "safety_checker/openvino_model.xml",
    "safety_checker/openvino_model.bin",
    "feature_extractor/preprocessor_config.json",
];

enum Backend {
    Ir(ir::IrChecker),
    Clip(Box<clip::ClipChecker>),
}

pub struct SafetyChecker {
    backend: Backend,
    pre: ClipPreprocess,
}

impl SafetyChecker {
    /// The checker in `dir/safety_checker`, or `None` when the folder has none.
    pub fn load(core: &mut Core, dir: &Path, device: &str) -> Result<Option<Self>, InferenceError> {
        let folder = dir.join("safety_checker");
        let backend = if folder.join("openvino_model.xml").is_file() {
            Backend::Ir(ir::IrChecker::load(core, dir, device)?)
        } else if folder.join("model.safetensors").is_file() {
            Backend::Clip(Box::new(clip::ClipChecker::load(&folder)?))
        } else if folder.is_dir() {
            return Err(InferenceError::MissingFiles {
                dir: folder,
                files: vec!["model.safetensors and config.json, or openvino_model.xml".into()],
            });
        } else {
            return Ok(None);
        };
        let pre = ClipPreprocess::load(dir)?;
        Ok(Some(SafetyChecker { backend, pre }))
    }

    /// Which form runs: "openvino" or "safetensors".
    pub fn form(&self) -> &'static str {
        match self.backend {
            Backend::Ir(_) => "openvino",
            Backend::Clip(_) => "safetensors",
        }
    }

    /// Whether the checker flags `image`.
    pub fn flags(&mut self, image: &RgbImage) -> Result<bool, InferenceError> {
        let clip_input = self.pre.apply(image);
        match &mut self.backend {
            Backend::Ir(checker) => checker.flags(&clip_input, self.pre.crop, image),
            Backend::Clip(checker) => Ok(checker.judge(&clip_input, self.pre.crop)?.nsfw),
        }
    }

    /// The concept scores for a prepared `clip_input` [3, h, w] (the safetensors form only: the
    /// OpenVINO export gives the decision alone).
    pub fn judge(&mut self, clip_input: &[f32], size: (u32, u32)) -> Result<Option<Verdict>, InferenceError> {
        match &mut self.backend {
            Backend::Ir(_) => Ok(None),
            Backend::Clip(checker) => checker.judge(clip_input, size).map(Some),
        }
    }
}
