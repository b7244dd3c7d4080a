//! What an image is made from, checked before any work starts. Errors name the field and the
//! allowed values, so the HTTP layer can answer 422 with them as they are.

use super::scheduler::SchedulerKind;
use serde::{Deserialize, Serialize};

pub const MIN_SIDE: u32 = 256;
pub const MAX_SIDE: u32 = 1024;
pub const MAX_STEPS: u32 = 100;
pub const MAX_GUIDANCE: f32 = 30.0;
pub const MAX_PROMPT_CHARS: usize = 4000;

/// A complete, validated recipe: with the same model it always gives the same image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRequest {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    pub steps: u32,
    pub guidance_scale: f32,
    pub width: u32,
    pub height: u32,
    pub seed: u32,
    pub scheduler: SchedulerKind,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField { field, message: message.into() }
}

impl ImageRequest {
    /// Check every field against what the pipeline supports.
    pub fn validate(&self) -> Result<(), InvalidField> {
        for (field, text) in [("prompt", &self.prompt), ("negative_prompt", &self.negative_prompt)] {
            if text.chars().count() > MAX_PROMPT_CHARS {
                return Err(invalid(field, format!("must be at most {MAX_PROMPT_CHARS} characters")));
            }
        }
        if self.prompt.trim().is_empty() {
            return Err(invalid("prompt", "must not be empty"));
        }
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(invalid("steps", format!("must be an integer from 1 to {MAX_STEPS}, got {}", self.steps)));
        }
        if !self.guidance_scale.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&self.guidance_scale) {
            return Err(invalid(
                "guidance_scale",
                format!(
                    "must be a number from 0 to {MAX_GUIDANCE} (1 or less turns guidance off), got {}",
                    self.guidance_scale
                ),
            ));
        }
        for (field, side) in [("width", self.width), ("height", self.height)] {
            if !(MIN_SIDE..=MAX_SIDE).contains(&side) || side % 8 != 0 {
                return Err(invalid(
                    field,
                    format!("must be a multiple of 8 from {MIN_SIDE} to {MAX_SIDE}, got {side}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether classifier-free guidance runs (it doubles the UNet's batch).
    pub fn guided(&self) -> bool {
        self.guidance_scale > 1.0
    }

    /// The UNet's batch: negative and positive prompt under guidance, else the prompt alone.
    pub fn unet_batch(&self) -> usize {
        if self.guided() {
            2
        } else {
            1
        }
    }
}

/// A request as callers write it: anything left out comes from a base recipe (e.g. a PNG's) or
/// the defaults (20 steps, guidance 7.5, 512×512, a random seed, the model's scheduler).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageParams {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub steps: Option<u32>,
    pub guidance_scale: Option<f32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub seed: Option<u32>,
    pub scheduler: Option<String>,
}

impl ImageParams {
    pub fn resolve(
        self,
        base: Option<ImageRequest>,
        default_scheduler: SchedulerKind,
    ) -> Result<ImageRequest, InvalidField> {
        let scheduler = match &self.scheduler {
            Some(name) => parse_scheduler(name)?,
            None => base.as_ref().map_or(default_scheduler, |b| b.scheduler),
        };
        let request = ImageRequest {
            prompt: self
                .prompt
                .or_else(|| base.as_ref().map(|b| b.prompt.clone()))
                .ok_or_else(|| invalid("prompt", "is required"))?,
            negative_prompt: self
                .negative_prompt
                .or_else(|| base.as_ref().map(|b| b.negative_prompt.clone()))
                .unwrap_or_default(),
            steps: self.steps.or(base.as_ref().map(|b| b.steps)).unwrap_or(20),
            guidance_scale: self.guidance_scale.or(base.as_ref().map(|b| b.guidance_scale)).unwrap_or(7.5),
            width: self.width.or(base.as_ref().map(|b| b.width)).unwrap_or(512),
            height: self.height.or(base.as_ref().map(|b| b.height)).unwrap_or(512),
            seed: self.seed.or(base.as_ref().map(|b| b.seed)).unwrap_or_else(random_seed),
            scheduler,
        };
        request.validate()?;
        Ok(request)
    }
}

/// A fresh seed in the image seed range, for requests that give none.
pub fn random_seed() -> u32 {
    crate::inference::fresh_seed() as u32
}

/// Parse a scheduler name as the API and CLI accept it.
pub fn parse_scheduler(name: &str) -> Result<SchedulerKind, InvalidField> {
    SchedulerKind::parse(name)
        .ok_or_else(|| invalid("scheduler", format!("unknown {name:?}; choose one of {}", SchedulerKind::names())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ImageRequest {
        ImageRequest {
            prompt: "a fox".into(),
            negative_prompt: String::new(),
            steps: 20,
            guidance_scale: 7.5,
            width: 512,
            height: 512,
            seed: 1,
            scheduler: SchedulerKind::Pndm,
        }
    }

    #[test]
    fn accepts_the_documented_ranges() {
        assert_eq!(ok().validate(), Ok(()));
        for (w, h, steps, g) in [(256, 1024, 1, 0.0), (1024, 256, 100, 30.0), (264, 768, 50, 1.0)] {
            let r = ImageRequest { width: w, height: h, steps, guidance_scale: g, ..ok() };
            assert_eq!(r.validate(), Ok(()), "{w}x{h} {steps} {g}");
        }
    }

    #[test]
    fn names_the_field_and_the_allowed_values() {
        let cases: Vec<(ImageRequest, &str, &str)> = vec![
            (ImageRequest { width: 500, ..ok() }, "width", "multiple of 8 from 256 to 1024"),
            (ImageRequest { height: 248, ..ok() }, "height", "got 248"),
            (ImageRequest { height: 1032, ..ok() }, "height", "got 1032"),
            (ImageRequest { steps: 0, ..ok() }, "steps", "from 1 to 100"),
            (ImageRequest { steps: 101, ..ok() }, "steps", "got 101"),
            (ImageRequest { guidance_scale: -1.0, ..ok() }, "guidance_scale", "from 0 to 30"),
            (ImageRequest { guidance_scale: f32::NAN, ..ok() }, "guidance_scale", "got NaN"),
            (ImageRequest { prompt: "  ".into(), ..ok() }, "prompt", "must not be empty"),
            (ImageRequest { negative_prompt: "x".repeat(4001), ..ok() }, "negative_prompt", "at most 4000"),
        ];
        for (request, field, text) in cases {
            let err = request.validate().unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.message.contains(text), "{err}");
        }
        let err = parse_scheduler("k_lms").unwrap_err();
        assert_eq!(err.field, "scheduler");
        assert!(err.message.contains("pndm, ddim, euler, euler_a, dpmpp_2m_karras, lcm"), "{err}");
        assert_eq!(parse_scheduler("Euler a"), Ok(SchedulerKind::EulerA));
        assert_eq!(parse_scheduler("DPMPP_2M_KARRAS"), Ok(SchedulerKind::DpmPp2mKarras));
    }

    #[test]
    fn params_fill_in_from_the_base_then_the_defaults() {
        let base = ImageRequest { steps: 30, seed: 99, scheduler: SchedulerKind::Ddim, ..ok() };
        let params = ImageParams { width: Some(768), scheduler: Some("euler".into()), ..Default::default() };
        let r = params.clone().resolve(Some(base), SchedulerKind::Pndm).unwrap();
        assert_eq!((r.prompt.as_str(), r.steps, r.seed, r.width, r.height), ("a fox", 30, 99, 768, 512));
        assert_eq!(r.scheduler, SchedulerKind::Euler);
        let err = params.clone().resolve(None, SchedulerKind::Pndm).unwrap_err();
        assert_eq!(err.field, "prompt");
        let r =
            ImageParams { prompt: Some("x".into()), ..Default::default() }.resolve(None, SchedulerKind::Lcm).unwrap();
        assert_eq!((r.steps, r.guidance_scale, r.width, r.scheduler), (20, 7.5, 512, SchedulerKind::Lcm));
        let err = ImageParams { prompt: Some("x".into()), height: Some(100), ..Default::default() }
            .resolve(None, SchedulerKind::Pndm)
            .unwrap_err();
        assert_eq!(err.field, "height");
    }

    #[test]
    fn guidance_at_or_below_one_is_off() {
        assert!(ok().guided());
        assert!(!ImageRequest { guidance_scale: 1.0, ..ok() }.guided());
    }
}
