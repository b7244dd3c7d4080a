//! This process among the others sharing the database: its name (in the image jobs it claims and
//! the replies it writes), a heartbeat every `PROCESS_HEARTBEAT_MS`, and, on Postgres, a sweep
//! that stores the replies of processes silent for three heartbeats (their process died
//! mid-reply): as a worker finished them, or marked interrupted. On SQLite one process owns the
//! file: a restart marks them at start instead.

use crate::storage::{now_ms, Database, ProcessInfo, ReplyStarted};
use std::{sync::Arc, time::Duration};

/// Heartbeats missed before a process counts as gone.
const MISSED_BEATS: u32 = 3;

/// A name for this process: host, process id and a random part (a restarted process with the
/// same pid is someone else).
pub fn process_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = Some(host.trim().to_string()).filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &random[..8])
}

/// What this process announces: its name, role and (a worker) URL.
#[derive(Clone, Debug)]
pub struct Announce {
    pub name: Arc<str>,
    pub role: &'static str,
    pub url: Option<String>,
}

/// Say this process is alive every `every`.
pub fn start(db: Database, me: Announce, every: Duration) {
    let started_at = now_ms();
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(every);
        loop {
            beat.tick().await;
            let info = ProcessInfo { name: &me.name, role: me.role, url: me.url.as_deref() };
            if let Err(err) = db.heartbeat(&info, started_at, now_ms()).await {
                tracing::warn!(error = %err, "could not write this process's heartbeat");
            }
        }
    });
}

/// On Postgres, look every `every` for replies of processes gone silent and store them (fetched
/// from the worker that finished them, or marked interrupted;
/// `super::chat::mark_orphan_replies`). Apart from the heartbeat: fetching a finished reply may
/// wait for it to end.
pub fn sweep(state: super::AppState, every: Duration) {
    if !matches!(state.db, Database::Postgres(_)) {
        return;
    }
    tokio::spawn(async move {
        let mut round = tokio::time::interval(every);
        loop {
            round.tick().await;
            match super::chat::mark_orphan_replies(&state.db, alive_since(every), Some(&state)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(replies = n, "replies of a process that stopped stored"),
                Err(err) => tracing::warn!(error = %err, "could not store the replies of stopped processes"),
            }
        }
    });
}

/// Processes silent for longer than this are gone.
pub fn alive_since(every: Duration) -> i64 {
    now_ms() - (every * MISSED_BEATS).as_millis() as i64
}

/// A chat reply being written by this process, from its turn's start until it is dropped (the
/// reply stored, or the turn ended without one).
pub struct ReplyInFlight {
    db: Database,
    message_id: String,
}

impl ReplyInFlight {
    /// Record `reply` (its `at` is set here).
    pub async fn start(db: &Database, reply: ReplyStarted<'_>) -> ReplyInFlight {
        // Without the row only a crash goes unmarked, and other processes do not count the
        // reply against its owner's limits: the reply itself goes ahead.
        if let Err(err) = db.reply_started(&ReplyStarted { at: now_ms(), ..reply }).await {
            tracing::warn!(error = %err, "could not record a reply in flight");
        }
        ReplyInFlight { db: db.clone(), message_id: reply.message_id.to_string() }
    }
}

impl Drop for ReplyInFlight {
    fn drop(&mut self) {
        let (db, id) = (self.db.clone(), std::mem::take(&mut self.message_id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = db.reply_ended(&id).await {
                    tracing::warn!(error = %err, "could not clear a reply in flight");
                }
            });
        }
    }
}
