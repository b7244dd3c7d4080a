//! Noise schedulers with diffusers' semantics, as pure functions of `scheduler_config.json`.
//!
//! Each scheduler lists the timesteps the UNet sees and turns one (guided) noise prediction into
//! the next latents. Steps are addressed by index, not by timestep value: PNDM repeats a timestep
//! and Karras schedules may too. Coefficients are computed in f64 and applied to f32 latents.

mod config;
mod ddim;
mod dpm;
mod euler;
mod lcm;
mod pndm;

pub use config::{BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing};

use serde::{Deserialize, Serialize};

/// A source of standard-normal noise for the ancestral samplers (the image's seeded generator).
pub trait Noise {
    fn fill(&mut self, out: &mut [f32]);
}

pub trait Scheduler: Send {
    /// The timestep given to the UNet at each step; its length is the number of UNet runs.
    fn timesteps(&self) -> &[f64];
    /// Initial latents are standard normal noise times this.
    fn init_noise_sigma(&self) -> f64;
    /// The UNet input at step `i` is the latents times this (1 except for sigma-space samplers).
    fn input_scale(&self, _i: usize) -> f64 {
        1.0
    }
    /// Noise levels in sigma space, one per step plus the final one (sigma-space samplers only).
    fn sigmas(&self) -> &[f64] {
        &[]
    }
    /// Move `sample` from step `i` to step `i + 1`, given the model's prediction at step `i`.
    fn step(&mut self, i: usize, model_output: &[f32], sample: &mut [f32], noise: &mut dyn Noise);
}

/// The samplers we offer, with the names the API takes and the names A1111 writes into PNGs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    Pndm,
    Ddim,
    Euler,
    EulerA,
    #[serde(rename = "dpmpp_2m_karras")]
    DpmPp2mKarras,
    Lcm,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 6] =
        [Self::Pndm, Self::Ddim, Self::Euler, Self::EulerA, Self::DpmPp2mKarras, Self::Lcm];

    /// The name the API and the CLI take.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pndm => "pndm",
            Self::Ddim => "ddim",
            Self::Euler => "euler",
            Self::EulerA => "euler_a",
            Self::DpmPp2mKarras => "dpmpp_2m_karras",
            Self::Lcm => "lcm",
        }
    }

    /// The sampler name A1111 writes in its `parameters` text, so other tools read ours.
    pub fn a1111_name(self) -> &'static str {
        match self {
            Self::Pndm => "PLMS",
            Self::Ddim => "DDIM",
            Self::Euler => "Euler",
            Self::EulerA => "Euler a",
            Self::DpmPp2mKarras => "DPM++ 2M Karras",
            Self::Lcm => "LCM",
        }
    }

    /// Accepts our names and A1111's, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        Self::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(t) || k.a1111_name().eq_ignore_ascii_case(t))
    }

    /// The scheduler a diffusers `_class_name` stands for (a config written for one scheduler
    /// configures the others too, as diffusers' `from_config` does).
    pub fn from_class_name(class: &str) -> Option<Self> {
        Some(match class {
            "PNDMScheduler" => Self::Pndm,
            "DDIMScheduler" => Self::Ddim,
            "EulerDiscreteScheduler" => Self::Euler,
            "EulerAncestralDiscreteScheduler" => Self::EulerA,
            "DPMSolverMultistepScheduler" => Self::DpmPp2mKarras,
            "LCMScheduler" => Self::Lcm,
            _ => return None,
        })
    }

    pub fn names() -> String {
        Self::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchedulerError {
    #[error("{0}")]
    Unsupported(String),
    #[error("steps must be between 1 and {max} for {scheduler}, got {steps}")]
    Steps { scheduler: &'static str, steps: usize, max: usize },
}

/// Build `kind` for `steps` inference steps.
pub fn build(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    steps: usize,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let max = match kind {
        SchedulerKind::Lcm => config.original_inference_steps.min(config.num_train_timesteps),
        _ => config.num_train_timesteps,
    };
    if steps == 0 || steps > max {
        return Err(SchedulerError::Steps { scheduler: kind.name(), steps, max });
    }
    Ok(match kind {
        SchedulerKind::Pndm => Box::new(pndm::Pndm::new(config, steps)?),
        SchedulerKind::Ddim => Box::new(ddim::Ddim::new(config, steps)),
        SchedulerKind::Euler => Box::new(euler::Euler::new(config, steps, false)),
        SchedulerKind::EulerA => Box::new(euler::Euler::new(config, steps, true)),
        SchedulerKind::DpmPp2mKarras => Box::new(dpm::DpmSolver2m::new(config, steps)),
        SchedulerKind::Lcm => Box::new(lcm::Lcm::new(config, steps)?),
    })
}

/// `dst[k] = a * x[k] + b * y[k]`, the shape of every scheduler update.
fn axpby(dst: &mut [f32], a: f64, x: &[f32], b: f64, y: &[f32]) {
    let (a, b) = (a as f32, b as f32);
    for ((d, &x), &y) in dst.iter_mut().zip(x).zip(y) {
        *d = a * x + b * y;
    }
}

/// The x0 prediction from a model output at cumulative alpha `alpha_prod` (DDPM-family samplers).
fn predict_original(prediction: PredictionType, alpha_prod: f64, model_output: &[f32], sample: &[f32]) -> Vec<f32> {
    let (sa, sb) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    let mut x0 = vec![0.0; sample.len()];
    match prediction {
        PredictionType::Epsilon => axpby(&mut x0, 1.0 / sa, sample, -sb / sa, model_output),
        PredictionType::Sample => x0.copy_from_slice(model_output),
        PredictionType::VPrediction => axpby(&mut x0, sa, sample, -sb, model_output),
    }
    x0
}

/// The training timesteps `steps` inference steps visit, largest first, spaced as
/// `timestep_spacing` says (diffusers' `set_timesteps`). `linspace` points fall between integers;
/// DDPM-family samplers round them, sigma-space samplers (Euler) keep them fractional.
fn spaced_timesteps(config: &SchedulerConfig, steps: usize, round_linspace: bool) -> Vec<f64> {
    let n = config.num_train_timesteps;
    match config.timestep_spacing {
        TimestepSpacing::Leading => (0..steps).rev().map(|i| (i * (n / steps) + config.steps_offset) as f64).collect(),
        TimestepSpacing::Linspace => linspace(0.0, (n - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(|t| if round_linspace { round_even(t) } else { t })
            .collect(),
        TimestepSpacing::Trailing => {
            let ratio = n as f64 / steps as f64;
            (0..steps).map(|i| round_even(n as f64 - i as f64 * ratio) - 1.0).collect()
        }
    }
}

/// numpy's `linspace(start, end, n)`.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f64;
            (0..n).map(|i| if i == n - 1 { end } else { start + step * i as f64 }).collect()
        }
    }
}

/// numpy's `round` (half to even), used where diffusers rounds timesteps.
fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// Karras et al. (2022) noise levels between the model's largest and smallest sigma, rho = 7.
fn karras_sigmas(sigma_max: f64, sigma_min: f64, n: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / RHO), sigma_max.powf(1.0 / RHO));
    linspace(0.0, 1.0, n).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(RHO)).collect()
}

/// The (fractional) training timestep whose sigma is `sigma`, interpolating in log-sigma as
/// diffusers' `_sigma_to_t` does. `log_sigmas` rises with the timestep.
fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let last_below = log_sigmas.iter().rposition(|&l| log_sigma >= l).unwrap_or(0);
    let low = last_below.min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// numpy's `interp(x, 0..len, values)` for a rising integer grid.
fn interp_on_grid(x: f64, values: &[f64]) -> f64 {
    if x <= 0.0 {
        return values[0];
    }
    let last = values.len() - 1;
    if x >= last as f64 {
        return values[last];
    }
    let i = x.floor() as usize;
    let w = x - i as f64;
    values[i] + w * (values[i + 1] - values[i])
}

#[cfg(test)]
mod expected;
#[cfg(test)]
mod tests;
