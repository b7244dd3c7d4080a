//! `scheduler/scheduler_config.json`, with diffusers' defaults for keys a config leaves out, and
//! the noise schedule (betas, cumulative alphas) it describes.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    Sample,
    VPrediction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Linspace,
    Trailing,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    pub set_alpha_to_one: bool,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub skip_prk_steps: bool,
    pub use_karras_sigmas: bool,
    /// LCM: the step count the consistency model was distilled with.
    pub original_inference_steps: usize,
    /// LCM: scales the timestep in its boundary-condition coefficients.
    pub timestep_scaling: f64,
}

impl Default for SchedulerConfig {
    /// diffusers' defaults (the values every scheduler class shares).
    fn default() -> Self {
        SchedulerConfig {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
            set_alpha_to_one: false,
            clip_sample: false,
            clip_sample_range: 1.0,
            skip_prk_steps: false,
            use_karras_sigmas: false,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
        }
    }
}

impl SchedulerConfig {
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let config: SchedulerConfig = serde_json::from_str(text)?;
        if config.num_train_timesteps < 2 {
            return Err(serde::de::Error::custom("num_train_timesteps must be at least 2"));
        }
        if let Some(betas) = &config.trained_betas {
            if betas.len() != config.num_train_timesteps {
                return Err(serde::de::Error::custom("trained_betas must hold num_train_timesteps values"));
            }
        }
        Ok(config)
    }

    pub fn betas(&self) -> Vec<f64> {
        let n = self.num_train_timesteps;
        if let Some(betas) = &self.trained_betas {
            return betas.clone();
        }
        match self.beta_schedule {
            BetaSchedule::Linear => super::linspace(self.beta_start, self.beta_end, n),
            BetaSchedule::ScaledLinear => {
                super::linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n).into_iter().map(|b| b * b).collect()
            }
            BetaSchedule::SquaredCosCapV2 => {
                let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                    })
                    .collect()
            }
        }
    }

    /// Cumulative products of `1 - beta`: how much signal is left at each training timestep.
    /// Rounded through f32 as diffusers keeps them (torch float32), which matters where
    /// 1 - ᾱ is tiny: the smallest sigma of a linear schedule moves in the fifth digit.
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let mut acc = 1.0f64;
        self.betas()
            .into_iter()
            .map(|b| {
                acc *= (1.0f32 - b as f32) as f64;
                acc as f32 as f64
            })
            .collect()
    }

    /// Noise level of each training timestep in sigma space: sqrt((1 - ᾱ) / ᾱ), in f32 as diffusers.
    pub fn train_sigmas(&self) -> Vec<f64> {
        self.alphas_cumprod()
            .into_iter()
            .map(|a| {
                let a = a as f32;
                ((1.0 - a) / a).sqrt() as f64
            })
            .collect()
    }

    /// ᾱ "before" timestep 0, used by the final step of DDIM-family samplers.
    pub fn final_alpha_cumprod(&self, alphas_cumprod: &[f64]) -> f64 {
        if self.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        }
    }
}
