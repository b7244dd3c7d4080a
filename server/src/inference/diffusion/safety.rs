//! The optional NSFW filter: Stable Diffusion's safety checker (a CLIP vision tower compared with
//! fixed concept embeddings), used when the model folder has `safety_checker/` and the filter is
//! switched on. A flagged image is replaced by black, as diffusers does.

use super::image_file::RgbImage;
use crate::inference::{f32_tensor, InferenceError, OvContext};
use openvino::{CompiledModel, Core, DeviceType, InferRequest};
use serde_json::Value;
use std::path::Path;

pub struct SafetyChecker {
    _compiled: CompiledModel,
    request: InferRequest,
    pre: ClipPreprocess,
}

/// CLIPImageProcessor's settings (`feature_extractor/preprocessor_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClipPreprocess {
    pub shortest_edge: u32,
    pub crop: (u32, u32),
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for ClipPreprocess {
    fn default() -> Self {
        ClipPreprocess {
            shortest_edge: 224,
            crop: (224, 224),
            mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
        }
    }
}

impl ClipPreprocess {
    pub fn from_json(v: &Value) -> Self {
        let d = ClipPreprocess::default();
        let triple = |key: &str, default: [f32; 3]| {
            v[key]
                .as_array()
                .filter(|a| a.len() == 3)
                .map(|a| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(default[i] as f64) as f32))
                .unwrap_or(default)
        };
        let edge = v["size"]["shortest_edge"].as_u64().or(v["size"].as_u64()).map_or(d.shortest_edge, |e| e as u32);
        let crop = match &v["crop_size"] {
            Value::Number(n) => (n.as_u64().unwrap_or(224) as u32, n.as_u64().unwrap_or(224) as u32),
            c => (
                c["height"].as_u64().map_or(d.crop.0, |h| h as u32),
                c["width"].as_u64().map_or(d.crop.1, |w| w as u32),
            ),
        };
        ClipPreprocess {
            shortest_edge: edge,
            crop,
            mean: triple("image_mean", d.mean),
            std: triple("image_std", d.std),
        }
    }

    /// The checker's `clip_input` [3, crop_h, crop_w]: resize the shortest edge (bicubic, as
    /// PIL), centre-crop, scale to [0, 1], normalise.
    pub fn apply(&self, image: &RgbImage) -> Vec<f32> {
        let (w, h) = (image.width, image.height);
        let (new_w, new_h) = if w <= h {
            (self.shortest_edge, (self.shortest_edge as u64 * h as u64 / w as u64) as u32)
        } else {
            ((self.shortest_edge as u64 * w as u64 / h as u64) as u32, self.shortest_edge)
        };
        let resized = resize_bicubic(image, new_w, new_h);
        let (ch, cw) = self.crop;
        let top = new_h.saturating_sub(ch) / 2;
        let left = new_w.saturating_sub(cw) / 2;
        let mut out = vec![0.0f32; 3 * (ch * cw) as usize];
        for c in 0..3 {
            for y in 0..ch {
                for x in 0..cw {
                    let (sy, sx) = (top + y, left + x);
                    let v = if sy < new_h && sx < new_w { resized[((sy * new_w + sx) * 3) as usize + c] } else { 0 };
                    out[(c as u32 * ch * cw + y * cw + x) as usize] = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
                }
            }
        }
        out
    }
}

impl SafetyChecker {
    /// The checker in `dir/safety_checker`, or `None` when the folder has none.
    pub fn load(core: &mut Core, dir: &Path, device: &str) -> Result<Option<Self>, InferenceError> {
        let xml = dir.join("safety_checker/openvino_model.xml");
        if !xml.is_file() {
            return Ok(None);
        }
        let model = super::parts::read_graph(core, dir, "safety_checker")?;
        let mut compiled =
            core.compile_model(&model, DeviceType::from(device)).ov(|| "compiling the safety checker".into())?;
        let request = compiled.create_infer_request().ov(|| "creating a safety checker request".into())?;
        let config = dir.join("feature_extractor/preprocessor_config.json");
        let pre = match std::fs::read_to_string(&config) {
            Ok(text) => ClipPreprocess::from_json(
                &serde_json::from_str(&text)
                    .map_err(|e| InferenceError::BadModel(format!("{}: {e}", config.display())))?,
            ),
            Err(_) => ClipPreprocess::default(),
        };
        Ok(Some(SafetyChecker { _compiled: compiled, request, pre }))
    }

    /// Whether the checker flags `image`.
    pub fn flags(&mut self, image: &RgbImage) -> Result<bool, InferenceError> {
        let (ch, cw) = self.pre.crop;
        let clip = self.pre.apply(image);
        let shape = [1, 3, ch as i64, cw as i64];
        let pixels: Vec<f32> = image.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        let images = [1, image.height as i64, image.width as i64, 3];
        for (name, data, shape) in [("clip_input", &clip, &shape[..]), ("images", &pixels, &images[..])] {
            let tensor = f32_tensor(shape, data)?;
            self.request.set_tensor(name, &tensor).ov(|| format!("setting the safety checker's {name}"))?;
        }
        self.request.infer().ov(|| "running the safety checker".into())?;
        let flag = self.request.get_tensor("has_nsfw_concepts").ov(|| "reading has_nsfw_concepts".into())?;
        let raw = flag.get_raw_data().ov(|| "reading has_nsfw_concepts".into())?;
        Ok(raw.iter().any(|&b| b != 0))
    }
}

/// PIL's bicubic resize (a = -0.5, support widened when shrinking; two passes, each rounded to
/// 8 bits) of an RGB image. Returns interleaved RGB.
pub fn resize_bicubic(image: &RgbImage, new_w: u32, new_h: u32) -> Vec<u8> {
    let (w, h) = (image.width as usize, image.height as usize);
    let (nw, nh) = (new_w as usize, new_h as usize);
    let horizontal = coefficients(w, nw);
    let mut tmp = vec![0u8; nw * h * 3];
    for y in 0..h {
        for (x, (start, weights)) in horizontal.iter().enumerate() {
            for c in 0..3 {
                let sum: f64 = weights
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * image.pixels[(y * w + start + k) * 3 + c] as f64)
                    .sum();
                tmp[(y * nw + x) * 3 + c] = sum.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let vertical = coefficients(h, nh);
    let mut out = vec![0u8; nw * nh * 3];
    for (y, (start, weights)) in vertical.iter().enumerate() {
        for x in 0..nw {
            for c in 0..3 {
                let sum: f64 =
                    weights.iter().enumerate().map(|(k, wt)| wt * tmp[((start + k) * nw + x) * 3 + c] as f64).sum();
                out[(y * nw + x) * 3 + c] = sum.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// For each output position: the first input index and the normalised filter weights.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let bicubic = |x: f64| {
        const A: f64 = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * A
        } else {
            0.0
        }
    };
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let min = ((center - support + 0.5).floor().max(0.0)) as usize;
            let max = ((center + support + 0.5).floor() as usize).min(in_size);
            let mut weights: Vec<f64> = (min..max).map(|x| bicubic((x as f64 - center + 0.5) / filter_scale)).collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            (min, weights)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(w: u32, h: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage { width: w, height: h, pixels: (0..w * h).flat_map(|_| rgb).collect() }
    }

    #[test]
    fn resizing_keeps_flat_colours_and_sizes() {
        let out = resize_bicubic(&flat(256, 200, [10, 128, 250]), 224, 175);
        assert_eq!(out.len(), 224 * 175 * 3);
        assert!(out.chunks(3).all(|p| p == [10, 128, 250]));
        // Same size: PIL's filter is the identity on the pixel grid.
        let ramp = RgbImage { width: 4, height: 1, pixels: vec![0, 0, 0, 50, 50, 50, 100, 100, 100, 150, 150, 150] };
        assert_eq!(resize_bicubic(&ramp, 4, 1), ramp.pixels);
    }

    #[test]
    fn clip_input_is_normalised_and_centre_cropped() {
        let pre = ClipPreprocess::default();
        let out = pre.apply(&flat(512, 256, [255, 0, 128]));
        assert_eq!(out.len(), 3 * 224 * 224);
        assert!((out[0] - (1.0 - pre.mean[0]) / pre.std[0]).abs() < 1e-6);
        assert!((out[224 * 224] - (0.0 - pre.mean[1]) / pre.std[1]).abs() < 1e-6);
    }

    #[test]
    fn preprocessor_config_is_read_in_both_layouts() {
        let v = serde_json::json!({"size": {"shortest_edge": 200}, "crop_size": {"height": 180, "width": 190},
                                   "image_mean": [0.5, 0.5, 0.5]});
        let pre = ClipPreprocess::from_json(&v);
        assert_eq!((pre.shortest_edge, pre.crop, pre.mean), (200, (180, 190), [0.5; 3]));
        let old = ClipPreprocess::from_json(&serde_json::json!({"size": 224, "crop_size": 224}));
        assert_eq!((old.shortest_edge, old.crop), (224, (224, 224)));
    }
}
