//! Generations running or queued at once, and what a day may make: generated tokens and images
//! per UTC day, counted in the database so they survive restarts. A generation is admitted
//! against both and holds an `Admission` until it ends; what it made is counted through it.

use super::Scope;
use crate::storage::{day_of, now_ms, Database, StorageError, Usage};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// What a generation makes, for the daily quota it counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// A chat reply: generated tokens.
    Chat,
    /// An image job.
    Image,
}

/// What a finished generation made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Made {
    pub tokens: u64,
    pub images: u64,
}

impl Made {
    pub fn tokens(tokens: u64) -> Made {
        Made { tokens, images: 0 }
    }

    pub fn image() -> Made {
        Made { tokens: 0, images: 1 }
    }
}

/// One scope's limits for a day, and what it has used.
#[derive(Clone, Copy, Debug)]
pub struct ScopeQuota {
    pub scope: Scope,
    pub concurrent: u32,
    pub images_per_day: u32,
    pub tokens_per_day: u64,
    /// Generations of this scope running or queued now.
    pub running: u32,
    /// Images of this scope queued or rendering now (not yet in `used`).
    pub images_in_flight: u32,
    pub used: Usage,
}

/// Why a generation is not admitted.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The limit's public name (`user.concurrent_generations`, …).
    pub limit: String,
    pub message: String,
    pub retry_after_s: u64,
}

/// Admit a generation of `what` against every scope (account, then end user): `Ok(tokens the day
/// still allows)` (`None`: no token limit), or the first limit it is over. Pure, so the rules are
/// tested without a database or a clock.
pub fn admit(scopes: &[ScopeQuota], what: Generation, now_ms: i64) -> Result<Option<u64>, Refusal> {
    let mut tokens_left: Option<u64> = None;
    for q in scopes {
        let scope = q.scope.name();
        if q.concurrent > 0 && q.running >= q.concurrent {
            return Err(Refusal {
                limit: format!("{scope}.concurrent_generations"),
                message: format!(
                    "{} generations are already running or queued for this {scope} (limit {}); wait for one to finish",
                    q.running, q.concurrent
                ),
                retry_after_s: 5,
            });
        }
        match what {
            Generation::Image
                if q.images_per_day > 0 && q.used.images + q.images_in_flight as i64 >= q.images_per_day as i64 =>
            {
                return Err(Refusal {
                    limit: format!("{scope}.images_per_day"),
                    message: format!("daily quota reached: {} images per {scope} per day (UTC)", q.images_per_day),
                    retry_after_s: until_tomorrow(now_ms),
                });
            }
            Generation::Chat if q.tokens_per_day > 0 => {
                let left = q.tokens_per_day.saturating_sub(q.used.tokens.max(0) as u64);
                if left == 0 {
                    return Err(Refusal {
                        limit: format!("{scope}.tokens_per_day"),
                        message: format!(
                            "daily quota reached: {} generated tokens per {scope} per day (UTC)",
                            q.tokens_per_day
                        ),
                        retry_after_s: until_tomorrow(now_ms),
                    });
                }
                tokens_left = Some(tokens_left.map_or(left, |t| t.min(left)));
            }
            _ => {}
        }
    }
    Ok(tokens_left)
}

/// Seconds until the next UTC midnight, when daily quotas start again.
pub fn until_tomorrow(now_ms: i64) -> u64 {
    let next = (day_of(now_ms) + 1) * 86_400_000;
    ((next - now_ms) as u64).div_ceil(1000).max(1)
}

/// Generations running in this process, and images among them (an "imagine" turn holds one
/// until its job is queued, when the job's row counts instead), per scope key.
#[derive(Clone, Default)]
pub struct InFlight {
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// The key of a scope's images in flight, beside its generations' key.
fn image_key(key: &str) -> String {
    format!("img\u{0}{key}")
}

/// (generations, images) in flight for a scope key.
fn counts_of(counts: &HashMap<String, u32>, key: &str) -> (u32, u32) {
    (counts.get(key).copied().unwrap_or(0), counts.get(&image_key(key)).copied().unwrap_or(0))
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (generations, images) in flight for a scope key.
    pub fn of(&self, key: &str) -> (u32, u32) {
        counts_of(&self.lock(), key)
    }

    /// Run `check` on the counts and, when it admits, count the generation under every key, in
    /// one step, so two requests at once cannot both take the last place.
    pub fn admit_with<T, E>(
        &self,
        keys: &[String],
        what: Generation,
        check: impl FnOnce(&dyn Fn(&str) -> (u32, u32)) -> Result<T, E>,
    ) -> Result<(T, Held), E> {
        let mut c = self.lock();
        let admitted = check(&|key: &str| counts_of(&c, key))?;
        let mut held = Vec::new();
        for key in keys {
            if what == Generation::Image {
                held.push(image_key(key));
            }
            held.push(key.clone());
        }
        for key in &held {
            *c.entry(key.clone()).or_insert(0) += 1;
        }
        Ok((admitted, Held { keys: held, in_flight: self.clone() }))
    }
}

/// Counted in flight until dropped.
pub struct Held {
    keys: Vec<String>,
    in_flight: InFlight,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut c = self.in_flight.lock();
        for key in &self.keys {
            if let Some(n) = c.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.remove(key);
                }
            }
        }
    }
}

/// Counts what a caller's generations make against the day's quota.
#[derive(Clone)]
pub struct UsageMeter {
    pub(super) db: Database,
    pub(super) account: String,
    pub(super) user: Option<String>,
}

impl UsageMeter {
    pub async fn count(&self, made: Made) -> Result<(), StorageError> {
        if made == Made::default() {
            return Ok(());
        }
        let day = day_of(now_ms());
        let user = self.user.as_deref().unwrap_or("");
        self.db.add_usage(&self.account, user, day, made.tokens as i64, made.images as i64).await
    }
}

/// An admitted generation: it counts as running (and, for an image, as in flight against the
/// day's images) until dropped; what it made is counted through `meter`.
pub struct Admission {
    pub(super) _held: Held,
    pub(super) meter: UsageMeter,
}

impl Admission {
    /// Counts what this generation makes (cloneable, for work that outlives the admission).
    pub fn meter(&self) -> UsageMeter {
        self.meter.clone()
    }

    pub async fn count(&self, made: Made) -> Result<(), StorageError> {
        self.meter.count(made).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(scope: Scope) -> ScopeQuota {
        ScopeQuota {
            scope,
            concurrent: 0,
            images_per_day: 0,
            tokens_per_day: 0,
            running: 0,
            images_in_flight: 0,
            used: Usage::default(),
        }
    }

    #[test]
    fn daily_quotas_reset_at_utc_midnight() {
        assert_eq!(until_tomorrow(0), 86_400);
        assert_eq!(until_tomorrow(86_400_000 - 1), 1);
        assert_eq!(until_tomorrow(86_400_000 + 500), 86_400);
    }

    #[test]
    fn the_tighter_token_quota_of_account_and_user_bounds_a_reply() {
        let account =
            ScopeQuota { tokens_per_day: 1000, used: Usage { tokens: 100, images: 0 }, ..quota(Scope::Account) };
        let user = ScopeQuota { tokens_per_day: 500, used: Usage { tokens: 450, images: 0 }, ..quota(Scope::User) };
        assert_eq!(admit(&[account, user], Generation::Chat, 0), Ok(Some(50)));
        assert_eq!(admit(&[account], Generation::Chat, 0), Ok(Some(900)));
        // Images do not spend tokens.
        assert_eq!(admit(&[account, user], Generation::Image, 0), Ok(None));
        let spent = ScopeQuota { used: Usage { tokens: 500, images: 0 }, ..user };
        let refused = admit(&[account, spent], Generation::Chat, 86_400_000 - 2_000).unwrap_err();
        assert_eq!((refused.limit.as_str(), refused.retry_after_s), ("user.tokens_per_day", 2));
    }

    #[test]
    fn images_in_flight_count_against_the_days_images_and_running_ones_against_concurrency() {
        let q = ScopeQuota { images_per_day: 3, used: Usage { tokens: 0, images: 1 }, ..quota(Scope::Account) };
        assert!(admit(&[ScopeQuota { images_in_flight: 1, ..q }], Generation::Image, 0).is_ok());
        let full = admit(&[ScopeQuota { images_in_flight: 2, ..q }], Generation::Image, 0).unwrap_err();
        assert_eq!(full.limit, "account.images_per_day");
        // A chat reply is not an image.
        assert!(admit(&[ScopeQuota { images_in_flight: 2, ..q }], Generation::Chat, 0).is_ok());
        let busy = ScopeQuota { concurrent: 2, running: 2, ..quota(Scope::User) };
        let refused = admit(&[quota(Scope::Account), busy], Generation::Chat, 0).unwrap_err();
        assert_eq!((refused.limit.as_str(), refused.retry_after_s), ("user.concurrent_generations", 5));
    }

    #[test]
    fn held_counts_go_when_dropped() {
        let in_flight = InFlight::default();
        let keys = vec!["a".to_string(), "u".to_string()];
        let (_, image) = in_flight.admit_with(&keys, Generation::Image, |_| Ok::<_, ()>(())).unwrap();
        let (_, chat) = in_flight.admit_with(&keys[..1], Generation::Chat, |of| Ok::<_, ()>(of("a"))).unwrap();
        assert_eq!(in_flight.of("a"), (2, 1));
        assert_eq!(in_flight.of("u"), (1, 1));
        drop(image);
        assert_eq!((in_flight.of("a"), in_flight.of("u")), ((1, 0), (0, 0)));
        drop(chat);
        assert!(in_flight.counts.lock().unwrap().is_empty());
    }
}
