//! DDIM with eta = 0: deterministic steps along the predicted clean image.

use super::{axpby, predict_original, spaced_timesteps, PredictionType, Scheduler, SchedulerConfig};

pub struct Ddim {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    prediction: PredictionType,
    clip: Option<f64>,
    stride: i64,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let alphas_cumprod = config.alphas_cumprod();
        Ddim {
            timesteps: spaced_timesteps(config, steps, true),
            final_alpha_cumprod: config.final_alpha_cumprod(&alphas_cumprod),
            alphas_cumprod,
            prediction: config.prediction_type,
            clip: config.clip_sample.then_some(config.clip_sample_range),
            stride: (config.num_train_timesteps / steps) as i64,
        }
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn step(&mut self, i: usize, model_output: &[f32], sample: &mut [f32], _noise: &mut dyn super::Noise) {
        let t = self.timesteps[i] as i64;
        let prev = t - self.stride;
        let a_t = self.alphas_cumprod[t as usize];
        let a_prev = if prev >= 0 { self.alphas_cumprod[prev as usize] } else { self.final_alpha_cumprod };
        let mut x0 = predict_original(self.prediction, a_t, model_output, sample);
        // The noise estimate comes from the unclipped x0, as in diffusers (eta = 0, no
        // `use_clipped_model_output`): eps = (x - √ᾱ·x0) / √(1-ᾱ).
        let mut eps = vec![0.0; sample.len()];
        match self.prediction {
            PredictionType::Epsilon => eps.copy_from_slice(model_output),
            PredictionType::Sample => {
                axpby(&mut eps, 1.0 / (1.0 - a_t).sqrt(), sample, -a_t.sqrt() / (1.0 - a_t).sqrt(), &x0)
            }
            PredictionType::VPrediction => axpby(&mut eps, a_t.sqrt(), model_output, (1.0 - a_t).sqrt(), sample),
        }
        if let Some(range) = self.clip {
            let r = range as f32;
            x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        axpby(sample, a_prev.sqrt(), &x0, (1.0 - a_prev).sqrt(), &eps);
    }
}
