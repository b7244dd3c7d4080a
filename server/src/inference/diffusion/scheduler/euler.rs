//! Euler and Euler ancestral (k-diffusion's samplers as diffusers implements them), working in
//! sigma space: the UNet input is scaled by 1/√(σ²+1) and the latents start at the largest σ.

use super::{
    interp_on_grid, karras_sigmas, sigma_to_t, spaced_timesteps, Noise, PredictionType, Scheduler, SchedulerConfig,
    TimestepSpacing,
};

pub struct Euler {
    timesteps: Vec<f64>,
    /// One per step plus a final 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction: PredictionType,
    ancestral: bool,
}

impl Euler {
    pub fn new(config: &SchedulerConfig, steps: usize, ancestral: bool) -> Self {
        let timesteps = spaced_timesteps(config, steps, false);
        let train_sigmas = config.train_sigmas();
        let (timesteps, mut sigmas) = if config.use_karras_sigmas && !ancestral {
            let interpolated: Vec<f64> = timesteps.iter().map(|&t| interp_on_grid(t, &train_sigmas)).collect();
            let sigmas = karras_sigmas(interpolated[0], interpolated[interpolated.len() - 1], steps);
            // numpy takes these logs of float32 sigmas in float32.
            let log_sigmas: Vec<f64> = train_sigmas.iter().map(|&s| (s as f32).ln() as f64).collect();
            (sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect(), sigmas)
        } else {
            let sigmas = timesteps.iter().map(|&t| interp_on_grid(t, &train_sigmas)).collect();
            (timesteps, sigmas)
        };
        sigmas.push(0.0);
        let max_sigma = sigmas.iter().cloned().fold(0.0, f64::max);
        let init_noise_sigma = match config.timestep_spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma,
            TimestepSpacing::Leading => (max_sigma * max_sigma + 1.0).sqrt(),
        };
        Euler { timesteps, sigmas, init_noise_sigma, prediction: config.prediction_type, ancestral }
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn input_scale(&self, i: usize) -> f64 {
        1.0 / (self.sigmas[i] * self.sigmas[i] + 1.0).sqrt()
    }

    fn step(&mut self, i: usize, model_output: &[f32], sample: &mut [f32], noise: &mut dyn Noise) {
        let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
        // Denoised estimate x0 = x - σ·ε (or its v-prediction form), then an Euler step along
        // d = (x - x0) / σ.
        let x0: Vec<f32> = match self.prediction {
            PredictionType::Epsilon => {
                let s = sigma as f32;
                sample.iter().zip(model_output).map(|(x, e)| x - s * e).collect()
            }
            PredictionType::VPrediction => {
                let (a, b) = ((-sigma / (sigma * sigma + 1.0).sqrt()) as f32, (1.0 / (sigma * sigma + 1.0)) as f32);
                sample.iter().zip(model_output).map(|(x, v)| v * a + x * b).collect()
            }
            PredictionType::Sample => model_output.to_vec(),
        };
        let (target, sigma_up) = if self.ancestral {
            let up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma)).sqrt();
            ((sigma_next * sigma_next - up * up).sqrt(), up)
        } else {
            (sigma_next, 0.0)
        };
        let dt = (target - sigma) as f32;
        let s = sigma as f32;
        for (x, d0) in sample.iter_mut().zip(&x0) {
            let derivative = (*x - d0) / s;
            *x += derivative * dt;
        }
        if self.ancestral && i + 1 < self.timesteps.len() {
            let mut fresh = vec![0.0f32; sample.len()];
            noise.fill(&mut fresh);
            let up = sigma_up as f32;
            sample.iter_mut().zip(&fresh).for_each(|(x, n)| *x += n * up);
        }
    }
}
