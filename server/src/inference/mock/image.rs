//! An image engine that paints a gradient from the prompt's hash and the seed: real PNGs with the
//! same recipe chunks as the real engine's, the same bytes for the same request, progress per step.

use crate::inference::{
    diffusion::{image_file, ImageOutput, ImageRequest, PartTimes, PipelineError, Progress, SchedulerKind},
    engine::{BoxFuture, ImageEngine, StepHooks},
    fnv1a, InferenceError, FNV_OFFSET,
};
use std::{sync::atomic::Ordering, time::Duration, time::Instant};

#[derive(Clone)]
pub struct MockImage {
    /// Written into the PNG's recipe, like the real model's name.
    pub model: String,
    /// Time each step takes, so progress can be watched.
    pub step_time: Duration,
}

/// A diagonal gradient between two colours picked by the prompt and seed.
pub fn paint(request: &ImageRequest) -> image_file::RgbImage {
    let h = fnv1a(FNV_OFFSET, request.prompt.bytes()) ^ (request.seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let from = [(h >> 8) as u8, (h >> 16) as u8, (h >> 24) as u8];
    let to = [(h >> 32) as u8, (h >> 40) as u8, (h >> 48) as u8];
    let (w, hgt) = (request.width, request.height);
    let mut pixels = Vec::with_capacity((w * hgt * 3) as usize);
    for y in 0..hgt {
        for x in 0..w {
            let t = (x + y) as f32 / (w + hgt - 2).max(1) as f32;
            pixels.extend((0..3).map(|c| (from[c] as f32 + (to[c] as f32 - from[c] as f32) * t).round() as u8));
        }
    }
    image_file::RgbImage { width: w, height: hgt, pixels }
}

impl ImageEngine for MockImage {
    fn default_scheduler(&self) -> SchedulerKind {
        SchedulerKind::Pndm
    }

    fn generate(&self, request: ImageRequest, hooks: StepHooks) -> BoxFuture<'_, Result<ImageOutput, PipelineError>> {
        Box::pin(async move {
            request.validate()?;
            let started = Instant::now();
            let total = request.steps as usize;
            for step in 1..=total {
                if hooks.cancel.load(Ordering::Relaxed) {
                    return Err(PipelineError::Cancelled);
                }
                let step_started = Instant::now();
                tokio::time::sleep(self.step_time).await;
                if let Some(tx) = &hooks.progress {
                    let step_ms = step_started.elapsed().as_secs_f64() * 1000.0;
                    let _ =
                        tx.send(Progress { step, total, elapsed_ms: started.elapsed().as_millis() as u64, step_ms });
                }
            }
            let model = self.model.clone();
            let made = tokio::task::spawn_blocking(move || {
                let image = paint(&request);
                let png = image_file::encode(&image, &request, &model, None);
                (image, png)
            })
            .await
            .map_err(|e| InferenceError::Generation(format!("mock image: {e}")))?;
            let (image, png) = made;
            let png = png.map_err(|e| InferenceError::Generation(e.to_string()))?;
            Ok(ImageOutput { image, png, times: PartTimes::default(), nsfw: None })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{atomic::AtomicBool, Arc};

    fn request(prompt: &str, seed: u32) -> ImageRequest {
        ImageRequest {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            steps: 3,
            guidance_scale: 7.5,
            width: 256,
            height: 264,
            seed,
            scheduler: SchedulerKind::Pndm,
        }
    }

    fn hooks() -> StepHooks {
        StepHooks { progress: None, cancel: Arc::new(AtomicBool::new(false)), pause: None }
    }

    #[tokio::test]
    async fn same_request_same_png_with_the_recipe() {
        let engine = MockImage { model: "mock-sd".into(), step_time: Duration::ZERO };
        let a = engine.generate(request("a fox", 1), hooks()).await.unwrap();
        let b = engine.generate(request("a fox", 1), hooks()).await.unwrap();
        let c = engine.generate(request("a fox", 2), hooks()).await.unwrap();
        assert_eq!(a.png, b.png);
        assert_ne!(a.image.pixels, c.image.pixels);
        assert_eq!((a.image.width, a.image.height), (256, 264));
        assert_eq!(image_file::read_request(&a.png).unwrap(), request("a fox", 1));
    }

    #[tokio::test]
    async fn reports_steps_and_stops_when_cancelled() {
        let engine = MockImage { model: "m".into(), step_time: Duration::ZERO };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let h = StepHooks { progress: Some(tx), ..hooks() };
        engine.generate(request("x", 1), h).await.unwrap();
        let steps: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok()).map(|p| p.step).collect();
        assert_eq!(steps, [1, 2, 3]);
        let h = hooks();
        h.cancel.store(true, Ordering::Relaxed);
        assert!(matches!(engine.generate(request("x", 1), h).await, Err(PipelineError::Cancelled)));
    }
}
