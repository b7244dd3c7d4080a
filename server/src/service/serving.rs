//! What a worker (`ROLE=worker`) does for web processes: runs their chat generations on its
//! engine, stops one when asked, and finishes a chat reply whose web process went away, keeping
//! it for whichever web process asks (`recover`) so the reply is stored after all.

use super::{error::Result, AppState, ServiceError};
use crate::inference::{
    llm::{Canceller, Completion, Failure, GenerationEvent, GenerationHandle},
    remote::wire::GenerateCall,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, watch};

/// How long a finished reply whose web process went away is kept for another to fetch.
const KEEP_PARKED: Duration = Duration::from_secs(600);
/// At most this many are kept (the oldest go first).
const MAX_PARKED: usize = 1000;

#[derive(Clone, Default)]
pub struct Serving {
    running: Arc<Mutex<HashMap<String, Canceller>>>,
    parked: Arc<Mutex<HashMap<String, Parked>>>,
}

struct Parked {
    since: Instant,
    /// `None` until the reply ends (then its completion, or `None` forever if it failed).
    result: watch::Receiver<Option<Option<Completion>>>,
}

impl Serving {
    /// Start `call` on this worker's chat engine once it has taken the prompt; its events come
    /// through the returned channel until the end. A prompt the engine refuses is the inner
    /// error, passed on as it is (the web process answers its caller with it).
    pub async fn start(
        &self,
        state: &AppState,
        call: GenerateCall,
    ) -> Result<std::result::Result<mpsc::Receiver<GenerationEvent>, Failure>> {
        let engine = state.chat_engine()?;
        // Busy here (503): the web process tries the conversation's next worker.
        let slot = state.chat_slots.try_acquire()?;
        let mut handle = engine.generate(call.request).map_err(|e| ServiceError::Engine(e.to_string()))?;
        // Admission answers first, so a refusal is a status code, not a stream that fails.
        let started = match handle.next().await {
            Some(GenerationEvent::Failed(failure)) => return Ok(Err(failure)),
            Some(event) => event,
            None => return Err(ServiceError::Engine("the chat engine stopped".into())),
        };
        let (tx, rx) = mpsc::channel(256);
        self.running.lock().expect("serving lock").insert(call.id.clone(), handle.canceller());
        let _ = tx.send(started).await;
        let relay = self.clone().relay(call.id, call.reply_id, handle, tx);
        tokio::spawn(async move {
            relay.await;
            drop(slot);
        });
        Ok(Ok(rx))
    }

    async fn relay(
        self,
        id: String,
        reply_id: Option<String>,
        mut handle: GenerationHandle,
        tx: mpsc::Sender<GenerationEvent>,
    ) {
        let mut parked: Option<watch::Sender<Option<Option<Completion>>>> = None;
        while let Some(event) = handle.next().await {
            let end = match &event {
                GenerationEvent::Done(c) => Some(Some(c.clone())),
                GenerationEvent::Failed(_) => Some(None),
                _ => None,
            };
            if parked.is_none() && tx.send(event).await.is_err() {
                match &reply_id {
                    // The web process is gone: the reply is finished and kept for another.
                    Some(reply_id) => {
                        tracing::info!(reply = %reply_id, "the web process went away mid-reply: finishing it here");
                        parked = Some(self.park(reply_id));
                    }
                    None => handle.cancel(),
                }
            }
            if let Some(end) = end {
                if let Some(parked) = &parked {
                    let _ = parked.send(Some(end));
                }
                break;
            }
        }
        self.running.lock().expect("serving lock").remove(&id);
    }

    fn park(&self, reply_id: &str) -> watch::Sender<Option<Option<Completion>>> {
        let (tx, rx) = watch::channel(None);
        let mut parked = self.parked.lock().expect("serving lock");
        parked.retain(|_, p| p.since.elapsed() < KEEP_PARKED);
        while parked.len() >= MAX_PARKED {
            let Some(oldest) = parked.iter().min_by_key(|(_, p)| p.since).map(|(k, _)| k.clone()) else { break };
            parked.remove(&oldest);
        }
        parked.insert(reply_id.to_string(), Parked { since: Instant::now(), result: rx });
        tx
    }

    /// Stop a generation (it ends with what it has, marked cancelled); false when none runs by
    /// that id.
    pub fn cancel(&self, id: &str) -> bool {
        match self.running.lock().expect("serving lock").get(id) {
            Some(canceller) => {
                canceller.cancel();
                true
            }
            None => false,
        }
    }

    /// A reply finished for a web process that went away, once it ends (taken: one web process
    /// stores it). `None`: not kept here, or it failed.
    pub async fn take_parked(&self, reply_id: &str) -> Option<Completion> {
        let mut result = self.parked.lock().expect("serving lock").get(reply_id)?.result.clone();
        let ended = result.wait_for(|r| r.is_some()).await.ok()?.clone().flatten();
        self.parked.lock().expect("serving lock").remove(reply_id);
        ended
    }
}
