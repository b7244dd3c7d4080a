//! The checker from the weights the real repositories ship (`safety_checker/config.json` and
//! `model.safetensors`, diffusers' `StableDiffusionSafetyChecker`): candle's CLIP vision tower
//! (`vision_model.vision_model.*`), the bias-free `visual_projection`, then the concept
//! comparison. The weights are memory-mapped; nothing of Python is needed.

use super::concepts::{Concepts, Verdict};
use crate::inference::InferenceError;
use candle_core::{safetensors::MmapedSafetensors, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::clip::text_model::Activation;
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use serde_json::Value;
use std::path::Path;

pub struct ClipChecker {
    vision: ClipVisionTransformer,
    projection: Linear,
    concepts: Concepts,
    image_size: u32,
}

fn bad(folder: &Path, what: impl std::fmt::Display) -> InferenceError {
    InferenceError::BadModel(format!("{}: {what}", folder.display()))
}

impl ClipChecker {
    pub fn load(folder: &Path) -> Result<Self, InferenceError> {
        let config_path = folder.join("config.json");
        let weights = folder.join("model.safetensors");
        let text = std::fs::read_to_string(&config_path).map_err(|_| InferenceError::MissingFiles {
            dir: folder.to_path_buf(),
            files: vec!["config.json".into()],
        })?;
        let config: Value = serde_json::from_str(&text).map_err(|e| bad(&config_path, e))?;
        let vision = vision_config(&config).map_err(|e| bad(&config_path, e))?;
        let device = Device::Cpu;
        // SAFETY: the file is mapped read-only and not changed while Duet runs (the model folder
        // is ours; a download writes a new file and renames it into place).
        let tensors = unsafe { MmapedSafetensors::new(&weights) }.map_err(|e| bad(&weights, e))?;
        let load = |name: &str| {
            tensors
                .load(name, &device)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| bad(&weights, format!("{name}: {e}")))
        };
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| bad(&weights, e));
        let projection = load("visual_projection.weight")?;
        let (dim, hidden) = projection.dims2().map_err(|e| bad(&weights, format!("visual_projection: {e}")))?;
        if hidden != vision.embed_dim {
            return Err(bad(
                &weights,
                format!("visual_projection takes {hidden} values, the tower gives {}", vision.embed_dim),
            ));
        }
        let concepts = Concepts::new(
            (&flat(&load("special_care_embeds")?)?, &flat(&load("special_care_embeds_weights")?)?),
            (&flat(&load("concept_embeds")?)?, &flat(&load("concept_embeds_weights")?)?),
            dim,
        )
        .map_err(|e| bad(&weights, e))?;
        // SAFETY: as above.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| bad(&weights, e))?;
        let tower = ClipVisionTransformer::new(vb.pp("vision_model").pp("vision_model"), &vision)
            .map_err(|e| bad(&weights, format!("the CLIP vision tower: {e}")))?;
        Ok(ClipChecker {
            vision: tower,
            projection: Linear::new(projection, None),
            concepts,
            image_size: vision.image_size as u32,
        })
    }

    /// Scores and decision for one `clip_input` [3, h, w] (normalised pixels).
    pub fn judge(&self, clip_input: &[f32], (h, w): (u32, u32)) -> Result<Verdict, InferenceError> {
        if (h, w) != (self.image_size, self.image_size) {
            return Err(InferenceError::BadModel(format!(
                "the safety checker takes {0}×{0} inputs, the feature extractor makes {h}×{w}",
                self.image_size
            )));
        }
        let run = || {
            let pixels = Tensor::from_slice(clip_input, (1, 3, h as usize, w as usize), &Device::Cpu)?;
            let pooled = self.vision.forward(&pixels)?;
            self.projection.forward(&pooled)?.flatten_all()?.to_vec1::<f32>()
        };
        let embed = run().map_err(|e| InferenceError::Generation(format!("the safety checker: {e}")))?;
        Ok(self.concepts.judge(&embed))
    }
}

/// The vision tower's settings: transformers' CLIPVisionConfig defaults, overridden by the file's
/// `vision_config` and then by `vision_config_dict` (older files, such as CompVis's checker,
/// carry the real values there).
fn vision_config(config: &Value) -> Result<ClipVisionConfig, String> {
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
    let c = ClipVisionConfig {
        embed_dim: number("hidden_size", 768)?,
        activation: Activation::QuickGelu,
        intermediate_size: number("intermediate_size", 3072)?,
        num_hidden_layers: number("num_hidden_layers", 12)?,
        num_attention_heads: number("num_attention_heads", 12)?,
        projection_dim: number("projection_dim", 512)?,
        num_channels: number("num_channels", 3)?,
        image_size: number("image_size", 224)?,
        patch_size: number("patch_size", 32)?,
    };
    if !c.embed_dim.is_multiple_of(c.num_attention_heads)
        || !c.image_size.is_multiple_of(c.patch_size)
        || c.num_channels != 3
    {
        return Err(format!(
            "vision_config: hidden_size {} over {} heads, image_size {} over patch_size {}, {} channels do not fit",
            c.embed_dim, c.num_attention_heads, c.image_size, c.patch_size, c.num_channels
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
        assert_eq!((c.embed_dim, c.intermediate_size, c.num_attention_heads), (1024, 4096, 16));
        assert_eq!((c.num_hidden_layers, c.patch_size, c.image_size, c.num_channels), (24, 14, 224, 3));
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
