//! Sharing two cores between chat and images. Chat has a bounded number of generations in
//! flight (the rest get 503 with Retry-After); while any chat generation runs, the image job
//! waits between UNet steps (up to a limit per step, so images never starve), because a reply
//! streaming at reading speed matters more than a picture arriving a little later.

use super::error::ServiceError;
use crate::inference::engine::Pause;
use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ChatSlots {
    permits: Arc<Semaphore>,
    capacity: usize,
    generating: Arc<AtomicUsize>,
}

/// Counts one chat generation as running while it lives.
pub struct Generating(Arc<AtomicUsize>);

impl Drop for Generating {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ChatSlots {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        ChatSlots { permits: Arc::new(Semaphore::new(capacity)), capacity, generating: Arc::default() }
    }

    /// A place for one more chat turn, held until its reply is complete.
    pub fn try_acquire(&self) -> Result<OwnedSemaphorePermit, ServiceError> {
        self.permits.clone().try_acquire_owned().map_err(|_| ServiceError::Busy {
            message: format!("the chat engine is busy ({} replies in progress); try again shortly", self.capacity),
            retry_after_s: 5,
        })
    }

    /// Chat turns holding a place now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    pub fn generating(&self) -> Generating {
        self.generating.fetch_add(1, Ordering::Relaxed);
        Generating(self.generating.clone())
    }

    /// The image engine's pause between steps: wait while chat generates, at most `max_wait`.
    pub fn image_pause(&self, max_wait: Duration) -> Option<Pause> {
        if max_wait.is_zero() {
            return None;
        }
        let generating = self.generating.clone();
        Some(Arc::new(move |cancel: &AtomicBool| {
            let until = Instant::now() + max_wait;
            while generating.load(Ordering::Relaxed) > 0 && !cancel.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_and_come_back() {
        let slots = ChatSlots::new(2);
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(matches!(slots.try_acquire(), Err(ServiceError::Busy { retry_after_s: 5, .. })));
        drop(a);
        assert!(slots.try_acquire().is_ok());
    }

    #[test]
    fn images_wait_for_chat_but_not_forever() {
        let slots = ChatSlots::new(1);
        let pause = slots.image_pause(Duration::from_millis(50)).unwrap();
        let cancel = AtomicBool::new(false);
        let t = Instant::now();
        pause(&cancel);
        assert!(t.elapsed() < Duration::from_millis(20), "no chat: no wait");
        let busy = slots.generating();
        let t = Instant::now();
        pause(&cancel);
        assert!(t.elapsed() >= Duration::from_millis(50), "chat running: waits up to the limit");
        cancel.store(true, Ordering::Relaxed);
        let t = Instant::now();
        pause(&cancel);
        assert!(t.elapsed() < Duration::from_millis(20), "a cancelled job stops waiting");
        drop(busy);
        assert!(slots.image_pause(Duration::ZERO).is_none());
    }
}
