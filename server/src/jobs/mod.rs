//! Image jobs: one bounded queue in front of the image engine. A job has an id, a state, progress
//! and a cancel flag; watchers subscribe to its updates. One worker task feeds the engine one job
//! at a time, stores each finished image (file, then database row) and learns how long a step
//! takes, so queued jobs get an estimate. Every job is also a row (`image_jobs`), written when it
//! is accepted and at each change after: a restarted server queues again what was waiting or
//! drawing ([`ImageJobs::recover`]), and a job is answered for once it has left memory.

mod estimate;
mod queue;

use crate::{
    inference::{
        diffusion::{ImageRequest, PipelineError, Progress, SchedulerKind},
        engine::{ImageEngine, Pause, StepHooks},
    },
    storage::{now_ms, Database, ImageRow, JobRow, StorageError},
    telemetry::catalogue::{IMAGE_DURATION, IMAGE_NSFW, IMAGE_STEP},
};
use app::types::{ImageParameters, JobInfo, JobStatus};
use futures::future::OptionFuture;
use queue::{Ended, Job, Queue, Started};
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};
use tokio::sync::{broadcast, Notify};

/// What admission control gave a job (`service::limits::Admission`), opaque here: held while the
/// job waits and renders (it counts against its owner's concurrency limit and the day's images
/// until dropped), and told when the image is stored, so the image counts against the quota.
pub trait JobAdmission: Send + Sync + 'static {
    fn image_stored(&self) -> futures::future::BoxFuture<'_, Result<(), StorageError>>;
}

/// Where a job came from, stored with its image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    /// The owning account: only it can see, follow or cancel the job.
    pub account_id: String,
    pub user_id: String,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the image queue is full ({queued} jobs waiting); try again in {retry_after_s} s")]
    QueueFull { queued: usize, retry_after_s: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Clone)]
pub struct ImageJobs {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Queue>,
    wake: Notify,
    capacity: usize,
    model: String,
    mock: bool,
    /// Where the jobs' rows and the finished images' rows are written.
    db: Database,
}

/// What the worker needs besides the queue.
pub struct Worker {
    pub engine: Arc<dyn ImageEngine>,
    pub images_dir: PathBuf,
    pub pause: Option<Pause>,
}

/// A watcher's next update; `None` once the job is forgotten. A watcher that fell behind skips
/// to the newest state (each update is the whole state, so nothing is lost).
pub async fn next_update(updates: &mut broadcast::Receiver<JobInfo>) -> Option<JobInfo> {
    loop {
        match updates.recv().await {
            Ok(info) => return Some(info),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

pub fn image_url(id: &str) -> String {
    format!("/images/{id}.png")
}

pub fn status_url(id: &str) -> String {
    format!("/jobs/{id}")
}

pub fn parameters(request: &ImageRequest, model: &str) -> ImageParameters {
    ImageParameters {
        prompt: request.prompt.clone(),
        negative_prompt: request.negative_prompt.clone(),
        num_inference_steps: request.steps,
        guidance_scale: request.guidance_scale,
        seed: request.seed,
        width: request.width,
        height: request.height,
        scheduler: request.scheduler.name().to_string(),
        model: model.to_string(),
    }
}

impl ImageJobs {
    /// A queue holding at most `capacity` waiting jobs; `model` names the images' model.
    pub fn new(capacity: usize, model: String, mock: bool, db: Database) -> Self {
        let inner = Inner { queue: Mutex::new(Queue::default()), wake: Notify::new(), capacity, model, mock, db };
        ImageJobs { inner: Arc::new(inner) }
    }

    /// Queue again, oldest first, the jobs that were waiting or drawing when the server last
    /// stopped (drawn from the first step: the same seed gives the same picture). `meter`
    /// gives each the count of its image against its owner's daily quota. Only on SQLite, whose
    /// file one server owns: several servers may share a Postgres database, and one starting must
    /// not take the jobs another is drawing (that needs jobs claimed through their rows, with
    /// leases: not yet).
    pub async fn recover(&self, meter: impl Fn(&Origin) -> Box<dyn JobAdmission>) -> Result<usize, StorageError> {
        if !matches!(self.inner.db, Database::Sqlite(_)) {
            return Ok(0);
        }
        let rows = self.inner.db.requeue_unfinished_jobs().await?;
        let count = rows.len();
        let mut q = self.lock();
        for row in rows {
            let (request, origin) = recipe_of(&row);
            let mut info = info_from_row(&row, self.inner.mock);
            info.status = JobStatus::Queued;
            info.step = 0;
            let mut job = Job::new(info, request, origin);
            job.admission = Some(meter(&job.origin));
            q.restore(job);
        }
        drop(q);
        if count > 0 {
            tracing::info!(jobs = count, "image jobs queued again after a restart");
            self.inner.wake.notify_one();
        }
        Ok(count)
    }

    /// Start the worker task that runs jobs on `worker.engine`.
    pub fn start(&self, worker: Worker) {
        let jobs = self.clone();
        tokio::spawn(async move { jobs.work(worker).await });
    }

    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// Jobs waiting, and jobs running (0 or 1), now.
    pub fn load(&self) -> (usize, usize) {
        let q = self.lock();
        (q.waiting.len(), usize::from(q.running.is_some()))
    }

    /// Queue a job, or refuse when the queue is full. Its row is written before it can start.
    pub async fn submit(
        &self,
        request: ImageRequest,
        origin: Origin,
        admission: Option<Box<dyn JobAdmission>>,
    ) -> Result<JobInfo, JobError> {
        let mut job = self.new_job(request, origin);
        job.admission = admission;
        {
            let mut q = self.lock();
            let queued = q.waiting.len();
            q.reserve(self.inner.capacity).map_err(|retry_after_s| JobError::QueueFull { queued, retry_after_s })?;
        }
        // The place goes back if the row cannot be written, or the caller goes away meanwhile.
        let mut place = Place { jobs: self, taken: false };
        self.inner.db.insert_job(&row_of(&job)).await?;
        place.taken = true;
        let info = self.lock().queue_reserved(job);
        self.inner.wake.notify_one();
        tracing::info!(job = %info.job_id, "image job queued");
        Ok(info)
    }

    /// Record a job that failed before it could run (e.g. a picture a chat reply asked for while
    /// the queue was full), so the caller can see why.
    pub async fn reject(&self, request: ImageRequest, origin: Origin, reason: String) -> JobInfo {
        let job = self.new_job(request, origin);
        let mut row = row_of(&job);
        (row.status, row.error, row.finished_at) = ("failed".into(), Some(reason.clone()), Some(now_ms()));
        if let Err(err) = self.inner.db.insert_job(&row).await {
            tracing::warn!(job = %row.id, error = %err, "could not store a refused image job");
        }
        self.lock().reject(job, reason)
    }

    fn new_job(&self, request: ImageRequest, origin: Origin) -> Job {
        let id = uuid::Uuid::new_v4().to_string();
        let info = JobInfo {
            job_id: id.clone(),
            status: JobStatus::Queued,
            position: None,
            eta_ms: None,
            step: 0,
            total_steps: request.steps,
            error: None,
            image_url: image_url(&id),
            status_url: status_url(&id),
            parameters: parameters(&request, &self.inner.model),
            nsfw: None,
            mock: self.inner.mock,
            created_at: now_ms(),
            started_at: None,
            finished_at: None,
        };
        Job::new(info, request, origin)
    }

    /// The account's job with its queue position and estimate; `None` when not in memory or
    /// someone else's.
    pub fn get(&self, account: &str, id: &str) -> Option<JobInfo> {
        let q = self.lock();
        q.owned(account, id)?;
        q.view(id)
    }

    /// The account's job now and a receiver of its later updates.
    pub fn watch(&self, account: &str, id: &str) -> Option<(JobInfo, broadcast::Receiver<JobInfo>)> {
        let q = self.lock();
        let rx = q.owned(account, id)?.updates.subscribe();
        Some((q.view(id)?, rx))
    }

    /// Cancel one of the account's jobs: a waiting one at once, a running one before its next step.
    pub fn cancel(&self, account: &str, id: &str) -> Option<JobInfo> {
        let mut q = self.lock();
        let was_waiting = q.owned(account, id)?.info.status == JobStatus::Queued;
        let info = q.cancel(account, id)?;
        drop(q);
        if was_waiting {
            // A running job's row is written when it stops.
            let (db, id) = (self.inner.db.clone(), id.to_string());
            tokio::spawn(async move {
                if let Err(err) = db.job_ended(&id, "cancelled", 0, None, None, now_ms()).await {
                    tracing::warn!(job = %id, error = %err, "could not store a cancelled image job");
                }
            });
        }
        Some(info)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn work(&self, worker: Worker) {
        if let Err(err) = tokio::fs::create_dir_all(&worker.images_dir).await {
            tracing::error!(dir = %worker.images_dir.display(), error = %err, "cannot create the images folder");
        }
        loop {
            let next = self.lock().start_next();
            match next {
                Some((id, started)) => self.run(&worker, &id, started).await,
                None => self.inner.wake.notified().await,
            }
        }
    }

    async fn run(&self, worker: &Worker, id: &str, job: Started) {
        let Started { request, origin, cancel, admission } = job;
        let started = Instant::now();
        self.journal(id, self.inner.db.job_started(id, now_ms())).await;
        let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let hooks = StepHooks { progress: Some(tx), cancel, pause: worker.pause.clone() };
        let generation = worker.engine.generate(request.clone(), hooks);
        tokio::pin!(generation);
        let result = loop {
            tokio::select! {
                result = &mut generation => break result,
                Some(p) = progress.recv() => {
                    metrics::histogram!(IMAGE_STEP).record(p.step_ms / 1000.0);
                    // PNDM's extra UNet step must not show as step 6 of 5.
                    let step = (p.step as u32).min(request.steps);
                    self.lock().progress(id, step);
                    self.journal(id, self.inner.db.job_step(id, step as i32)).await;
                }
            }
        };
        let ended = match result {
            Ok(output) => match self.store(worker, id, &request, &origin, &output.png).await {
                Ok(()) => {
                    // The image is safe; a lost count only lets its owner make one more today.
                    if let Some(Err(err)) = OptionFuture::from(admission.as_ref().map(|a| a.image_stored())).await {
                        tracing::warn!(job = %id, error = %err, "could not count the image against the daily quota");
                    }
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    tracing::info!(job = %id, ms = ms as u64, "image job done");
                    metrics::histogram!(IMAGE_DURATION).record(ms / 1000.0);
                    if output.nsfw == Some(true) {
                        metrics::counter!(IMAGE_NSFW).increment(1);
                    }
                    Ended::Done { nsfw: output.nsfw, ms }
                }
                Err(err) => Ended::Failed(format!("could not store the image: {err}")),
            },
            Err(PipelineError::Cancelled) => Ended::Cancelled,
            Err(err) => Ended::Failed(err.to_string()),
        };
        if let Ended::Failed(reason) = &ended {
            tracing::warn!(job = %id, error = %reason, "image job failed");
        }
        // Counted already if stored: its owner's limits are free before anyone learns it ended.
        drop(admission);
        let step = match ended {
            Ended::Done { .. } => request.steps,
            _ => self.lock().jobs.get(id).map_or(0, |job| job.info.step),
        };
        let stored = self.inner.db.job_ended(id, ended.state(), step as i32, ended.error(), ended.nsfw(), now_ms());
        self.journal(id, stored).await;
        self.lock().end(id, ended);
    }

    /// Write a change to the job's row; a failure is logged, and the job goes on (its picture
    /// matters more than its journal).
    async fn journal(&self, id: &str, write: impl std::future::Future<Output = Result<(), StorageError>>) {
        if let Err(err) = write.await {
            tracing::warn!(job = %id, error = %err, "could not write the image job's row");
        }
    }

    /// Write the file under a server-made name, then the row that makes it visible.
    async fn store(
        &self,
        worker: &Worker,
        id: &str,
        request: &ImageRequest,
        origin: &Origin,
        png: &[u8],
    ) -> Result<(), String> {
        let file_name = format!("{id}.png");
        let path = worker.images_dir.join(&file_name);
        let partial = worker.images_dir.join(format!("{id}.png.part"));
        tokio::fs::write(&partial, png).await.map_err(|e| e.to_string())?;
        tokio::fs::rename(&partial, &path).await.map_err(|e| e.to_string())?;
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
            model: self.inner.model.clone(),
            file_name,
            created_at: now_ms(),
        };
        self.inner.db.insert_image(&row).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A place held in the queue for a job whose row is being written; given back unless taken.
struct Place<'a> {
    jobs: &'a ImageJobs,
    taken: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.taken {
            self.jobs.lock().release();
        }
    }
}

/// A new job's row: queued, with its recipe and origin.
fn row_of(job: &Job) -> JobRow {
    let (r, o) = (&job.request, &job.origin);
    JobRow {
        id: job.info.job_id.clone(),
        account_id: o.account_id.clone(),
        user_id: o.user_id.clone(),
        conversation_id: o.conversation_id.clone(),
        message_id: o.message_id.clone(),
        prompt: r.prompt.clone(),
        negative_prompt: r.negative_prompt.clone(),
        steps: r.steps as i32,
        guidance_scale: r.guidance_scale as f64,
        seed: r.seed as i64,
        width: r.width as i32,
        height: r.height as i32,
        scheduler: r.scheduler.name().to_string(),
        model: job.info.parameters.model.clone(),
        status: "queued".into(),
        step: 0,
        error: None,
        nsfw: None,
        attempts: 0,
        created_at: job.info.created_at,
        started_at: None,
        finished_at: None,
    }
}

/// The recipe and origin a row holds.
fn recipe_of(row: &JobRow) -> (ImageRequest, Origin) {
    let request = ImageRequest {
        prompt: row.prompt.clone(),
        negative_prompt: row.negative_prompt.clone(),
        steps: row.steps as u32,
        guidance_scale: row.guidance_scale as f32,
        width: row.width as u32,
        height: row.height as u32,
        seed: row.seed as u32,
        scheduler: SchedulerKind::parse(&row.scheduler).unwrap_or(SchedulerKind::Pndm),
    };
    let origin = Origin {
        account_id: row.account_id.clone(),
        user_id: row.user_id.clone(),
        conversation_id: row.conversation_id.clone(),
        message_id: row.message_id.clone(),
    };
    (request, origin)
}

/// A job as its row tells it (no queue position or estimate: those live with the queue).
pub fn info_from_row(row: &JobRow, mock: bool) -> JobInfo {
    let status = match row.status.as_str() {
        "queued" => JobStatus::Queued,
        "running" => JobStatus::Running,
        "done" => JobStatus::Done,
        "cancelled" => JobStatus::Cancelled,
        _ => JobStatus::Failed,
    };
    let (request, _) = recipe_of(row);
    JobInfo {
        job_id: row.id.clone(),
        status,
        position: None,
        eta_ms: None,
        step: row.step as u32,
        total_steps: row.steps as u32,
        error: row.error.clone(),
        image_url: image_url(&row.id),
        status_url: status_url(&row.id),
        parameters: parameters(&request, &row.model),
        nsfw: row.nsfw.map(|n| n != 0),
        mock,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
    }
}
