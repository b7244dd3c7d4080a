//! Who follows which job, and how they learn of its changes. Every change is written to the
//! job's row first, then announced: on Postgres with `NOTIFY` on `duet_jobs`, which every process
//! sharing the database hears (the one that made the change too), on SQLite (one process) at once.
//! A process that hears of a change to a job someone follows there reads its row again and passes
//! it on; a lost connection is made up for by reading every followed job again, since
//! notifications sent meanwhile are gone.

use app::types::JobInfo;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::broadcast;

/// What happened to a job, as announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Accepted into the queue: every process's worker may claim it.
    Queued,
    /// A process claimed it.
    Started,
    /// One more step drawn.
    Step,
    /// Done, failed or cancelled: the queue moved up.
    Ended,
    /// A cancel was asked for while it is drawing: the process drawing it stops.
    Cancel,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Queued => "queued",
            Change::Started => "started",
            Change::Step => "step",
            Change::Ended => "ended",
            Change::Cancel => "cancel",
        }
    }

    /// The queue's order changed: everyone waiting has a new place or estimate.
    pub fn moves_queue(self) -> bool {
        matches!(self, Change::Queued | Change::Started | Change::Ended)
    }

    /// The notification's payload: `{change} {job id}`.
    pub fn payload(self, id: &str) -> String {
        format!("{} {id}", self.name())
    }

    pub fn parse(payload: &str) -> Option<(Change, &str)> {
        let (name, id) = payload.split_once(' ')?;
        let change = [Change::Queued, Change::Started, Change::Step, Change::Ended, Change::Cancel]
            .into_iter()
            .find(|c| c.name() == name)?;
        Some((change, id))
    }
}

/// The jobs followed in this process, each with the channel its followers listen on.
#[derive(Clone, Default)]
pub(super) struct Followers {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<JobInfo>>>>,
}

impl Followers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<JobInfo>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn follow(&self, id: &str) -> broadcast::Receiver<JobInfo> {
        let mut channels = self.lock();
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels.entry(id.to_string()).or_insert_with(|| broadcast::channel(64).0).subscribe()
    }

    pub fn is_followed(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// The jobs someone follows now.
    pub fn followed(&self) -> Vec<String> {
        let mut channels = self.lock();
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels.keys().cloned().collect()
    }

    /// Pass a job's state on; after its final state the channel closes, so followers stop.
    pub fn publish(&self, info: JobInfo) {
        let mut channels = self.lock();
        let id = info.job_id.clone();
        let last = info.status.is_final();
        if let Some(tx) = channels.get(&id) {
            let _ = tx.send(info);
        }
        if last {
            channels.remove(&id);
        }
    }
}

/// A follower's next update; `None` once the job has ended and its last state was read. A
/// follower that fell behind skips to the newest state (each update is the whole state).
pub async fn next_update(updates: &mut broadcast::Receiver<JobInfo>) -> Option<JobInfo> {
    loop {
        match updates.recv().await {
            Ok(info) => return Some(info),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::types::JobStatus;

    #[test]
    fn payloads_name_the_change_and_the_job() {
        for change in [Change::Queued, Change::Started, Change::Step, Change::Ended, Change::Cancel] {
            assert_eq!(Change::parse(&change.payload("j-1")), Some((change, "j-1")));
        }
        assert_eq!(Change::parse("bogus j"), None);
        assert_eq!(Change::parse("step"), None);
    }

    #[tokio::test]
    async fn followers_get_every_state_until_the_last_then_the_channel_closes() {
        let followers = Followers::default();
        let mut rx = followers.follow("a");
        assert!(followers.is_followed("a") && !followers.is_followed("b"));
        let mut row = super::super::sample_row("a");
        (row.status, row.step) = ("running".into(), 2);
        let mut info = super::super::info_from_row(&row, true);
        followers.publish(info.clone());
        info.status = JobStatus::Done;
        followers.publish(info);
        assert_eq!(next_update(&mut rx).await.map(|i| i.step), Some(2));
        assert_eq!(next_update(&mut rx).await.map(|i| i.status), Some(JobStatus::Done));
        assert_eq!(next_update(&mut rx).await, None);
        assert!(followers.followed().is_empty());
        drop(followers.follow("b"));
        assert!(followers.followed().is_empty(), "nobody listens any more");
    }
}
