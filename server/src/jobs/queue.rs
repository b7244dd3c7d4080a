//! The image queue's state machine, without threads or I/O: jobs wait in order, one runs, and
//! each ends done, failed or cancelled; positions and estimates follow. `ImageJobs` (mod.rs)
//! holds it behind a lock and feeds the engine; every transition is a method here, unit-tested.

use super::{estimate::SpeedEstimate, JobAdmission, Origin};
use crate::{
    inference::diffusion::ImageRequest,
    storage::now_ms,
    telemetry::catalogue::{IMAGE_JOBS, IMAGE_QUEUE_WAIT},
};
use app::types::{JobInfo, JobStatus};
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};
use tokio::sync::broadcast;

/// Finished jobs remembered in memory (older ones are answered from the database).
pub const KEEP_FINISHED: usize = 512;

pub(super) struct Job {
    pub info: JobInfo,
    pub request: ImageRequest,
    pub origin: Origin,
    /// Counts against the owner's limits until the job ends; the worker holds it while running.
    pub admission: Option<Box<dyn JobAdmission>>,
    pub cancel: Arc<AtomicBool>,
    pub updates: broadcast::Sender<JobInfo>,
}

impl Job {
    pub fn new(info: JobInfo, request: ImageRequest, origin: Origin) -> Job {
        let (updates, _) = broadcast::channel(64);
        Job { info, request, origin, admission: None, cancel: Arc::new(AtomicBool::new(false)), updates }
    }
}

/// A job the worker took from the queue.
pub(super) struct Started {
    pub request: ImageRequest,
    pub origin: Origin,
    pub cancel: Arc<AtomicBool>,
    pub admission: Option<Box<dyn JobAdmission>>,
}

/// How a running job ended.
pub(super) enum Ended {
    /// Its image is stored; whether the safety checker flagged it, and how long it took.
    Done {
        nsfw: Option<bool>,
        ms: f64,
    },
    Cancelled,
    Failed(String),
}

impl Ended {
    /// Its name in the job's row and in the metrics.
    pub fn state(&self) -> &'static str {
        match self {
            Ended::Done { .. } => "done",
            Ended::Cancelled => "cancelled",
            Ended::Failed(_) => "failed",
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Ended::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    pub fn nsfw(&self) -> Option<bool> {
        match self {
            Ended::Done { nsfw, .. } => *nsfw,
            _ => None,
        }
    }
}

#[derive(Default)]
pub(super) struct Queue {
    pub jobs: HashMap<String, Job>,
    pub waiting: VecDeque<String>,
    pub running: Option<String>,
    pub finished: VecDeque<String>,
    pub speed: SpeedEstimate,
    /// Places held for jobs whose rows are being written: they count as waiting.
    pub reserved: usize,
}

impl Queue {
    /// Queue `job` at the back, or refuse it when `capacity` jobs wait already: then the seconds
    /// until a place is likely to free up.
    #[cfg(test)]
    pub fn submit(&mut self, job: Job, capacity: usize) -> Result<JobInfo, u64> {
        self.reserve(capacity)?;
        Ok(self.queue_reserved(job))
    }

    /// Hold a place at the back for a job about to be queued, or refuse when `capacity` jobs
    /// wait already (then the seconds until a place is likely to free up).
    pub fn reserve(&mut self, capacity: usize) -> Result<(), u64> {
        if self.waiting.len() + self.reserved >= capacity {
            return Err(self.speed.seconds_until_next_free(self).clamp(1, 600));
        }
        self.reserved += 1;
        Ok(())
    }

    /// Give back a place held for a job that was not queued after all.
    pub fn release(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    /// Queue `job` in a place held for it.
    pub fn queue_reserved(&mut self, job: Job) -> JobInfo {
        self.release();
        let id = job.info.job_id.clone();
        self.jobs.insert(id.clone(), job);
        self.waiting.push_back(id.clone());
        self.view(&id).expect("just inserted")
    }

    /// Queue a job accepted before a restart, whatever the queue holds (it was let in then).
    pub fn restore(&mut self, job: Job) {
        let id = job.info.job_id.clone();
        self.jobs.insert(id.clone(), job);
        self.waiting.push_back(id);
    }

    /// Record a job that failed before it could run, so its owner can see why.
    pub fn reject(&mut self, mut job: Job, reason: String) -> JobInfo {
        let id = job.info.job_id.clone();
        job.info.status = JobStatus::Failed;
        job.info.error = Some(reason);
        job.info.finished_at = Some(now_ms());
        self.jobs.insert(id.clone(), job);
        self.finish(&id, "rejected");
        self.view(&id).expect("just inserted")
    }

    /// The next job in line starts running: the worker gets what it needs, with the admission.
    pub fn start_next(&mut self) -> Option<(String, Started)> {
        let id = self.waiting.pop_front()?;
        self.running = Some(id.clone());
        let job = self.jobs.get_mut(&id).expect("waiting jobs are known");
        job.info.status = JobStatus::Running;
        let now = now_ms();
        job.info.started_at = Some(now);
        metrics::histogram!(IMAGE_QUEUE_WAIT).record((now - job.info.created_at).max(0) as f64 / 1000.0);
        let started = Started {
            request: job.request.clone(),
            origin: job.origin.clone(),
            cancel: job.cancel.clone(),
            admission: job.admission.take(),
        };
        self.announce_all();
        Some((id, started))
    }

    /// The running job finished a step.
    pub fn progress(&mut self, id: &str, step: u32) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.info.step = step;
        }
        self.announce(id);
    }

    /// The running job ended.
    pub fn end(&mut self, id: &str, ended: Ended) {
        self.running = None;
        let state = ended.state();
        if let Some(job) = self.jobs.get_mut(id) {
            job.info.finished_at = Some(now_ms());
            match ended {
                Ended::Done { nsfw, ms } => {
                    job.info.status = JobStatus::Done;
                    job.info.step = job.info.total_steps;
                    job.info.nsfw = nsfw;
                    let request = job.request.clone();
                    self.speed.record(&request, ms);
                }
                Ended::Cancelled => job.info.status = JobStatus::Cancelled,
                Ended::Failed(reason) => {
                    job.info.status = JobStatus::Failed;
                    job.info.error = Some(reason);
                }
            }
        }
        self.finish(id, state);
        self.announce_all();
    }

    /// Cancel one of `account`'s jobs: a waiting one ends at once, a running one is asked to
    /// stop before its next step. `None` when it is unknown or someone else's.
    pub fn cancel(&mut self, account: &str, id: &str) -> Option<JobInfo> {
        self.owned(account, id)?;
        let job = self.jobs.get_mut(id)?;
        job.cancel.store(true, Ordering::Relaxed);
        if job.info.status == JobStatus::Queued {
            job.info.status = JobStatus::Cancelled;
            job.info.finished_at = Some(now_ms());
            self.waiting.retain(|w| w != id);
            self.finish(id, "cancelled");
            self.announce_all();
            self.announce(id);
        }
        self.view(id)
    }

    /// A job of `account`'s; `None` when unknown or someone else's.
    pub fn owned(&self, account: &str, id: &str) -> Option<&Job> {
        self.jobs.get(id).filter(|job| job.origin.account_id == account)
    }

    /// A job's info with its live queue position and estimate.
    pub fn view(&self, id: &str) -> Option<JobInfo> {
        let job = self.jobs.get(id)?;
        let mut info = job.info.clone();
        match info.status {
            JobStatus::Queued => {
                let position = self.waiting.iter().position(|w| w == id)?;
                info.position = Some(position as u32);
                info.eta_ms = self.speed.eta_ms(self, position);
            }
            JobStatus::Running => info.eta_ms = self.speed.remaining_ms(&job.request, info.step),
            _ => {}
        }
        Some(info)
    }

    pub fn announce(&self, id: &str) {
        if let (Some(job), Some(info)) = (self.jobs.get(id), self.view(id)) {
            let _ = job.updates.send(info);
        }
    }

    /// Everyone's position or estimate may have moved.
    pub fn announce_all(&self) {
        for id in self.running.iter().chain(self.waiting.iter()).chain(self.finished.back()) {
            self.announce(id);
        }
    }

    /// A job ended (`state`: how, for the metrics): it lets go of its admission, and the oldest
    /// finished ones are forgotten.
    fn finish(&mut self, id: &str, state: &'static str) {
        metrics::counter!(IMAGE_JOBS, "state" => state).increment(1);
        if let Some(job) = self.jobs.get_mut(id) {
            job.admission = None;
        }
        self.finished.push_back(id.to_string());
        while self.finished.len() > KEEP_FINISHED {
            if let Some(old) = self.finished.pop_front() {
                self.jobs.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::diffusion::SchedulerKind;

    fn job(id: &str, account: &str) -> Job {
        let request = ImageRequest {
            prompt: "x".into(),
            negative_prompt: String::new(),
            steps: 10,
            guidance_scale: 7.5,
            width: 512,
            height: 512,
            seed: 0,
            scheduler: SchedulerKind::Pndm,
        };
        let info = JobInfo {
            job_id: id.into(),
            status: JobStatus::Queued,
            position: None,
            eta_ms: None,
            step: 0,
            total_steps: 10,
            error: None,
            image_url: String::new(),
            status_url: String::new(),
            parameters: super::super::parameters(&request, "m"),
            nsfw: None,
            mock: true,
            created_at: 0,
            started_at: None,
            finished_at: None,
        };
        Job::new(info, request, Origin { account_id: account.into(), ..Origin::default() })
    }

    fn status(q: &Queue, id: &str) -> (JobStatus, Option<u32>) {
        let info = q.view(id).unwrap();
        (info.status, info.position)
    }

    #[test]
    fn jobs_run_in_order_with_live_positions_and_a_full_queue_refuses() {
        let mut q = Queue::default();
        for id in ["a", "b", "c"] {
            q.submit(job(id, "x"), 3).unwrap();
        }
        assert!(q.submit(job("d", "x"), 3).is_err(), "three wait already");
        assert_eq!(status(&q, "c"), (JobStatus::Queued, Some(2)));
        let (first, _) = q.start_next().unwrap();
        assert_eq!(first, "a");
        assert_eq!(
            (status(&q, "a").0, status(&q, "b"), status(&q, "c")),
            (JobStatus::Running, (JobStatus::Queued, Some(0)), (JobStatus::Queued, Some(1)))
        );
        q.submit(job("d", "x"), 3).unwrap();
        q.end("a", Ended::Done { nsfw: None, ms: 1000.0 });
        let a = q.view("a").unwrap();
        assert_eq!((a.status, a.step), (JobStatus::Done, 10));
        // The finished job taught the estimate: the ones waiting now have an ETA.
        assert!(q.view("d").unwrap().eta_ms.is_some());
        assert_eq!(q.start_next().unwrap().0, "b");
    }

    #[test]
    fn a_place_held_while_a_row_is_written_counts_as_waiting() {
        let mut q = Queue::default();
        q.reserve(2).unwrap();
        q.submit(job("a", "x"), 2).unwrap();
        assert!(q.reserve(2).is_err(), "one queued and one held fill two places");
        q.release();
        q.reserve(2).unwrap();
        let info = q.queue_reserved(job("b", "x"));
        assert_eq!((info.position, q.reserved), (Some(1), 0));
        // A job accepted before a restart goes in whatever the queue holds.
        q.restore(job("c", "x"));
        assert_eq!(status(&q, "c"), (JobStatus::Queued, Some(2)));
    }

    #[test]
    fn cancelling_a_waiting_job_ends_it_and_moves_the_rest_up_a_running_one_is_asked_to_stop() {
        let mut q = Queue::default();
        for id in ["a", "b", "c"] {
            q.submit(job(id, "x"), 10).unwrap();
        }
        let (_, running) = q.start_next().unwrap();
        assert_eq!(q.cancel("y", "b"), None, "someone else's");
        assert_eq!(q.cancel("x", "b").unwrap().status, JobStatus::Cancelled);
        assert_eq!(status(&q, "c"), (JobStatus::Queued, Some(0)));
        let info = q.cancel("x", "a").unwrap();
        assert_eq!(info.status, JobStatus::Running, "it stops between steps");
        assert!(running.cancel.load(Ordering::Relaxed));
        q.end("a", Ended::Cancelled);
        assert_eq!(status(&q, "a").0, JobStatus::Cancelled);
        assert_eq!(q.start_next().unwrap().0, "c");
    }

    #[test]
    fn rejected_and_failed_jobs_say_why_and_only_the_newest_finished_are_kept() {
        let mut q = Queue::default();
        let rejected = q.reject(job("r", "x"), "the queue is full".into());
        assert_eq!((rejected.status, rejected.error.as_deref()), (JobStatus::Failed, Some("the queue is full")));
        q.submit(job("f", "x"), 10).unwrap();
        q.start_next();
        q.end("f", Ended::Failed("boom".into()));
        assert_eq!(q.view("f").unwrap().error.as_deref(), Some("boom"));
        for i in 0..KEEP_FINISHED {
            q.reject(job(&format!("old{i}"), "x"), "x".into());
        }
        assert!(q.view("r").is_none() && q.view("f").is_none(), "forgotten (the database answers for them)");
        assert_eq!(q.jobs.len(), KEEP_FINISHED);
    }

    #[test]
    fn progress_reaches_watchers() {
        let mut q = Queue::default();
        q.submit(job("a", "x"), 10).unwrap();
        let mut updates = q.owned("x", "a").unwrap().updates.subscribe();
        q.start_next();
        q.progress("a", 3);
        let mut last = None;
        while let Ok(info) = updates.try_recv() {
            last = Some(info);
        }
        let last = last.unwrap();
        assert_eq!((last.status, last.step), (JobStatus::Running, 3));
    }
}
