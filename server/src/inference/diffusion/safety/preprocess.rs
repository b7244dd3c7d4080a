//! The checker's input: CLIPImageProcessor's resize, centre crop and normalisation, done as PIL
//! and transformers do them so our `clip_input` matches theirs to one 8-bit level.

use crate::inference::diffusion::image_file::RgbImage;
use serde_json::Value;

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
    /// The model folder's `feature_extractor/preprocessor_config.json`, or CLIP's defaults.
    pub fn load(dir: &std::path::Path) -> Result<Self, crate::inference::InferenceError> {
        let config = dir.join("feature_extractor/preprocessor_config.json");
        match std::fs::read_to_string(&config) {
            Ok(text) => serde_json::from_str(&text)
                .map(|v| ClipPreprocess::from_json(&v))
                .map_err(|e| crate::inference::InferenceError::BadModel(format!("{}: {e}", config.display()))),
            Err(_) => Ok(ClipPreprocess::default()),
        }
    }

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
