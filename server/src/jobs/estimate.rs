//! How long image jobs take, learnt from the ones that finished: time per UNet "unit" (one step
//! at batch 1 over 512×512 pixels). The UNet dominates the cost and scales with steps, batch and
//! pixels, so one number estimates every recipe well enough for a queue's ETA.

use super::queue::Queue;
use crate::inference::diffusion::ImageRequest;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SpeedEstimate {
    ms_per_unit: Option<f64>,
}

fn units(request: &ImageRequest) -> f64 {
    let pixels = request.width as f64 * request.height as f64 / (512.0 * 512.0);
    request.steps as f64 * request.unet_batch() as f64 * pixels
}

impl SpeedEstimate {
    /// Learn from a finished job (recent jobs count most: the machine's load changes).
    pub fn record(&mut self, request: &ImageRequest, ms: f64) {
        let rate = ms / units(request).max(1e-6);
        self.ms_per_unit = Some(match self.ms_per_unit {
            Some(old) => 0.5 * old + 0.5 * rate,
            None => rate,
        });
    }

    pub fn job_ms(&self, request: &ImageRequest) -> Option<f64> {
        Some(self.ms_per_unit? * units(request))
    }

    /// What is left of a running job after `step` steps.
    pub fn remaining_ms(&self, request: &ImageRequest, step: u32) -> Option<u64> {
        let left = request.steps.saturating_sub(step) as f64 / request.steps.max(1) as f64;
        Some((self.job_ms(request)? * left) as u64)
    }

    /// Until the job at `position` in the waiting line is done.
    pub fn eta_ms(&self, queue: &Queue, position: usize) -> Option<u64> {
        let running = match queue.running.as_ref().and_then(|id| queue.jobs.get(id)) {
            Some(job) => self.remaining_ms(&job.request, job.info.step)?,
            None => 0,
        };
        let mut total = running as f64;
        for id in queue.waiting.iter().take(position + 1) {
            total += self.job_ms(&queue.jobs.get(id)?.request)?;
        }
        Some(total as u64)
    }

    /// When a place in the queue is likely to free up (for `Retry-After`); 10 s before any job
    /// has been timed.
    pub fn seconds_until_next_free(&self, queue: &Queue) -> u64 {
        let next = match queue.running.as_ref().and_then(|id| queue.jobs.get(id)) {
            Some(job) => self.remaining_ms(&job.request, job.info.step),
            None => None,
        };
        next.map_or(10, |ms| ms.div_ceil(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::diffusion::SchedulerKind;

    fn request(steps: u32, side: u32, guidance: f32) -> ImageRequest {
        ImageRequest {
            prompt: "x".into(),
            negative_prompt: String::new(),
            steps,
            guidance_scale: guidance,
            width: side,
            height: side,
            seed: 0,
            scheduler: SchedulerKind::Pndm,
        }
    }

    #[test]
    fn scales_with_steps_pixels_and_guidance() {
        let mut s = SpeedEstimate::default();
        assert_eq!(s.job_ms(&request(20, 512, 7.5)), None);
        s.record(&request(20, 512, 7.5), 200_000.0); // 40 units
        assert_eq!(s.job_ms(&request(20, 512, 7.5)), Some(200_000.0));
        assert_eq!(s.job_ms(&request(10, 256, 7.5)), Some(25_000.0));
        assert_eq!(s.job_ms(&request(20, 512, 1.0)), Some(100_000.0));
        assert_eq!(s.remaining_ms(&request(20, 512, 7.5), 15), Some(50_000));
        // The newest measurement counts half.
        s.record(&request(20, 512, 7.5), 100_000.0);
        assert_eq!(s.job_ms(&request(20, 512, 7.5)), Some(150_000.0));
    }
}
