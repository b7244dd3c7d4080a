//! The checker from the weights the real repositories ship (`safety_checker/config.json` and
//! `model.safetensors`, diffusers' `StableDiffusionSafetyChecker`): the CLIP vision tower and its
//! projection built as an OpenVINO graph over the mapped safetensors file (`graph`), then the
//! concept comparison in Rust (`concepts`). No Python, no copy of the weights.
//!
//! It runs at f32, as diffusers does: the decision compares scores rounded to three decimals with
//! zero, and lower precision could move a picture across that line.

use super::concepts::{Concepts, Verdict};
use super::graph::{self, Stored, Tower};
use crate::inference::{f32_tensor, InferenceError, OvContext};
use openvino::{CompiledModel, DeviceType, InferRequest};
use serde_json::Value;
use std::{collections::HashMap, io::Read, path::Path};

/// Room after the file for the graph's small constants (shapes, axes): ~40 bytes per layer.
const TAIL_BYTES: usize = 1 << 16;

pub struct ClipChecker {
    // Dropped in this order: the request and the compiled model before the weights they read.
    request: InferRequest,
    _compiled: CompiledModel,
    _weights: Option<crate::inference::weights::ExtendedWeights>,
    concepts: Concepts,
    image_size: u32,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> InferenceError {
    InferenceError::BadModel(format!("{}: {what}", path.display()))
}

/// The header of the safetensors file at `path`, read without the weights.
fn header_of(path: &Path) -> Result<(HashMap<String, Stored>, usize), InferenceError> {
    let io = |e: std::io::Error| bad(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len() as usize;
    let mut start = [0u8; 8];
    file.read_exact(&mut start).map_err(|_| bad(path, "not a safetensors file (too short)"))?;
    let len = graph::header_len(&start).ok_or_else(|| bad(path, "not a safetensors file (no header)"))?;
    let mut head = start.to_vec();
    head.resize(len.min(file_len), 0);
    file.read_exact(&mut head[8..]).map_err(io)?;
    Ok((graph::read_header(&head, file_len).map_err(|e| bad(path, e))?, file_len))
}

/// A stored tensor's values as f32 (F32, F16 or BF16).
fn values(bytes: &[u8], stored: &Stored) -> Result<Vec<f32>, String> {
    let data = bytes.get(stored.offset..stored.offset + stored.size).ok_or("outside the file")?;
    match stored.dtype.as_str() {
        "F32" => Ok(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        "F16" => Ok(data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        "BF16" => Ok(data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        other => Err(format!("{other} values (only F32, F16 and BF16 are read)")),
    }
}

impl ClipChecker {
    #[cfg(unix)]
    pub fn load(folder: &Path) -> Result<Self, InferenceError> {
        let config_path = folder.join("config.json");
        let weights_path = folder.join("model.safetensors");
        let text = std::fs::read_to_string(&config_path).map_err(|_| InferenceError::MissingFiles {
            dir: folder.to_path_buf(),
            files: vec!["config.json".into()],
        })?;
        let config: Value = serde_json::from_str(&text).map_err(|e| bad(&config_path, e))?;
        let tower = vision_config(&config).map_err(|e| bad(&config_path, e))?;
        let (tensors, _) = header_of(&weights_path)?;
        let shape_of = |name: &str| {
            tensors.get(name).map(|t| t.shape.clone()).ok_or_else(|| bad(&weights_path, format!("no tensor {name}")))
        };
        let projection = match shape_of("visual_projection.weight")?[..] {
            [dim, hidden] if hidden == tower.hidden as i64 => dim,
            ref other => {
                return Err(bad(
                    &weights_path,
                    format!("visual_projection.weight: shape {other:?}, the tower gives {}", tower.hidden),
                ))
            }
        };

        let mut weights = crate::inference::weights::ExtendedWeights::map(&weights_path, TAIL_BYTES)?;
        let (xml, tail) =
            graph::build(&tensors, &tower, projection, weights.tail_offset).map_err(|e| bad(&weights_path, e))?;
        let (file, room) = weights.split_mut();
        if tail.len() > room.len() {
            return Err(bad(
                &weights_path,
                format!("the graph's constants need {} bytes, {} reserved", tail.len(), room.len()),
            ));
        }
        room[..tail.len()].copy_from_slice(&tail);
        let read = |name: &str| {
            let stored = tensors.get(name).ok_or_else(|| bad(&weights_path, format!("no tensor {name}")))?;
            values(file, stored).map_err(|e| bad(&weights_path, format!("{name}: {e}")))
        };
        let concepts = Concepts::new(
            (&read("special_care_embeds")?, &read("special_care_embeds_weights")?),
            (&read("concept_embeds")?, &read("concept_embeds_weights")?),
            projection as usize,
        )
        .map_err(|e| bad(&weights_path, e))?;

        let mut core = crate::inference::new_core()?;
        crate::inference::configure_device(
            &mut core,
            "CPU",
            &[("INFERENCE_PRECISION_HINT".into(), "f32".into())],
            None,
        )?;
        let model = core
            .read_model_from_buffer(xml.as_bytes(), Some(weights.tensor()?))
            .ov(|| format!("building the safety checker's graph from {}", weights_path.display()))?;
        let mut compiled = core.compile_model(&model, DeviceType::CPU).ov(|| "compiling the safety checker".into())?;
        let request = compiled.create_infer_request().ov(|| "creating a safety checker request".into())?;
        // The compiled model keeps what it needs; the file's pages can go (read again if touched).
        weights.release_file_pages();
        Ok(ClipChecker {
            request,
            _compiled: compiled,
            _weights: Some(weights),
            concepts,
            image_size: tower.image as u32,
        })
    }

    #[cfg(not(unix))]
    pub fn load(folder: &Path) -> Result<Self, InferenceError> {
        Err(bad(folder, "the safetensors safety checker needs a Unix system (its weights are mapped)"))
    }

    /// Scores and decision for one `clip_input` [3, h, w] (normalised pixels).
    pub fn judge(&mut self, clip_input: &[f32], (h, w): (u32, u32)) -> Result<Verdict, InferenceError> {
        if (h, w) != (self.image_size, self.image_size) {
            return Err(InferenceError::BadModel(format!(
                "the safety checker takes {0}×{0} inputs, the feature extractor makes {h}×{w}",
                self.image_size
            )));
        }
        let input = f32_tensor(&[1, 3, h as i64, w as i64], clip_input)?;
        self.request.set_input_tensor(&input).ov(|| "setting the safety checker's input".into())?;
        self.request.infer().ov(|| "running the safety checker".into())?;
        let output = self.request.get_output_tensor_by_index(0).ov(|| "reading the image embedding".into())?;
        let embed = output.get_data::<f32>().ov(|| "reading the image embedding".into())?;
        Ok(self.concepts.judge(embed))
    }
}

/// The vision tower's settings: transformers' CLIPVisionConfig defaults, overridden by the file's
/// `vision_config` and then by `vision_config_dict` (older files, such as CompVis's checker,
/// carry the real values there).
fn vision_config(config: &Value) -> Result<Tower, String> {
    let pick =
        |key: &str| config["vision_config_dict"].get(key).filter(|v| !v.is_null()).or(config["vision_config"].get(key));
    let number = |key: &str, default: usize| match pick(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .map(|n| n as usize)
            .filter(|&n| n > 0)
            .ok_or(format!("vision_config.{key}: {v} is not a positive whole number")),
    };
    match pick("hidden_act").and_then(Value::as_str) {
        None | Some("quick_gelu") => {}
        Some(other) => {
            return Err(format!("vision_config.hidden_act: {other} (only quick_gelu, CLIP's, is supported)"))
        }
    }
    if let Some(eps) = pick("layer_norm_eps").and_then(Value::as_f64) {
        if (eps - 1e-5).abs() > 1e-12 {
            return Err(format!("vision_config.layer_norm_eps: {eps} (only 1e-5, CLIP's, is supported)"));
        }
    }
    if number("num_channels", 3)? != 3 {
        return Err("vision_config.num_channels: only 3 (RGB) is supported".into());
    }
    let c = Tower {
        hidden: number("hidden_size", 768)?,
        intermediate: number("intermediate_size", 3072)?,
        layers: number("num_hidden_layers", 12)?,
        heads: number("num_attention_heads", 12)?,
        image: number("image_size", 224)?,
        patch: number("patch_size", 32)?,
    };
    if !c.hidden.is_multiple_of(c.heads) || !c.image.is_multiple_of(c.patch) {
        return Err(format!(
            "vision_config: hidden_size {} over {} heads, image_size {} over patch_size {} do not fit",
            c.hidden, c.heads, c.image, c.patch
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_vision_config_dict_of_older_files_wins_and_defaults_fill_the_rest() {
        // CompVis's checker: a near-empty vision_config, the real values in vision_config_dict.
        let c = vision_config(&json!({
            "vision_config": {"hidden_size": 768, "hidden_act": "quick_gelu"},
            "vision_config_dict": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                                   "num_hidden_layers": 24, "patch_size": 14}
        }))
        .unwrap();
        assert_eq!((c.hidden, c.intermediate, c.heads), (1024, 4096, 16));
        assert_eq!((c.layers, c.patch, c.image), (24, 14, 224));
    }

    #[test]
    fn unsupported_settings_are_named() {
        let err = vision_config(&json!({"vision_config": {"hidden_act": "gelu"}})).unwrap_err();
        assert!(err.contains("hidden_act") && err.contains("quick_gelu"), "{err}");
        let err =
            vision_config(&json!({"vision_config": {"hidden_size": 100, "num_attention_heads": 16}})).unwrap_err();
        assert!(err.contains("hidden_size 100"), "{err}");
        let err = vision_config(&json!({"vision_config": {"patch_size": "big"}})).unwrap_err();
        assert!(err.contains("patch_size"), "{err}");
    }
}
