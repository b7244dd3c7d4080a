//! How long image jobs take, learnt from the ones that finished: time per UNet "unit" (one step
//! at batch 1 over 512×512 pixels). The UNet dominates the cost and scales with steps, batch and
//! pixels, so one number estimates every recipe well enough for a queue's ETA. Pure: the queue
//! it estimates is the shared one, as its rows tell it (`QueuedJob`).

use crate::inference::diffusion::ImageRequest;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SpeedEstimate {
    ms_per_unit: Option<f64>,
}

fn units(request: &ImageRequest) -> f64 {
    let pixels = request.width as f64 * request.height as f64 / (512.0 * 512.0);
    request.steps as f64 * request.unet_batch() as f64 * pixels
}

/// A job of the shared queue, as the estimate needs it.
pub(super) struct QueuedJob<'a> {
    pub id: &'a str,
    pub request: ImageRequest,
    /// Steps done: some when it is being drawn.
    pub running_step: Option<u32>,
    /// The process drawing it.
    pub worker: Option<&'a str>,
}

/// Where a queued job stands: its place in line (0: next) and the time until it is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Standing {
    pub position: u32,
    pub eta_ms: Option<u64>,
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

    /// Where the queued job `id` stands in `queue` (every job queued or running, oldest first):
    /// the work ahead of it and its own, shared by the processes drawing now (at least one).
    pub fn standing(&self, queue: &[QueuedJob<'_>], id: &str) -> Option<Standing> {
        let waiting = queue.iter().filter(|job| job.running_step.is_none());
        let position = waiting.clone().position(|job| job.id == id)?;
        let mut drawers: Vec<&str> =
            queue.iter().filter(|j| j.running_step.is_some()).filter_map(|j| j.worker).collect();
        drawers.sort_unstable();
        drawers.dedup();
        let eta = || -> Option<u64> {
            let mut total = 0.0;
            for job in queue.iter().filter(|job| job.running_step.is_some()) {
                total += self.remaining_ms(&job.request, job.running_step.unwrap_or(0))? as f64;
            }
            for job in waiting.take(position + 1) {
                total += self.job_ms(&job.request)?;
            }
            Some((total / drawers.len().max(1) as f64) as u64)
        };
        Some(Standing { position: position as u32, eta_ms: eta() })
    }

    /// When a place in the queue is likely to free up (for `Retry-After`): when the running job
    /// nearest its end is done; 10 s before any job has been timed.
    pub fn seconds_until_next_free(&self, queue: &[QueuedJob<'_>]) -> u64 {
        let running = queue.iter().filter_map(|job| Some((job, job.running_step?)));
        let next = running.filter_map(|(job, step)| self.remaining_ms(&job.request, step)).min();
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

    fn job<'a>(id: &'a str, step: Option<u32>, worker: Option<&'a str>) -> QueuedJob<'a> {
        QueuedJob { id, request: request(10, 512, 1.0), running_step: step, worker }
    }

    #[test]
    fn a_queued_job_waits_for_the_work_ahead_shared_by_the_processes_drawing() {
        let mut s = SpeedEstimate::default();
        let queue = [job("r1", Some(5), Some("a")), job("q1", None, None), job("q2", None, None)];
        // Untimed: a place, no estimate.
        assert_eq!(s.standing(&queue, "q2"), Some(Standing { position: 1, eta_ms: None }));
        assert_eq!(s.seconds_until_next_free(&queue), 10);
        s.record(&request(10, 512, 1.0), 10_000.0);
        // Half of r1 (5 s) + q1 (10 s) + q2 itself (10 s), one process drawing.
        assert_eq!(s.standing(&queue, "q2"), Some(Standing { position: 1, eta_ms: Some(25_000) }));
        assert_eq!(s.seconds_until_next_free(&queue), 5);
        // Two processes drawing share the work.
        let two = [job("r1", Some(5), Some("a")), job("r2", Some(0), Some("b")), job("q1", None, None)];
        assert_eq!(s.standing(&two, "q1"), Some(Standing { position: 0, eta_ms: Some(12_500) }));
        assert_eq!(s.standing(&two, "r1"), None, "running, not in line");
        assert_eq!(s.standing(&two, "gone"), None);
    }
}
