//! Pictures drawn by an OpenAI-compatible server (`IMAGE_ENDPOINTS`): `POST
//! {base}/images/generations` with `response_format: b64_json`, plus the fields Duet, OVMS and
//! A1111-style servers read for a reproducible picture (seed, steps, guidance, negative prompt,
//! scheduler); others ignore them. The PNG is stored with Duet's own recipe chunks.

use super::pool::Pool;
use crate::inference::{
    diffusion::{image_file, ImageOutput, ImageRequest, PartTimes, PipelineError, Progress, SchedulerKind},
    engine::{BoxFuture, ImageEngine, StepHooks},
    InferenceError,
};
use base64::Engine as _;
use serde_json::{json, Value};
use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

#[derive(Clone)]
pub struct OpenAiImage {
    pub pool: Pool,
    model: Arc<str>,
    scheduler: SchedulerKind,
    client: reqwest::Client,
}

impl OpenAiImage {
    /// `scheduler`: the one named when a request names none (the endpoint's model's own is not
    /// known here; Stable Diffusion 1.5 ships PNDM).
    pub fn new(pool: Pool, model: &str, scheduler: SchedulerKind) -> OpenAiImage {
        OpenAiImage { pool, model: model.into(), scheduler, client: super::client() }
    }

    pub fn body(&self, request: &ImageRequest) -> Value {
        json!({
            "model": &*self.model,
            "prompt": request.prompt,
            "n": 1,
            "size": format!("{}x{}", request.width, request.height),
            "response_format": "b64_json",
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance_scale,
            "scheduler": request.scheduler,
        })
    }

    async fn draw(&self, request: ImageRequest, hooks: StepHooks) -> Result<ImageOutput, PipelineError> {
        let started = Instant::now();
        let body = self.body(&request).to_string();
        let key = format!("{}:{}", request.seed, request.prompt);
        let mut refused = Vec::new();
        for node in self.pool.ranked(&key) {
            let call = self.pool.post_json(&self.client, &node, "images/generations", body.clone());
            // Cancelling drops the request: the server sees its client leave.
            let response = tokio::select! {
                r = call.send() => r,
                _ = cancelled(&hooks) => return Err(PipelineError::Cancelled),
            };
            let response = match response {
                Ok(r) if r.status().is_success() => r,
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    refused.push(format!("{} answered {}", node.url, r.status()));
                    continue;
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(failed(format!("{} answered {status}: {}", node.url, text.trim())));
                }
                Err(err) => {
                    let why = format!("unreachable: {}", super::cause(&err));
                    refused.push(format!("{} is {why}", node.url));
                    self.pool.mark(&node, Err(why));
                    continue;
                }
            };
            let bytes = tokio::select! {
                b = response.bytes() => b.map_err(|e| failed(format!("{} went away: {}", node.url, super::cause(&e))))?,
                _ = cancelled(&hooks) => return Err(PipelineError::Cancelled),
            };
            let png = picture(&bytes).map_err(|e| failed(format!("{}: {e}", node.url)))?;
            let decoded = image_file::decode(&png).map_err(|e| failed(format!("{} sent no PNG: {e}", node.url)))?;
            let png = image_file::encode(&decoded.image, &request, &self.model, None)
                .map_err(|e| failed(format!("could not encode the picture: {e}")))?;
            if let Some(progress) = &hooks.progress {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                let (step, total) = (request.steps as usize, request.steps as usize);
                let _ = progress.send(Progress {
                    step,
                    total,
                    elapsed_ms,
                    step_ms: elapsed_ms as f64 / step.max(1) as f64,
                });
            }
            return Ok(ImageOutput { image: decoded.image, png, times: PartTimes::default(), nsfw: None });
        }
        let message = if refused.is_empty() {
            "no image endpoint is up (IMAGE_ENDPOINTS)".to_string()
        } else {
            format!("no image endpoint could draw it ({})", refused.join("; "))
        };
        Err(failed(message))
    }
}

impl ImageEngine for OpenAiImage {
    fn default_scheduler(&self) -> SchedulerKind {
        self.scheduler
    }

    fn generate(&self, request: ImageRequest, hooks: StepHooks) -> BoxFuture<'_, Result<ImageOutput, PipelineError>> {
        Box::pin(self.draw(request, hooks))
    }
}

fn failed(message: String) -> PipelineError {
    PipelineError::Engine(InferenceError::Generation(message))
}

async fn cancelled(hooks: &StepHooks) {
    while !hooks.cancel.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The picture in an `images/generations` answer.
fn picture(body: &[u8]) -> Result<Vec<u8>, String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| format!("an unreadable answer ({e})"))?;
    let b64 = answer["data"][0]["b64_json"].as_str().ok_or("no data[0].b64_json in the answer")?;
    base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("bad base64 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_its_recipe_and_the_answer_its_picture() {
        let engine = OpenAiImage::new(Pool::endpoints(&[], None), "sd", SchedulerKind::Pndm);
        let request = ImageRequest {
            prompt: "a fox".into(),
            negative_prompt: "blur".into(),
            steps: 4,
            guidance_scale: 7.5,
            width: 64,
            height: 96,
            seed: 42,
            scheduler: SchedulerKind::EulerA,
        };
        let body = engine.body(&request);
        assert_eq!(body["size"], "64x96");
        assert_eq!((body["seed"].as_u64(), body["num_inference_steps"].as_u64()), (Some(42), Some(4)));
        assert_eq!(body["scheduler"], serde_json::to_value(SchedulerKind::EulerA).unwrap());
        assert_eq!(body["response_format"], "b64_json");
        let answer = json!({"data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(b"png")}]});
        assert_eq!(picture(answer.to_string().as_bytes()).unwrap(), b"png");
        assert!(picture(b"{\"data\": []}").unwrap_err().contains("b64_json"));
    }
}
