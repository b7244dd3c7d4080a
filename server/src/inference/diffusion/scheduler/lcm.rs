//! Latent Consistency Model sampling: each step jumps to a clean-image estimate and re-noises it
//! to the next timestep. Meant for LCM-distilled weights (or LCM-LoRA), with 2–8 steps and low
//! guidance; on plain SD 1.5 weights it runs but gives poor images.

use super::{predict_original, Noise, PredictionType, Scheduler, SchedulerConfig, SchedulerError};

pub struct Lcm {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    prediction: PredictionType,
    clip: Option<f64>,
    timestep_scaling: f64,
}

impl Lcm {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        let original = config.original_inference_steps;
        if original == 0 || original > config.num_train_timesteps {
            return Err(SchedulerError::Unsupported(format!(
                "original_inference_steps must be between 1 and num_train_timesteps, got {original}"
            )));
        }
        // The distillation schedule k-1, 2k-1, … (k = train steps / original steps), largest
        // first; pick `steps` of them at evenly spaced indices.
        let k = config.num_train_timesteps / original;
        let origin: Vec<usize> = (1..=original).rev().map(|i| i * k - 1).collect();
        let timesteps =
            (0..steps).map(|i| origin[(i as f64 * original as f64 / steps as f64).floor() as usize] as f64).collect();
        let alphas_cumprod = config.alphas_cumprod();
        Ok(Lcm {
            timesteps,
            final_alpha_cumprod: config.final_alpha_cumprod(&alphas_cumprod),
            alphas_cumprod,
            prediction: config.prediction_type,
            clip: config.clip_sample.then_some(config.clip_sample_range),
            timestep_scaling: config.timestep_scaling,
        })
    }
}

impl Scheduler for Lcm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn step(&mut self, i: usize, model_output: &[f32], sample: &mut [f32], noise: &mut dyn Noise) {
        let t = self.timesteps[i] as usize;
        let a_t = self.alphas_cumprod[t];
        let mut x0 = predict_original(self.prediction, a_t, model_output, sample);
        if let Some(range) = self.clip {
            let r = range as f32;
            x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        // Boundary-condition scalings (sigma_data = 0.5): c_skip → 1 and c_out → 0 as t → 0.
        let scaled = t as f64 * self.timestep_scaling;
        let c_skip = (0.25 / (scaled * scaled + 0.25)) as f32;
        let c_out = (scaled / (scaled * scaled + 0.25).sqrt()) as f32;
        for (x, p) in sample.iter_mut().zip(&x0) {
            *x = c_out * p + c_skip * *x;
        }
        if i + 1 < self.timesteps.len() {
            let prev = self.timesteps[i + 1] as usize;
            let a_prev = self.alphas_cumprod.get(prev).copied().unwrap_or(self.final_alpha_cumprod);
            let mut fresh = vec![0.0f32; sample.len()];
            noise.fill(&mut fresh);
            let (a, b) = (a_prev.sqrt() as f32, (1.0 - a_prev).sqrt() as f32);
            sample.iter_mut().zip(&fresh).for_each(|(x, n)| *x = a * *x + b * n);
        }
    }
}
