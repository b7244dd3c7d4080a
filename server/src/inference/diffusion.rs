//! The image model: an OpenVINO export of Stable Diffusion 1.5 (text encoder, UNet, VAE decoder).

use super::{compile, input_type, int_tensor, require_files, InferenceError, OvContext};
use openvino::{CompiledModel, Core};
use std::path::{Path, PathBuf};

/// Files an exported Stable Diffusion folder must hold (as in `OpenVINO/stable-diffusion-v1-5-int8-ov`).
pub const REQUIRED_FILES: &[&str] = &[
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "text_encoder/openvino_model.xml",
    "text_encoder/openvino_model.bin",
    "unet/openvino_model.xml",
    "unet/openvino_model.bin",
    "vae_decoder/openvino_model.xml",
    "vae_decoder/openvino_model.bin",
];

pub struct SdModels {
    pub dir: PathBuf,
    text_encoder: CompiledModel,
    // The denoising loop (unet, vae_decoder) is driven by the image engine.
    #[allow(dead_code)]
    unet: CompiledModel,
    #[allow(dead_code)]
    vae_decoder: CompiledModel,
}

/// A float tensor copied out of OpenVINO.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl SdModels {
    pub fn load(core: &mut Core, dir: &Path, device: &str) -> Result<Self, InferenceError> {
        require_files(dir, REQUIRED_FILES)?;
        Ok(SdModels {
            dir: dir.to_path_buf(),
            text_encoder: compile(core, &dir.join("text_encoder"), "openvino_model", device)?,
            unet: compile(core, &dir.join("unet"), "openvino_model", device)?,
            vae_decoder: compile(core, &dir.join("vae_decoder"), "openvino_model", device)?,
        })
    }

    /// CLIP text encoder: token ids (already padded to 77) → `last_hidden_state` [1, 77, hidden].
    pub fn encode_text(&mut self, ids: &[i64]) -> Result<FloatArray, InferenceError> {
        let mut request = self.text_encoder.create_infer_request().ov(|| "creating a text encoder request".into())?;
        let element = input_type(&self.text_encoder, "input_ids")?;
        let tensor = int_tensor(element, &[1, ids.len() as i64], ids)?;
        request.set_tensor("input_ids", &tensor).ov(|| "setting input_ids".into())?;
        request.infer().ov(|| "running the text encoder".into())?;
        let out = request.get_tensor("last_hidden_state").ov(|| "reading last_hidden_state".into())?;
        let shape = out.get_shape().ov(|| "reading its shape".into())?;
        Ok(FloatArray {
            shape: shape.get_dimensions().iter().map(|&d| d as usize).collect(),
            data: out.get_data::<f32>().ov(|| "reading last_hidden_state".into())?.to_vec(),
        })
    }
}
