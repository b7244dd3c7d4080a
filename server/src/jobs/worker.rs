//! A process's image worker: claim the oldest job of the shared queue, draw it on this process's
//! engine while renewing the claim (at every step, and every third of the lease while the
//! pipeline waits for chat replies), store the picture (file, then row), count it against its
//! owner's day, and end the job's row. A cancel asked on any process reaches the engine before
//! its next step; a claim lost to another process (this one stalled past its lease) drops the
//! drawing here.

use super::{events::Change, recipe_of, ImageJobs, Origin};
use crate::{
    inference::{
        diffusion::{ImageRequest, PipelineError, Progress},
        engine::{ImageEngine, Pause, StepHooks},
    },
    storage::{day_of, now_ms, ImageRow, JobRow, Pictures},
    telemetry::catalogue::{IMAGE_DURATION, IMAGE_JOBS, IMAGE_NSFW, IMAGE_QUEUE_WAIT, IMAGE_STEP},
};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// How often an idle worker looks for work it was not told about: jobs whose lease ran out.
const POLL: Duration = Duration::from_secs(1);

/// What a worker needs besides the queue.
pub struct Worker {
    pub engine: Arc<dyn ImageEngine>,
    pub pictures: Pictures,
    pub pause: Option<Pause>,
}

/// How a drawing ended.
enum Ended {
    /// Its image is stored; whether the safety checker flagged it.
    Done {
        nsfw: Option<bool>,
    },
    Cancelled,
    Failed(String),
}

impl Ended {
    /// Its name in the job's row and in the metrics.
    fn state(&self) -> &'static str {
        match self {
            Ended::Done { .. } => "done",
            Ended::Cancelled => "cancelled",
            Ended::Failed(_) => "failed",
        }
    }
}

pub(super) async fn work(jobs: ImageJobs, worker: Worker) {
    tracing::info!(worker = %jobs.inner.me, "image worker claiming jobs");
    loop {
        let now = now_ms();
        let lease_until = now + jobs.inner.lease_ms as i64;
        match jobs.inner.db.claim_job(&jobs.inner.me, now, lease_until).await {
            Ok(Some(row)) => run(&jobs, &worker, row).await,
            Ok(None) => {
                tokio::select! {
                    _ = jobs.inner.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not claim an image job");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(job = %row.id, attempt = row.attempts))]
async fn run(jobs: &ImageJobs, worker: &Worker, row: JobRow) {
    let (request, origin) = recipe_of(&row);
    let id = row.id.as_str();
    if row.attempts > 1 {
        tracing::info!("drawing an image job again from its first step (its last process stopped)");
    }
    metrics::histogram!(IMAGE_QUEUE_WAIT).record((now_ms() - row.created_at).max(0) as f64 / 1000.0);
    let stop = Arc::new(AtomicBool::new(row.cancel_requested != 0));
    *jobs.drawing() = Some((id.to_string(), stop.clone()));
    jobs.changed(Change::Started, id).await;

    let started = Instant::now();
    let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel::<Progress>();
    let hooks = StepHooks { progress: Some(tx), cancel: stop.clone(), pause: worker.pause.clone() };
    let generation = worker.engine.generate(request.clone(), hooks);
    tokio::pin!(generation);
    let mut renewal = tokio::time::interval(Duration::from_millis(jobs.inner.lease_ms / 3));
    renewal.tick().await;
    let (mut step, mut held) = (0u32, true);
    let result = loop {
        tokio::select! {
            result = &mut generation => break result,
            Some(p) = progress.recv() => {
                metrics::histogram!(IMAGE_STEP).record(p.step_ms / 1000.0);
                // PNDM's extra UNet step must not show as step 6 of 5.
                step = (p.step as u32).min(request.steps);
                held &= renew(jobs, id, step, &stop).await;
                jobs.changed(Change::Step, id).await;
            }
            _ = renewal.tick() => held &= renew(jobs, id, step, &stop).await,
        }
    };
    *jobs.drawing() = None;
    if !held {
        tracing::warn!("another process took this image job over (this one's lease ran out); dropped here");
        return;
    }

    let ended = match result {
        Ok(output) => match store(jobs, worker, id, &request, &origin, &output.png).await {
            Ok(()) => {
                // The image is safe; a lost count only lets its owner make one more today.
                let day = day_of(now_ms());
                if let Err(err) = jobs.inner.db.add_usage(&origin.account_id, &origin.user_id, day, 0, 1).await {
                    tracing::warn!(error = %err, "could not count the image against the daily quota");
                }
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                tracing::info!(ms = ms as u64, "image job done");
                metrics::histogram!(IMAGE_DURATION).record(ms / 1000.0);
                if output.nsfw == Some(true) {
                    metrics::counter!(IMAGE_NSFW).increment(1);
                }
                Ended::Done { nsfw: output.nsfw }
            }
            Err(err) => Ended::Failed(format!("could not store the image: {err}")),
        },
        Err(PipelineError::Cancelled) => Ended::Cancelled,
        Err(err) => Ended::Failed(err.to_string()),
    };
    let (step, error, nsfw) = match &ended {
        Ended::Done { nsfw } => (request.steps, None, *nsfw),
        Ended::Failed(reason) => {
            tracing::warn!(error = %reason, "image job failed");
            (step, Some(reason.as_str()), None)
        }
        Ended::Cancelled => (step, None, None),
    };
    let me = &jobs.inner.me;
    match jobs.inner.db.end_job(id, me, ended.state(), step as i32, error, nsfw, now_ms()).await {
        Ok(true) => metrics::counter!(IMAGE_JOBS, "state" => ended.state()).increment(1),
        Ok(false) => tracing::warn!("the image job was taken over by another process before it ended here"),
        Err(err) => tracing::warn!(error = %err, "could not write the image job's end; its lease will run out"),
    }
    jobs.changed(Change::Ended, id).await;
}

/// Renew this process's claim on the job with its step; false when the claim is lost (the job
/// is stopped then). A cancel asked for meanwhile stops it too.
async fn renew(jobs: &ImageJobs, id: &str, step: u32, stop: &AtomicBool) -> bool {
    let lease_until = now_ms() + jobs.inner.lease_ms as i64;
    match jobs.inner.db.renew_job(id, &jobs.inner.me, step as i32, lease_until).await {
        Ok(Some(cancel)) => {
            if cancel {
                stop.store(true, Ordering::Relaxed);
            }
            true
        }
        Ok(None) => {
            stop.store(true, Ordering::Relaxed);
            false
        }
        // The database is away for a moment: draw on, the next renewal may get through.
        Err(err) => {
            tracing::warn!(error = %err, "could not renew the image job's lease");
            true
        }
    }
}

/// Store the picture under a server-made name, then the row that makes it visible.
async fn store(
    jobs: &ImageJobs,
    worker: &Worker,
    id: &str,
    request: &ImageRequest,
    origin: &Origin,
    png: &[u8],
) -> Result<(), String> {
    let file_name = format!("{id}.png");
    worker.pictures.put(&file_name, png.to_vec()).await.map_err(|e| e.to_string())?;
    let row = ImageRow {
        id: id.to_string(),
        account_id: origin.account_id.clone(),
        user_id: origin.user_id.clone(),
        conversation_id: origin.conversation_id.clone(),
        message_id: origin.message_id.clone(),
        prompt: request.prompt.clone(),
        negative_prompt: request.negative_prompt.clone(),
        steps: request.steps as i32,
        guidance_scale: request.guidance_scale as f64,
        seed: request.seed as i64,
        width: request.width as i32,
        height: request.height as i32,
        scheduler: request.scheduler.name().to_string(),
        model: jobs.inner.model.clone(),
        file_name,
        created_at: now_ms(),
    };
    jobs.inner.db.insert_image(&row).await.map_err(|e| e.to_string())
}
