//! Image jobs: one queue shared by every process over the database. A job is a row (`image_jobs`),
//! inserted when accepted within the queue's bound and its owner's limits (counted over all
//! processes), claimed by one process's worker at a time with a lease it renews while drawing
//! (`worker.rs`), and ended by that process. A process that dies leaves its lease to run out;
//! another then draws the job again from the first step (the same seed gives the same picture).
//! On SQLite one process owns the file, and a restart queues again at once what was drawing.
//! Changes are announced to every process (`events.rs`), so a job is followed and cancelled
//! through any of them; queue places and estimates come from the rows.

mod estimate;
mod events;
mod worker;

use crate::{
    inference::diffusion::{ImageRequest, SchedulerKind},
    storage::{now_ms, Database, JobCounts, JobRow, StorageError, JOB_CHANNEL},
    telemetry::catalogue::IMAGE_JOBS,
};
use app::types::{ImageParameters, JobInfo, JobStatus};
use estimate::{QueuedJob, SpeedEstimate};
pub use events::next_update;
use events::{Change, Followers};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};
use tokio::sync::{broadcast, Notify};
pub use worker::Worker;

/// Where a job came from, stored with its image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    /// The owning account: only it can see, follow or cancel the job.
    pub account_id: String,
    /// The account's end user (`""`: none named).
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
    /// Jobs that may wait, all processes' together.
    capacity: usize,
    model: String,
    mock: bool,
    db: Database,
    /// How long a claim holds unless renewed.
    lease_ms: u64,
    /// This process's name in the rows it claims.
    me: String,
    /// Rung when a job is queued, so an idle worker claims it at once.
    wake: Notify,
    followers: Followers,
    speed: Mutex<SpeedEstimate>,
    /// The job this process draws, and the flag that stops it before its next step.
    drawing: Mutex<Option<(String, Arc<AtomicBool>)>>,
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

/// Why `submit` did not insert a job.
enum Refused<E> {
    Full(i64),
    Owner(E),
}

impl ImageJobs {
    /// A queue of at most `capacity` waiting jobs over `db`; `model` names the images' model, and
    /// a claimed job's lease lasts `lease_ms` unless renewed.
    /// `me` names this process in the rows it claims.
    pub fn new(capacity: usize, model: String, mock: bool, db: Database, lease_ms: u64, me: &str) -> Self {
        let inner = Inner {
            capacity,
            model,
            mock,
            db,
            lease_ms,
            me: me.to_string(),
            wake: Notify::new(),
            followers: Followers::default(),
            speed: Mutex::new(SpeedEstimate::default()),
            drawing: Mutex::new(None),
        };
        ImageJobs { inner: Arc::new(inner) }
    }

    /// Join the shared queue: on SQLite queue again what was drawing when the last process
    /// stopped (the count is returned); on Postgres start hearing other processes' changes.
    pub async fn resume(&self) -> Result<u64, StorageError> {
        let requeued = match &self.inner.db {
            Database::Sqlite(_) => self.inner.db.requeue_running_jobs(now_ms()).await?,
            Database::Postgres(pool) => {
                tokio::spawn(listen(self.clone(), pool.clone()));
                0
            }
        };
        if requeued > 0 {
            tracing::info!(jobs = requeued, "image jobs that were drawing when the server stopped are queued again");
        }
        self.relearn().await;
        self.inner.wake.notify_one();
        Ok(requeued)
    }

    /// Start the worker task that claims jobs and draws them on `worker.engine`.
    pub fn start(&self, worker: Worker) {
        tokio::spawn(worker::work(self.clone(), worker));
    }

    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// Jobs waiting and jobs drawing now, every process's.
    pub async fn load(&self) -> Result<(usize, usize), StorageError> {
        let queue = self.inner.db.unfinished_jobs().await?;
        let running = queue.iter().filter(|row| row.status == "running").count();
        Ok((queue.len() - running, running))
    }

    /// Queue a job if `admit` allows it given its owner's jobs queued or running now, and the
    /// queue has room: checked and inserted in one step for all processes.
    pub async fn submit<E: From<JobError>>(
        &self,
        request: ImageRequest,
        origin: Origin,
        admit: impl FnOnce(JobCounts) -> Result<(), E>,
    ) -> Result<JobInfo, E> {
        let row = self.new_row(&request, &origin);
        let capacity = self.inner.capacity as i64;
        let decided = self.inner.db.enqueue_job(&row, &origin.account_id, &origin.user_id, |counts| {
            admit(counts).map_err(Refused::Owner)?;
            if counts.queued >= capacity {
                return Err(Refused::Full(counts.queued));
            }
            Ok(())
        });
        match decided.await.map_err(JobError::from)? {
            Ok(()) => {}
            Err(Refused::Owner(refusal)) => return Err(refusal),
            Err(Refused::Full(queued)) => {
                let retry_after_s = self.seconds_until_next_free().await.clamp(1, 600);
                metrics::counter!(IMAGE_JOBS, "state" => "rejected").increment(1);
                return Err(JobError::QueueFull { queued: queued as usize, retry_after_s }.into());
            }
        }
        tracing::info!(job = %row.id, "image job queued");
        self.changed(Change::Queued, &row.id).await;
        Ok(self.view(&row).await.map_err(JobError::from)?)
    }

    /// Record a job that failed before it could run (e.g. a picture a chat reply asked for while
    /// the queue was full), so the caller can see why.
    pub async fn reject(&self, request: ImageRequest, origin: Origin, reason: String) -> JobInfo {
        let mut row = self.new_row(&request, &origin);
        (row.status, row.error, row.finished_at) = ("failed".into(), Some(reason), Some(now_ms()));
        if let Err(err) = self.inner.db.insert_job(&row).await {
            tracing::warn!(job = %row.id, error = %err, "could not store a refused image job");
        }
        metrics::counter!(IMAGE_JOBS, "state" => "rejected").increment(1);
        info_from_row(&row, self.inner.mock)
    }

    fn new_row(&self, request: &ImageRequest, origin: &Origin) -> JobRow {
        new_row(uuid::Uuid::new_v4().to_string(), request, origin, &self.inner.model)
    }

    /// One of the account's jobs, with its place in the queue and estimate while it waits.
    pub async fn get(&self, account: &str, id: &str) -> Result<Option<JobInfo>, StorageError> {
        match self.inner.db.job(account, id).await? {
            Some(row) => Ok(Some(self.view(&row).await?)),
            None => Ok(None),
        }
    }

    /// The jobs queued or drawing now that `keep` picks, oldest first, each with its row and its
    /// standing (one read of the shared queue for all of them).
    pub async fn unfinished(&self, keep: impl Fn(&JobRow) -> bool) -> Result<Vec<(JobRow, JobInfo)>, StorageError> {
        let rows = self.inner.db.unfinished_jobs().await?;
        let queue = queued_jobs(&rows);
        Ok(rows.iter().filter(|row| keep(row)).map(|row| (row.clone(), self.view_in(row, &queue))).collect())
    }

    /// One of the account's jobs now and a receiver of its later changes (closed after its last).
    pub async fn watch(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<(JobInfo, broadcast::Receiver<JobInfo>)>, StorageError> {
        // Listening first: a change between reading the row and listening is not missed.
        let updates = self.inner.followers.follow(id);
        Ok(self.get(account, id).await?.map(|now| (now, updates)))
    }

    /// Cancel one of the account's jobs: a waiting one at once, a drawing one (on any process)
    /// before its next step. `None` when it is not the account's.
    pub async fn cancel(&self, account: &str, id: &str) -> Result<Option<JobInfo>, StorageError> {
        let Some((row, asked)) = self.inner.db.cancel_job(account, id, now_ms()).await? else { return Ok(None) };
        match row.status.as_str() {
            _ if !asked => {}
            "cancelled" => {
                metrics::counter!(IMAGE_JOBS, "state" => "cancelled").increment(1);
                self.changed(Change::Ended, id).await;
            }
            "running" => {
                self.stop_if_drawing(id);
                self.changed(Change::Cancel, id).await;
            }
            _ => {}
        }
        Ok(Some(self.view(&row).await?))
    }

    /// A job as its row tells it, with its standing in the shared queue while it waits or draws.
    pub async fn view(&self, row: &JobRow) -> Result<JobInfo, StorageError> {
        let info = info_from_row(row, self.inner.mock);
        if info.status.is_final() {
            return Ok(info);
        }
        let queue = self.inner.db.unfinished_jobs().await?;
        Ok(self.view_in(row, &queued_jobs(&queue)))
    }

    /// A job waiting or drawing as its row tells it, with its standing in `queue` (the shared
    /// queue as read once for several jobs).
    fn view_in(&self, row: &JobRow, queue: &[QueuedJob<'_>]) -> JobInfo {
        let mut info = info_from_row(row, self.inner.mock);
        let speed = *self.speed();
        match info.status {
            JobStatus::Queued => {
                if let Some(standing) = speed.standing(queue, &row.id) {
                    (info.position, info.eta_ms) = (Some(standing.position), standing.eta_ms);
                }
            }
            JobStatus::Running => {
                let (request, _) = recipe_of(row);
                info.eta_ms = speed.remaining_ms(&request, info.step);
            }
            _ => {}
        }
        info
    }

    /// When a place in the queue is likely to free up.
    async fn seconds_until_next_free(&self) -> u64 {
        let queue = self.inner.db.unfinished_jobs().await.unwrap_or_default();
        self.speed().seconds_until_next_free(&queued_jobs(&queue))
    }

    fn speed(&self) -> std::sync::MutexGuard<'_, SpeedEstimate> {
        self.inner.speed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drawing(&self) -> std::sync::MutexGuard<'_, Option<(String, Arc<AtomicBool>)>> {
        self.inner.drawing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop the job if this process draws it.
    fn stop_if_drawing(&self, id: &str) {
        if let Some((drawing, stop)) = self.drawing().as_ref() {
            if drawing == id {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Learn how long drawing takes from the newest jobs drawn (by any process).
    async fn relearn(&self) {
        let Ok(rows) = self.inner.db.recent_done_jobs(8).await else { return };
        let mut speed = SpeedEstimate::default();
        for row in rows.iter().rev() {
            let (Some(started), Some(finished)) = (row.started_at, row.finished_at) else { continue };
            speed.record(&recipe_of(row).0, (finished - started).max(1) as f64);
        }
        *self.speed() = speed;
    }

    /// Announce a change written to a job's row: to every process over Postgres, here on SQLite.
    async fn changed(&self, change: Change, id: &str) {
        if let Database::Postgres(_) = self.inner.db {
            match self.inner.db.notify_jobs(&change.payload(id)).await {
                Ok(()) => return,
                Err(err) => tracing::warn!(job = %id, error = %err, "could not announce an image job's change"),
            }
        }
        self.heard(change, id).await;
    }

    /// A job changed (here or in another process): wake the worker for new work, stop a job
    /// this process draws when asked, and pass the new state on to those following.
    async fn heard(&self, change: Change, id: &str) {
        match change {
            Change::Queued => self.inner.wake.notify_one(),
            Change::Cancel => self.stop_if_drawing(id),
            Change::Ended => self.relearn().await,
            _ => {}
        }
        if self.inner.followers.is_followed(id) {
            self.refresh(id).await;
        }
        if change.moves_queue() {
            self.refresh_all(false).await;
        }
    }

    /// Read a followed job's row again and pass it on.
    async fn refresh(&self, id: &str) {
        match self.inner.db.job_by_id(id).await {
            Ok(Some(row)) => match self.view(&row).await {
                Ok(info) => self.inner.followers.publish(info),
                Err(err) => tracing::warn!(job = %id, error = %err, "could not read the image queue"),
            },
            Ok(None) => {}
            Err(err) => tracing::warn!(job = %id, error = %err, "could not read an image job"),
        }
    }

    /// Pass on the state of every followed job still waiting or drawing (their places and
    /// estimates moved), or of every followed job (`all`: after missing announcements).
    async fn refresh_all(&self, all: bool) {
        let followed = self.inner.followers.followed();
        if followed.is_empty() {
            return;
        }
        let rows = match self.inner.db.unfinished_jobs().await {
            Ok(rows) => rows,
            Err(err) => return tracing::warn!(error = %err, "could not read the image queue"),
        };
        // One read of the queue for every followed job in it; the others (ended, perhaps while
        // announcements were missed) are read one by one.
        let queue = queued_jobs(&rows);
        for id in followed {
            match rows.iter().find(|row| row.id == id) {
                Some(row) => self.inner.followers.publish(self.view_in(row, &queue)),
                None if all => self.refresh(&id).await,
                None => {}
            }
        }
    }
}

/// Hear every process's job changes on Postgres. A connection lost and made again may have
/// missed some: every followed job is read again then.
async fn listen(jobs: ImageJobs, pool: sqlx::PgPool) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for image job changes; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(JOB_CHANNEL).await {
            tracing::warn!(error = %err, "cannot listen for image job changes; trying again");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        jobs.refresh_all(true).await;
        jobs.inner.wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) => match Change::parse(note.payload()) {
                    Some((change, id)) => jobs.heard(change, id).await,
                    None => tracing::warn!(payload = note.payload(), "unknown image job announcement"),
                },
                // The connection dropped (the next call makes it again): catch up.
                Ok(None) => {
                    jobs.refresh_all(true).await;
                    jobs.inner.wake.notify_one();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "lost the image job announcements; listening again");
                    break;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The shared queue's rows as the estimate reads them.
fn queued_jobs(queue: &[JobRow]) -> Vec<QueuedJob<'_>> {
    queue
        .iter()
        .map(|row| QueuedJob {
            id: &row.id,
            request: recipe_of(row).0,
            running_step: (row.status == "running").then_some(row.step as u32),
            worker: row.worker.as_deref(),
        })
        .collect()
}

/// A new job's row: queued, with its recipe and origin.
fn new_row(id: String, r: &ImageRequest, o: &Origin, model: &str) -> JobRow {
    JobRow {
        id,
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
        model: model.to_string(),
        status: "queued".into(),
        step: 0,
        error: None,
        nsfw: None,
        attempts: 0,
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        worker: None,
        lease_until: None,
        cancel_requested: 0,
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

/// A job as its row tells it (no queue place or estimate: `ImageJobs::view` adds those).
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
        conversation_id: row.conversation_id.clone(),
    }
}

#[cfg(test)]
pub(crate) fn sample_row(id: &str) -> JobRow {
    let request = ImageRequest {
        prompt: "a fox".into(),
        negative_prompt: String::new(),
        steps: 10,
        guidance_scale: 7.5,
        width: 256,
        height: 256,
        seed: 1,
        scheduler: SchedulerKind::Ddim,
    };
    new_row(id.into(), &request, &Origin { account_id: "acc".into(), ..Origin::default() }, "m")
}
