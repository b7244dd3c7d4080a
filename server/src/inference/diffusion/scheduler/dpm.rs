//! DPM-Solver++ (2M) with Karras sigmas: a second-order multistep solver on the data
//! prediction, with first-order steps at the start and at the last step (`lower_order_final`).

use super::{karras_sigmas, round_even, sigma_to_t, PredictionType, Scheduler, SchedulerConfig};

pub struct DpmSolver2m {
    timesteps: Vec<f64>,
    /// One per step plus a final 0.
    sigmas: Vec<f64>,
    prediction: PredictionType,
    /// The previous step's data prediction, once there is one.
    previous_x0: Option<Vec<f32>>,
}

impl DpmSolver2m {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        // With Karras sigmas the spacing setting plays no part: the schedule runs between the
        // largest and smallest training sigmas, and timesteps are mapped back from sigmas.
        let n = config.num_train_timesteps;
        let train_sigmas = config.train_sigmas();
        // numpy takes these logs of float32 sigmas in float32.
        let log_sigmas: Vec<f64> = train_sigmas.iter().map(|&s| (s as f32).ln() as f64).collect();
        let mut sigmas = karras_sigmas(train_sigmas[n - 1], train_sigmas[0], steps);
        let timesteps = sigmas.iter().map(|&s| round_even(sigma_to_t(s, &log_sigmas))).collect();
        sigmas.push(0.0);
        DpmSolver2m { timesteps, sigmas, prediction: config.prediction_type, previous_x0: None }
    }
}

/// (α_t, σ_t) of the variance-preserving process at sigma-space noise level `sigma`, and
/// λ = log(α/σ) (+∞ at σ = 0).
fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

impl Scheduler for DpmSolver2m {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn step(&mut self, i: usize, model_output: &[f32], sample: &mut [f32], _noise: &mut dyn super::Noise) {
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[i]);
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[i + 1]);
        let x0: Vec<f32> = match self.prediction {
            PredictionType::Epsilon => {
                let (a, b) = ((1.0 / alpha_s0) as f32, (sigma_s0 / alpha_s0) as f32);
                sample.iter().zip(model_output).map(|(x, e)| a * x - b * e).collect()
            }
            PredictionType::VPrediction => {
                let (a, b) = (alpha_s0 as f32, sigma_s0 as f32);
                sample.iter().zip(model_output).map(|(x, v)| a * x - b * v).collect()
            }
            PredictionType::Sample => model_output.to_vec(),
        };
        let h = lambda_t - lambda_s0;
        let ratio = (sigma_t / sigma_s0) as f32;
        let coeff = (alpha_t * ((-h).exp() - 1.0)) as f32;
        let last = i + 1 == self.timesteps.len();
        match self.previous_x0.as_ref().filter(|_| !last) {
            // Second order (midpoint): D0 = x0, D1 = (x0 - x0_prev) / r0.
            Some(prev) => {
                let lambda_s1 = alpha_sigma_lambda(self.sigmas[i - 1]).2;
                let r0 = (lambda_s0 - lambda_s1) / h;
                let half_over_r0 = (0.5 / r0) as f32;
                for ((x, d0), p) in sample.iter_mut().zip(&x0).zip(prev) {
                    let d1 = d0 - p;
                    *x = ratio * *x - coeff * d0 - coeff * half_over_r0 * d1;
                }
            }
            None => {
                for (x, d0) in sample.iter_mut().zip(&x0) {
                    *x = ratio * *x - coeff * d0;
                }
            }
        }
        self.previous_x0 = Some(x0);
    }
}
