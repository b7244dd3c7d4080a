//! Text to image, as diffusers' StableDiffusionPipeline does it: CLIP embeddings of the prompt
//! and the negative prompt, seeded latents, the scheduler's loop with classifier-free guidance
//! (one UNet run at batch 2: negative first, then prompt), the VAE decoder, a PNG.

use super::{
    image_file::{self, RgbImage},
    model::{PartTimes, SdModel},
    request::{ImageRequest, InvalidField},
    rng::NormalRng,
    scheduler::{self, SchedulerError},
};
use crate::inference::InferenceError;
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

/// Reported after every UNet run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Progress {
    pub step: usize,
    pub total: usize,
    pub elapsed_ms: u64,
    /// This step alone (a pause between steps not included).
    pub step_ms: f64,
}

pub struct ImageOutput {
    pub image: RgbImage,
    pub png: Vec<u8>,
    pub times: PartTimes,
    /// `Some(true)`: the NSFW filter flagged the image and it was blacked out; `None`: not checked.
    pub nsfw: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Invalid(#[from] InvalidField),
    #[error("{0}")]
    Scheduler(#[from] SchedulerError),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Engine(#[from] InferenceError),
}

/// Make the image `request` describes. `latents` replaces the seeded noise (for comparing with
/// other implementations); `cancel` is checked before every UNet run.
pub fn generate(
    model: &mut SdModel,
    request: &ImageRequest,
    latents: Option<&[f32]>,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<ImageOutput, PipelineError> {
    request.validate()?;
    let count = model.files.latent_channels * (request.width as usize / 8) * (request.height as usize / 8);
    if let Some(given) = latents.filter(|l| l.len() != count) {
        return Err(InvalidField {
            field: "latents",
            message: format!(
                "expected {count} values (1x4x{}x{}), got {}",
                request.height / 8,
                request.width / 8,
                given.len()
            ),
        }
        .into());
    }
    let started = Instant::now();
    let mut scheduler = scheduler::build(request.scheduler, &model.files.scheduler_config, request.steps as usize)?;
    let guided = request.guided();
    let batch = request.unet_batch();
    let mut times =
        PartTimes { compile_ms: model.prepare(request.width, request.height, batch)?, ..Default::default() };

    let t = Instant::now();
    let encode = |model: &mut SdModel, text: &str| -> Result<Vec<f32>, PipelineError> {
        let ids = model.tokenizer.encode(text).map_err(|e| InferenceError::Generation(format!("tokenizing: {e}")))?;
        Ok(model.encode_text(&ids)?)
    };
    let prompt_states = encode(model, &request.prompt)?;
    let states = if guided {
        let mut both = encode(model, &request.negative_prompt)?;
        both.extend_from_slice(&prompt_states);
        both
    } else {
        prompt_states
    };
    model.condition(&states)?;
    times.text_encode_ms = t.elapsed().as_secs_f64() * 1000.0;

    let mut rng = NormalRng::new(request.seed);
    let mut sample = match latents {
        Some(given) => given.to_vec(),
        None => {
            let mut noise = vec![0.0; count];
            scheduler::Noise::fill(&mut rng, &mut noise);
            noise
        }
    };
    let sigma = scheduler.init_noise_sigma() as f32;
    if sigma != 1.0 {
        sample.iter_mut().for_each(|v| *v *= sigma);
    }

    let timesteps = scheduler.timesteps().to_vec();
    let mut input = vec![0.0f32; count * batch];
    let mut guided_output = vec![0.0f32; count];
    for (i, &timestep) in timesteps.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(PipelineError::Cancelled);
        }
        let t = Instant::now();
        let scale = scheduler.input_scale(i) as f32;
        for chunk in input.chunks_exact_mut(count) {
            chunk.iter_mut().zip(&sample).for_each(|(d, s)| *d = if scale == 1.0 { *s } else { s * scale });
        }
        // The UNet takes an integer timestep; fractional (Karras) ones are rounded.
        let output = model.unet(&input, timestep.round() as i64)?;
        let prediction: &[f32] = if guided {
            let (uncond, cond) = output.split_at(count);
            let g = request.guidance_scale;
            guided_output.iter_mut().zip(uncond.iter().zip(cond)).for_each(|(d, (u, c))| *d = u + g * (c - u));
            &guided_output
        } else {
            &output
        };
        scheduler.step(i, prediction, &mut sample, &mut rng);
        let step_ms = t.elapsed().as_secs_f64() * 1000.0;
        times.unet_ms.push(step_ms);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        progress(Progress { step: i + 1, total: timesteps.len(), elapsed_ms, step_ms });
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(PipelineError::Cancelled);
    }

    let t = Instant::now();
    let inv = (1.0 / model.files.vae_scaling_factor) as f32;
    sample.iter_mut().for_each(|v| *v *= inv);
    let decoded = model.decode(&sample)?;
    times.vae_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut image = to_rgb(&decoded, request.width, request.height)?;
    let nsfw = match model.safety.as_mut() {
        Some(checker) => {
            let flagged = checker.flags(&image)?;
            if flagged {
                image.pixels.fill(0);
            }
            Some(flagged)
        }
        None => None,
    };
    let t = Instant::now();
    let png = image_file::encode(&image, request, &model.files.name, Some(&model.options().drawn_at))
        .map_err(|e| InferenceError::Generation(e.to_string()))?;
    times.png_ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok(ImageOutput { image, png, times, nsfw })
}

/// VAE output [3, H, W] in [-1, 1] → interleaved 8-bit RGB, rounding half to even as numpy
/// does in diffusers.
pub fn to_rgb(planes: &[f32], width: u32, height: u32) -> Result<RgbImage, InferenceError> {
    let n = (width * height) as usize;
    if planes.len() != 3 * n {
        return Err(InferenceError::Generation(format!(
            "VAE gave {} values for a {width}x{height} image",
            planes.len()
        )));
    }
    let mut pixels = vec![0u8; 3 * n];
    for c in 0..3 {
        for (p, &v) in planes[c * n..(c + 1) * n].iter().enumerate() {
            pixels[p * 3 + c] = ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8;
        }
    }
    Ok(RgbImage { width, height, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vae_planes_become_rounded_rgb() {
        // Two pixels: R plane, G plane, B plane.
        let planes = [-1.0, 1.0, 0.0, 2.0, -3.0, 0.003];
        let image = to_rgb(&planes, 2, 1).unwrap();
        // 0.003 → (0.5015 * 255) = 127.88 → 128; 0.0 → 127.5 → 128 (round half away from zero).
        assert_eq!(image.pixels, vec![0, 128, 0, 255, 255, 128]);
        assert!(to_rgb(&planes, 3, 1).is_err());
    }
}
