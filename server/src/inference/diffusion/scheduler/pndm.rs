//! PNDM in its PLMS form (`skip_prk_steps`), Stable Diffusion 1.5's default: a linear multistep
//! method over the last four noise predictions, with one extra UNet run at the start.

use super::{axpby, spaced_timesteps, PredictionType, Scheduler, SchedulerConfig, SchedulerError};

pub struct Pndm {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    prediction: PredictionType,
    /// `num_train_timesteps / steps`: how far one step moves.
    stride: i64,
    /// Recent noise predictions, oldest first (at most four).
    ets: Vec<Vec<f32>>,
    /// The sample the first step started from; the second step restarts from it.
    first_sample: Option<Vec<f32>>,
    counter: usize,
}

impl Pndm {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        if !config.skip_prk_steps {
            return Err(SchedulerError::Unsupported(
                "PNDM with Runge-Kutta warm-up steps (skip_prk_steps = false) is not supported; \
                 choose another scheduler"
                    .into(),
            ));
        }
        let n = config.num_train_timesteps;
        let mut base: Vec<i64> = spaced_timesteps(config, steps, true).into_iter().map(|t| t as i64).collect();
        base.reverse();
        // Rising `base` → [t0 .. t(k-2), t(k-2), t(k-1)], then reversed: the second-largest
        // timestep runs twice (the PLMS warm-up).
        let mut plms: Vec<i64> = base[..steps - 1].to_vec();
        if steps >= 2 {
            plms.push(base[steps - 2]);
        }
        plms.push(base[steps - 1]);
        plms.reverse();
        let alphas_cumprod = config.alphas_cumprod();
        Ok(Pndm {
            timesteps: plms.into_iter().map(|t| t as f64).collect(),
            final_alpha_cumprod: config.final_alpha_cumprod(&alphas_cumprod),
            alphas_cumprod,
            prediction: config.prediction_type,
            stride: (n / steps) as i64,
            ets: Vec::new(),
            first_sample: None,
            counter: 0,
        })
    }

    fn alpha_at(&self, t: i64) -> f64 {
        if t >= 0 {
            self.alphas_cumprod[t as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    /// The DDIM-like transfer from `t` to `prev` given an effective noise prediction.
    fn transfer(&self, sample: &mut [f32], t: i64, prev: i64, eps: &[f32]) {
        let (a_t, a_prev) = (self.alpha_at(t), self.alpha_at(prev));
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let eps_v;
        let eps = if self.prediction == PredictionType::VPrediction {
            let mut v = vec![0.0; eps.len()];
            axpby(&mut v, a_t.sqrt(), eps, b_t.sqrt(), sample);
            eps_v = v;
            &eps_v[..]
        } else {
            eps
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        let current = sample.to_vec();
        axpby(sample, sample_coeff, &current, -(a_prev - a_t) / denom, eps);
    }
}

impl Scheduler for Pndm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn step(&mut self, i: usize, model_output: &[f32], sample: &mut [f32], _noise: &mut dyn super::Noise) {
        let mut t = self.timesteps[i] as i64;
        let mut prev = t - self.stride;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.to_vec());
        } else {
            prev = t;
            t += self.stride;
        }
        let eps: Vec<f32> = match (self.ets.len(), self.counter) {
            (1, 0) => {
                self.first_sample = Some(sample.to_vec());
                model_output.to_vec()
            }
            (1, 1) => {
                if let Some(first) = self.first_sample.take() {
                    sample.copy_from_slice(&first);
                }
                model_output.iter().zip(&self.ets[0]).map(|(a, b)| (a + b) / 2.0).collect()
            }
            (2, _) => combine(&self.ets, &[3.0 / 2.0, -1.0 / 2.0]),
            (3, _) => combine(&self.ets, &[23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0]),
            _ => combine(&self.ets, &[55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0]),
        };
        self.transfer(sample, t, prev, &eps);
        self.counter += 1;
    }
}

/// Σ weights[k] · ets[newest - k].
fn combine(ets: &[Vec<f32>], weights: &[f64]) -> Vec<f32> {
    let mut out = vec![0.0f32; ets[0].len()];
    for (k, &w) in weights.iter().enumerate() {
        let e = &ets[ets.len() - 1 - k];
        for (o, &v) in out.iter_mut().zip(e) {
            *o += w as f32 * v;
        }
    }
    out
}
