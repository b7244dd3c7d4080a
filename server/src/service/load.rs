//! Sharing two cores between chat and images, and chat turns between users. Chat has a bounded
//! number of generations in flight (`CHAT_CONCURRENCY`); turns beyond it wait in a bounded queue
//! served round-robin by end user (`fair_queue.rs`), told their place and an estimated wait as it
//! moves. 503 + Retry-After only when the queue is full or the estimated wait is over
//! `CHAT_QUEUE_MAX_WAIT_S`; 429 only for a user holding more than their share of the queue.
//! While any chat generation runs, the image job waits between UNet steps (up to a limit per
//! step, so images never starve), because a reply streaming at reading speed matters more than a
//! picture arriving a little later.

use super::{error::ServiceError, fair_queue::FairQueue};
use crate::{inference::engine::Pause, telemetry::catalogue::CHAT_TURN_WAIT};
use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};
use tokio::sync::{oneshot, watch};

/// How the chat queue is bounded.
#[derive(Clone, Copy, Debug)]
pub struct QueueBounds {
    /// Turns that may wait at once (0: none wait; beyond `CHAT_CONCURRENCY` is 503 at once).
    pub max_waiting: usize,
    /// A turn whose estimated wait is longer is refused (503) rather than queued.
    pub max_wait: Duration,
}

pub struct ChatSlots {
    shared: Arc<Shared>,
    generating: Arc<AtomicUsize>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Bumped whenever the queue moves, so waiters look at their place again.
    moved: watch::Sender<u64>,
    capacity: usize,
    bounds: QueueBounds,
}

struct Inner {
    free: usize,
    queue: FairQueue<oneshot::Sender<Slot>>,
    next_ticket: u64,
    /// Seconds a turn holds its place, on average (moving), for estimated waits; `None` until
    /// one has ended.
    mean_hold_s: Option<f64>,
}

/// A chat turn's place in the engine, held until its reply is complete; dropping it hands the
/// place to the next waiting turn.
pub struct Slot {
    shared: Option<Arc<Shared>>,
    since: Instant,
}

/// Where a waiting turn stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// Turns served before this one (0: next).
    pub ahead: usize,
    /// Turns waiting in all.
    pub waiting: usize,
    /// Estimated seconds until it starts, once a turn has finished to estimate from.
    pub eta_s: Option<u64>,
}

/// A turn's way into the engine: now, or after waiting its turn.
pub enum Entry {
    Now(Slot),
    Queued(Waiter),
}

/// A turn in the queue; dropping it leaves the queue.
pub struct Waiter {
    shared: Arc<Shared>,
    ticket: u64,
    slot: oneshot::Receiver<Slot>,
    moved: watch::Receiver<u64>,
    told: Option<Place>,
    since: Instant,
}

/// What waiting brought.
pub enum Waited {
    Moved(Place),
    Ready(Slot),
}

/// Counts one chat generation as running while it lives.
pub struct Generating(Arc<AtomicUsize>);

impl Drop for Generating {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Weight of the latest turn in the moving average of how long turns hold their place.
const HOLD_WEIGHT: f64 = 0.2;

impl ChatSlots {
    pub fn new(capacity: usize, bounds: QueueBounds) -> Self {
        let capacity = capacity.max(1);
        let inner = Inner { free: capacity, queue: FairQueue::default(), next_ticket: 0, mean_hold_s: None };
        let shared = Shared { inner: Mutex::new(inner), moved: watch::channel(0).0, capacity, bounds };
        ChatSlots { shared: Arc::new(shared), generating: Arc::default() }
    }

    /// A place for one more chat turn now, without waiting (a worker's internal route: the web
    /// process tries another worker instead).
    pub fn try_acquire(&self) -> Result<Slot, ServiceError> {
        let mut inner = self.shared.lock();
        if inner.free > 0 && inner.queue.is_empty() {
            inner.free -= 1;
            return Ok(self.shared.slot());
        }
        Err(self.shared.busy(&inner, "try again shortly".into()))
    }

    /// A place for a turn of `user` (fairness is per user: `account/user_id`), now if one is free,
    /// else in the queue; refused when the queue is full, the wait too long, or `user` already
    /// holds their share of it.
    pub fn enter(&self, user: &str) -> Result<Entry, ServiceError> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        if inner.free > 0 && inner.queue.is_empty() {
            inner.free -= 1;
            metrics::histogram!(CHAT_TURN_WAIT).record(0.0);
            return Ok(Entry::Now(shared.slot()));
        }
        let bounds = shared.bounds;
        let mine = inner.queue.waiting_for(user);
        let users = inner.queue.users() + usize::from(mine == 0);
        let share = (bounds.max_waiting / users).max(1);
        if mine >= share {
            return Err(ServiceError::Limited {
                limit: "user.queued_turns".into(),
                message: format!(
                    "this user already has {mine} turns waiting, their share of the chat queue \
                     ({} places shared by {users} users); wait for one to start",
                    bounds.max_waiting
                ),
                retry_after_s: shared.retry_after(&inner, inner.queue.position_of_next(user)),
            });
        }
        if inner.queue.len() >= bounds.max_waiting {
            let why = match bounds.max_waiting {
                0 => "try again shortly".to_string(),
                n => format!("{n} turns are already waiting (CHAT_QUEUE); try again shortly"),
            };
            return Err(shared.busy(&inner, why));
        }
        let ahead = inner.queue.position_of_next(user);
        if let Some(eta) = shared.eta_s(&inner, ahead).filter(|&eta| eta > bounds.max_wait.as_secs()) {
            let why = format!(
                "the estimated wait ({eta} s) is longer than CHAT_QUEUE_MAX_WAIT_S ({} s); try again later",
                bounds.max_wait.as_secs()
            );
            return Err(shared.busy(&inner, why));
        }
        let ticket = inner.next_ticket;
        inner.next_ticket += 1;
        let (tx, rx) = oneshot::channel();
        inner.queue.push(user, ticket, tx);
        drop(inner);
        shared.moved.send_modify(|v| *v += 1);
        let moved = shared.moved.subscribe();
        let since = Instant::now();
        Ok(Entry::Queued(Waiter { shared: shared.clone(), ticket, slot: rx, moved, told: None, since }))
    }

    /// Chat turns holding a place now.
    pub fn in_use(&self) -> usize {
        self.shared.capacity - self.shared.lock().free
    }

    /// Chat turns waiting for a place.
    pub fn waiting(&self) -> usize {
        self.shared.lock().queue.len()
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

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(self: &Arc<Self>) -> Slot {
        Slot { shared: Some(self.clone()), since: Instant::now() }
    }

    /// Seconds until the turn with `ahead` turns before it starts: each place frees after a
    /// turn's average hold, `capacity` places at a time.
    fn eta_s(&self, inner: &Inner, ahead: usize) -> Option<u64> {
        let hold = inner.mean_hold_s?;
        Some((hold * (ahead / self.capacity + 1) as f64).ceil() as u64)
    }

    fn retry_after(&self, inner: &Inner, ahead: usize) -> u64 {
        self.eta_s(inner, ahead).unwrap_or(5).clamp(1, 60)
    }

    fn busy(&self, inner: &Inner, what_to_do: String) -> ServiceError {
        ServiceError::Busy {
            message: format!(
                "the chat engine is busy ({} replies in progress, {} waiting); {what_to_do}",
                self.capacity - inner.free,
                inner.queue.len()
            ),
            retry_after_s: self.retry_after(inner, inner.queue.len()),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else { return };
        let mut inner = shared.lock();
        let held = self.since.elapsed().as_secs_f64();
        inner.mean_hold_s = Some(inner.mean_hold_s.map_or(held, |mean| mean + HOLD_WEIGHT * (held - mean)));
        loop {
            let Some((_, waiter)) = inner.queue.pop() else {
                inner.free += 1;
                break;
            };
            match waiter.send(shared.slot()) {
                Ok(()) => break,
                // Its caller left between leaving the queue and now: the next one.
                Err(mut unwanted) => unwanted.shared = None,
            }
        }
        drop(inner);
        shared.moved.send_modify(|v| *v += 1);
    }
}

impl Waiter {
    /// Where this turn stands now (`None` once it has left the queue for a place).
    pub fn place(&self) -> Option<Place> {
        let inner = self.shared.lock();
        let ahead = inner.queue.position(self.ticket)?;
        Some(Place { ahead, waiting: inner.queue.len(), eta_s: self.shared.eta_s(&inner, ahead) })
    }

    /// Wait until the turn's place changes (first call: where it stands) or a place is free.
    /// `None` if the queue is gone (the server is stopping).
    pub async fn next(&mut self) -> Option<Waited> {
        loop {
            // A new place or estimate is news; others joining behind it are not.
            let news = |p: &Place| self.told.is_none_or(|t| (t.ahead, t.eta_s) != (p.ahead, p.eta_s));
            if let Some(place) = self.place().filter(news) {
                self.told = Some(place);
                return Some(Waited::Moved(place));
            }
            tokio::select! {
                slot = &mut self.slot => {
                    metrics::histogram!(CHAT_TURN_WAIT).record(self.since.elapsed().as_secs_f64());
                    return slot.ok().map(Waited::Ready);
                }
                changed = self.moved.changed() => changed.ok()?,
            }
        }
    }

    /// Wait quietly for a place.
    pub async fn ready(mut self) -> Result<Slot, ServiceError> {
        loop {
            match self.next().await {
                Some(Waited::Ready(slot)) => return Ok(slot),
                Some(Waited::Moved(_)) => {}
                None => {
                    return Err(ServiceError::Unavailable {
                        message: "the server is stopping".into(),
                        retry_after_s: None,
                    })
                }
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let left = self.shared.lock().queue.remove(self.ticket).is_some();
        if left {
            self.shared.moved.send_modify(|v| *v += 1);
        }
        // A place already sent is dropped with the receiver, and handed on from there.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(capacity: usize, max_waiting: usize) -> ChatSlots {
        ChatSlots::new(capacity, QueueBounds { max_waiting, max_wait: Duration::from_secs(60) })
    }

    fn now(entry: Result<Entry, ServiceError>) -> Slot {
        match entry {
            Ok(Entry::Now(slot)) => slot,
            _ => panic!("expected a place at once"),
        }
    }

    fn queued(entry: Result<Entry, ServiceError>) -> Waiter {
        match entry {
            Ok(Entry::Queued(waiter)) => waiter,
            Ok(Entry::Now(_)) => panic!("expected to wait, got a place"),
            Err(err) => panic!("expected to wait, got {err}"),
        }
    }

    #[tokio::test]
    async fn without_a_queue_places_run_out_and_come_back() {
        let slots = slots(2, 0);
        let a = now(slots.enter("u"));
        let _b = slots.try_acquire().unwrap();
        assert!(matches!(slots.enter("v"), Err(ServiceError::Busy { retry_after_s: 5, .. })));
        assert!(matches!(slots.try_acquire(), Err(ServiceError::Busy { .. })));
        drop(a);
        assert_eq!(slots.in_use(), 1);
        now(slots.enter("v"));
    }

    #[tokio::test]
    async fn waiting_turns_are_served_round_robin_and_told_their_place() {
        let slots = slots(1, 8);
        let running = now(slots.enter("greedy"));
        let mut waiters: Vec<(&str, Waiter)> = ["greedy", "greedy", "greedy", "a", "b"]
            .into_iter()
            .map(|user| (user, queued(slots.enter(user))))
            .collect();
        let places: Vec<usize> = waiters.iter().map(|(_, w)| w.place().unwrap().ahead).collect();
        assert_eq!(places, [0, 3, 4, 1, 2], "g a b g g");
        assert_eq!(slots.waiting(), 5);
        // The first report is where it stands, with no estimate before any turn has ended.
        let Some(Waited::Moved(place)) = waiters[3].1.next().await else { panic!("a place first") };
        assert_eq!(place, Place { ahead: 1, waiting: 5, eta_s: None });
        drop(running);
        let mut served = vec![];
        while !waiters.is_empty() {
            let ready = waiters.iter().position(|(_, w)| w.place().is_none());
            let (user, mut waiter) = waiters.remove(ready.expect("one turn was handed the place"));
            let slot = loop {
                match waiter.next().await {
                    Some(Waited::Ready(slot)) => break slot,
                    Some(Waited::Moved(_)) => {}
                    None => panic!("the queue went away"),
                }
            };
            served.push(user);
            drop(slot);
        }
        assert_eq!(served, ["greedy", "a", "b", "greedy", "greedy"]);
        assert_eq!((slots.in_use(), slots.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_full_queue_is_503_and_a_user_over_their_share_is_429() {
        let slots = slots(1, 4);
        let _running = now(slots.enter("a"));
        let alone: Vec<Waiter> = (0..4).map(|_| queued(slots.enter("a"))).collect();
        // Alone, a user may fill the queue; then everyone gets 503, and that user 429.
        assert!(matches!(slots.enter("b"), Err(ServiceError::Busy { .. })));
        assert!(matches!(slots.enter("a"), Err(ServiceError::Limited { .. })));
        drop(alone);
        let _a: Vec<Waiter> = (0..2).map(|_| queued(slots.enter("a"))).collect();
        let _b = queued(slots.enter("b"));
        // Two users: a's share is 2 places of 4, so a third is 429 for a only.
        match slots.enter("a") {
            Err(ServiceError::Limited { limit, .. }) => assert_eq!(limit, "user.queued_turns"),
            _ => panic!("a is over its share"),
        }
        let _c = queued(slots.enter("c"));
        assert_eq!(slots.waiting(), 4);
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_gives_up_its_place_and_a_place_sent_to_it_goes_on() {
        let slots = slots(1, 8);
        let running = now(slots.enter("a"));
        let first = queued(slots.enter("b"));
        let mut second = queued(slots.enter("c"));
        drop(first);
        assert_eq!(second.place().unwrap().ahead, 0);
        let third = queued(slots.enter("d"));
        drop(running); // handed to c
        drop(third);
        let Some(Waited::Ready(slot)) = second.next().await else { panic!("c gets the place") };
        drop(second);
        // Handed to nobody waiting: it is free again.
        drop(slot);
        assert_eq!((slots.in_use(), slots.waiting()), (0, 0));
        // A place sent to a waiter that left before taking it goes to the next one.
        let running = now(slots.enter("a"));
        let gone = queued(slots.enter("b"));
        let mut next = queued(slots.enter("c"));
        drop(running);
        drop(gone);
        loop {
            match next.next().await {
                Some(Waited::Ready(_)) => break,
                Some(Waited::Moved(_)) => {}
                None => panic!("the queue went away"),
            }
        }
    }

    #[tokio::test]
    async fn a_turns_hold_is_averaged_into_the_estimate() {
        let slots = slots(1, 8);
        let held = now(slots.enter("a"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        let mean = slots.shared.lock().mean_hold_s.expect("one turn ended");
        assert!((0.05..1.0).contains(&mean), "{mean}");
    }

    #[tokio::test]
    async fn the_estimate_counts_places_freeing_together_and_bounds_the_wait() {
        let slots = ChatSlots::new(2, QueueBounds { max_waiting: 100, max_wait: Duration::from_secs(3) });
        let _running = [now(slots.enter("a")), now(slots.enter("b"))];
        slots.shared.lock().mean_hold_s = Some(1.1);
        let waiters: Vec<Waiter> = (0..4).map(|i| queued(slots.enter(&format!("u{i}")))).collect();
        let etas: Vec<Option<u64>> = waiters.iter().map(|w| w.place().unwrap().eta_s).collect();
        assert_eq!(etas, [Some(2), Some(2), Some(3), Some(3)], "two places free every 1.1 s");
        // The next would wait about 4 s, over the 3 s bound.
        match slots.enter("late") {
            Err(ServiceError::Busy { message, retry_after_s }) => {
                assert!(message.contains("CHAT_QUEUE_MAX_WAIT_S"), "{message}");
                assert_eq!(retry_after_s, 4);
            }
            _ => panic!("refused for the wait"),
        }
    }

    #[test]
    fn images_wait_for_chat_but_not_forever() {
        let slots = slots(1, 0);
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
