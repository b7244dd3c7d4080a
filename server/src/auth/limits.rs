//! Rate limits and quotas, per account and per end user (`user_id`) of an account:
//! requests per minute (token buckets), generations running or queued at once, and images and
//! generated tokens per UTC day (counted in the database, so they survive restarts).
//! Over a limit is `ServiceError::Limited`: 429 with `Retry-After` and the limit's name.

use crate::{
    config::Config,
    service::error::ServiceError,
    storage::{day_of, now_ms, Database, StorageError, Usage},
};
use app::types::{Limit, QuotaReport, QuotaScope};
use fred::prelude::LuaInterface;
use hashlink::LruCache;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

/// Buckets kept in memory; past this the least recently used one is forgotten (in O(1), never by
/// scanning the map), so a flood of new keys costs a bounded amount of memory.
const MAX_BUCKETS: usize = 10_000;

/// The configured limits; 0 means none.
#[derive(Clone, Copy, Debug, Default)]
pub struct LimitConfig {
    pub account_rpm: u32,
    pub user_rpm: u32,
    pub account_concurrent: u32,
    pub user_concurrent: u32,
    pub account_images_per_day: u32,
    pub user_images_per_day: u32,
    pub account_tokens_per_day: u64,
    pub user_tokens_per_day: u64,
    /// Log-in and sign-up requests per client address per minute.
    pub auth_rpm: u32,
    /// Log-in attempts per username and client address per minute.
    pub login_rpm: u32,
}

impl LimitConfig {
    pub fn from_config(c: &Config) -> Self {
        LimitConfig {
            account_rpm: c.account_requests_per_minute,
            user_rpm: c.user_requests_per_minute,
            account_concurrent: c.account_concurrent_generations,
            user_concurrent: c.user_concurrent_generations,
            account_images_per_day: c.account_images_per_day,
            user_images_per_day: c.user_images_per_day,
            account_tokens_per_day: c.account_tokens_per_day,
            user_tokens_per_day: c.user_tokens_per_day,
            auth_rpm: c.auth_requests_per_minute,
            login_rpm: c.login_attempts_per_minute,
        }
    }
}

/// A token bucket holding up to `per_minute` requests, refilled at `per_minute / 60` a second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    /// Seconds on the limiter's clock when `tokens` was last brought up to date.
    pub at: f64,
}

impl Bucket {
    pub fn full(per_minute: u32, now: f64) -> Bucket {
        Bucket { tokens: per_minute as f64, at: now }
    }

    fn refill(&mut self, now: f64, per_minute: u32) {
        let rate = per_minute as f64 / 60.0;
        self.tokens = (self.tokens + (now - self.at).max(0.0) * rate).min(per_minute as f64);
        self.at = now;
    }

    /// Take one request: `Ok(tokens left)`, or `Err(seconds until one is free)`.
    pub fn take(&mut self, now: f64, per_minute: u32) -> Result<f64, f64> {
        self.refill(now, per_minute);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(self.tokens)
        } else {
            Err((1.0 - self.tokens) * 60.0 / per_minute as f64)
        }
    }
}

/// The in-memory side: buckets and running generations.
struct Counters {
    /// Each bucket with its rate per minute, most recently used last.
    buckets: LruCache<String, (Bucket, u32)>,
    active: HashMap<String, u32>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters { buckets: LruCache::new(MAX_BUCKETS), active: HashMap::new() }
    }
}

#[derive(Clone)]
pub struct Limits {
    config: LimitConfig,
    counters: Arc<Mutex<Counters>>,
    clock: Instant,
    /// With `REDIS_URL`, the request buckets live there, shared by every server process.
    redis: Option<fred::prelude::Pool>,
}

/// What a generation is, for the daily quota it counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Image,
}

/// A generation counted as running or queued until dropped.
pub struct Active {
    keys: Vec<String>,
    counters: Arc<Mutex<Counters>>,
}

impl Drop for Active {
    fn drop(&mut self) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if let Some(n) = c.active.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.active.remove(key);
                }
            }
        }
    }
}

fn account_key(account: &str) -> String {
    format!("a\u{0}{account}")
}

fn user_key(account: &str, user: &str) -> String {
    format!("u\u{0}{account}\u{0}{user}")
}

fn image_key(key: &str) -> String {
    format!("img\u{0}{key}")
}

/// Seconds until the next UTC midnight, when daily quotas start again.
fn until_tomorrow(now_ms: i64) -> u64 {
    let next = (day_of(now_ms) + 1) * 86_400_000;
    ((next - now_ms) as u64).div_ceil(1000).max(1)
}

fn over_rate(name: &str, rpm: u32, wait_s: f64) -> ServiceError {
    limited(
        name,
        format!("rate limit: {rpm} requests per minute ({name}); try again in {wait_s:.1} s"),
        wait_s.ceil() as u64,
    )
}

fn limited(limit: &str, message: String, retry_after_s: u64) -> ServiceError {
    ServiceError::Limited { limit: limit.into(), message, retry_after_s: retry_after_s.max(1) }
}

impl Limits {
    pub fn new(config: LimitConfig, redis: Option<fred::prelude::Pool>) -> Limits {
        Limits { config, counters: Default::default(), clock: Instant::now(), redis }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    /// Count one request against the account's bucket, and the end user's when named.
    pub async fn request(&self, account: &str, user: Option<&str>) -> Result<(), ServiceError> {
        let mut checks = vec![(account_key(account), self.config.account_rpm, "account.requests_per_minute")];
        if let Some(user) = user {
            checks.push((user_key(account, user), self.config.user_rpm, "user.requests_per_minute"));
        }
        self.take(checks).await
    }

    /// Count a request against an end user's bucket alone (the account's was counted when the
    /// request came in, before its body named the user).
    pub async fn user_request(&self, account: &str, user: &str) -> Result<(), ServiceError> {
        self.take(vec![(user_key(account, user), self.config.user_rpm, "user.requests_per_minute")]).await
    }

    /// A log-in or sign-up request from a client address (`edge::client::limit_key`): at most
    /// `AUTH_REQUESTS_PER_MINUTE`, so one address cannot flood the password hashing.
    pub async fn auth_request(&self, client: &str) -> Result<(), ServiceError> {
        self.take(vec![(format!("c\u{0}{client}"), self.config.auth_rpm, "client.auth_requests_per_minute")]).await
    }

    /// Log-in attempts for a username from one client address: at most `LOGIN_ATTEMPTS_PER_MINUTE`,
    /// so passwords cannot be tried at speed. Keyed on the address too, so nobody elsewhere can
    /// lock the owner of a name out.
    pub async fn login_attempt(&self, username: &str, client: &str) -> Result<(), ServiceError> {
        let key = format!("l\u{0}{username}\u{0}{client}");
        self.take(vec![(key, self.config.login_rpm, "login.attempts_per_minute")]).await
    }

    async fn take(&self, mut checks: Vec<(String, u32, &str)>) -> Result<(), ServiceError> {
        checks.retain(|(_, rpm, _)| *rpm > 0);
        if checks.is_empty() {
            return Ok(());
        }
        let Some(redis) = &self.redis else { return self.take_here(checks) };
        let keys: Vec<String> = checks.iter().map(|(key, _, _)| redis_key(key)).collect();
        let rates: Vec<String> = checks.iter().map(|(_, rpm, _)| rpm.to_string()).collect();
        let answer: Vec<i64> = redis.eval(TAKE_SCRIPT, keys, rates).await.map_err(redis_error)?;
        match answer.as_slice() {
            [1] => Ok(()),
            [0, wait_ms, index] => {
                let (_, rpm, name) = checks[(*index as usize).saturating_sub(1).min(checks.len() - 1)];
                Err(over_rate(name, rpm, *wait_ms as f64 / 1000.0))
            }
            other => Err(redis_error(format!("unexpected answer from the rate-limit script: {other:?}"))),
        }
    }

    fn take_here(&self, checks: Vec<(String, u32, &str)>) -> Result<(), ServiceError> {
        let now = self.now();
        let mut c = self.lock();
        // Check every bucket before taking from any, so a refused request costs nothing.
        for (key, rpm, name) in &checks {
            let mut probe = c.buckets.get(key).map_or_else(|| Bucket::full(*rpm, now), |(b, _)| *b);
            if let Err(wait) = probe.take(now, *rpm) {
                return Err(over_rate(name, *rpm, wait));
            }
        }
        for (key, rpm, _) in checks {
            match c.buckets.get_mut(&key) {
                Some((bucket, _)) => {
                    let _ = bucket.take(now, rpm);
                }
                None => {
                    let mut bucket = Bucket::full(rpm, now);
                    let _ = bucket.take(now, rpm);
                    // Full, the least recently used bucket goes: it is the one least likely to matter.
                    c.buckets.insert(key, (bucket, rpm));
                }
            }
        }
        Ok(())
    }

    /// Start a generation: within the concurrency limits and the day's quota, or refused.
    /// Chat replies also learn how many tokens the day's quota still allows (`None`: no limit).
    pub async fn begin(
        &self,
        db: &Database,
        account: &str,
        user: Option<&str>,
        kind: Kind,
    ) -> Result<(Active, Option<u64>), ServiceError> {
        let today = day_of(now_ms());
        let account_used = db.usage(account, None, today).await?;
        let user_used = match user {
            Some(u) => Some(db.usage(account, Some(u), today).await?),
            None => None,
        };
        let mut c = self.lock();
        let mut scopes = vec![("account", account_key(account), self.config.account_concurrent, account_used)];
        if let (Some(u), Some(used)) = (user, user_used) {
            scopes.push(("user", user_key(account, u), self.config.user_concurrent, used));
        }
        let mut tokens_left: Option<u64> = None;
        for (scope, key, concurrent, used) in &scopes {
            let running = c.active.get(key).copied().unwrap_or(0);
            if *concurrent > 0 && running >= *concurrent {
                return Err(limited(
                    &format!("{scope}.concurrent_generations"),
                    format!("{running} generations are already running or queued for this {scope} (limit {concurrent}); wait for one to finish"),
                    5,
                ));
            }
            let (images_limit, tokens_limit) = match *scope {
                "account" => (self.config.account_images_per_day, self.config.account_tokens_per_day),
                _ => (self.config.user_images_per_day, self.config.user_tokens_per_day),
            };
            match kind {
                Kind::Image if images_limit > 0 => {
                    let in_flight = c.active.get(&image_key(key)).copied().unwrap_or(0) as i64;
                    if used.images + in_flight >= images_limit as i64 {
                        return Err(limited(
                            &format!("{scope}.images_per_day"),
                            format!("daily quota reached: {images_limit} images per {scope} per day (UTC)"),
                            until_tomorrow(now_ms()),
                        ));
                    }
                }
                Kind::Chat if tokens_limit > 0 => {
                    let left = tokens_limit.saturating_sub(used.tokens.max(0) as u64);
                    if left == 0 {
                        return Err(limited(
                            &format!("{scope}.tokens_per_day"),
                            format!("daily quota reached: {tokens_limit} generated tokens per {scope} per day (UTC)"),
                            until_tomorrow(now_ms()),
                        ));
                    }
                    tokens_left = Some(tokens_left.map_or(left, |t| t.min(left)));
                }
                _ => {}
            }
        }
        let mut keys = Vec::new();
        for (_, key, _, _) in scopes {
            if kind == Kind::Image {
                keys.push(image_key(&key));
            }
            keys.push(key);
        }
        for key in &keys {
            *c.active.entry(key.clone()).or_insert(0) += 1;
        }
        Ok((Active { keys, counters: self.counters.clone() }, tokens_left))
    }

    /// Record what a finished generation made.
    pub async fn record(
        &self,
        db: &Database,
        account: &str,
        user: Option<&str>,
        tokens: u64,
        images: u64,
    ) -> Result<(), StorageError> {
        if tokens == 0 && images == 0 {
            return Ok(());
        }
        db.add_usage(account, user.unwrap_or(""), day_of(now_ms()), tokens as i64, images as i64).await
    }

    /// Usage and limits for `GET /quota`.
    pub async fn report(&self, db: &Database, account: &str, user: Option<&str>) -> Result<QuotaReport, StorageError> {
        let now = now_ms();
        let today = day_of(now);
        let account_used = db.usage(account, None, today).await?;
        let user_used = match user {
            Some(u) => Some(db.usage(account, Some(u), today).await?),
            None => None,
        };
        let cfg = &self.config;
        let account_left = self.tokens_left(&account_key(account), cfg.account_rpm).await?;
        let user_left = match user {
            Some(u) => self.tokens_left(&user_key(account, u), cfg.user_rpm).await?,
            None => 0.0,
        };
        let c = self.lock();
        let scope = |key: String, rpm: u32, concurrent: u32, images: u32, tokens: u64, used: Usage, remaining: f64| {
            let in_flight = c.active.get(&image_key(&key)).copied().unwrap_or(0) as u64;
            QuotaScope {
                requests_per_minute: limit(rpm.into(), (rpm as f64 - remaining).max(0.0).round() as u64),
                concurrent_generations: limit(concurrent.into(), c.active.get(&key).copied().unwrap_or(0).into()),
                images_per_day: limit(images.into(), used.images.max(0) as u64 + in_flight),
                tokens_per_day: limit(tokens, used.tokens.max(0) as u64),
            }
        };
        let account_scope = scope(
            account_key(account),
            cfg.account_rpm,
            cfg.account_concurrent,
            cfg.account_images_per_day,
            cfg.account_tokens_per_day,
            account_used,
            account_left,
        );
        let user_scope = user.zip(user_used).map(|(u, used)| {
            scope(
                user_key(account, u),
                cfg.user_rpm,
                cfg.user_concurrent,
                cfg.user_images_per_day,
                cfg.user_tokens_per_day,
                used,
                user_left,
            )
        });
        Ok(QuotaReport {
            user_id: user.map(String::from),
            account: account_scope,
            user: user_scope,
            day_resets_at: (today + 1) * 86_400_000,
        })
    }
}

impl Limits {
    /// Requests a bucket still holds now.
    async fn tokens_left(&self, key: &str, rpm: u32) -> Result<f64, StorageError> {
        if let Some(redis) = &self.redis {
            let milli: i64 = redis
                .eval(LEFT_SCRIPT, vec![redis_key(key)], vec![rpm.to_string()])
                .await
                .map_err(|e| StorageError::Redis(e.to_string()))?;
            return Ok(milli as f64 / 1000.0);
        }
        let t = self.now();
        Ok(self.lock().buckets.peek(key).map_or(rpm as f64, |(b, _)| {
            let mut b = *b;
            b.refill(t, rpm);
            b.tokens
        }))
    }
}

/// Take one request from every bucket in KEYS (rates per minute in ARGV), all or none, on the
/// Redis server's clock, so every server process sharing it sees the same buckets. Answers `{1}`,
/// or `{0, milliseconds to wait, index of the bucket that refused}`. Idle buckets expire: after two
/// minutes they would be full again anyway.
const TAKE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local left = {}
for i, key in ipairs(KEYS) do
  local rpm = tonumber(ARGV[i])
  local v = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(v[1]) or rpm
  local at = tonumber(v[2]) or now
  tokens = math.min(rpm, tokens + math.max(0, now - at) * rpm / 60)
  if tokens < 1 then
    return {0, math.ceil((1 - tokens) * 60000 / rpm), i}
  end
  left[i] = tokens
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'tokens', tostring(left[i] - 1), 'at', tostring(now))
  redis.call('EXPIRE', key, 120)
end
return {1}
"#;

/// Thousandths of a request the bucket KEYS[1] (rate ARGV[1] per minute) holds now.
const LEFT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rpm = tonumber(ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(v[1]) or rpm
local at = tonumber(v[2]) or now
return math.floor(math.min(rpm, tokens + math.max(0, now - at) * rpm / 60) * 1000)
"#;

fn redis_key(key: &str) -> String {
    format!("duet:rate:{key}")
}

fn redis_error(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Storage(StorageError::Redis(e.to_string()))
}

fn limit(limit: u64, used: u64) -> Limit {
    Limit { limit: (limit > 0).then_some(limit), used }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_refill_at_the_rate() {
        let mut b = Bucket::full(60, 0.0);
        for _ in 0..60 {
            assert!(b.take(0.0, 60).is_ok());
        }
        let wait = b.take(0.0, 60).unwrap_err();
        assert!((wait - 1.0).abs() < 1e-9, "one a second at 60/min: {wait}");
        assert!(b.take(0.5, 60).is_err());
        assert_eq!(b.take(1.0, 60), Ok(0.0));
        // Idle time refills, but never beyond the size of the bucket.
        assert_eq!(b.take(1000.0, 60), Ok(59.0));
    }

    #[tokio::test]
    async fn a_refused_request_costs_nothing_and_limits_are_separate_per_user() {
        let limits = Limits::new(LimitConfig { account_rpm: 3, user_rpm: 1, ..Default::default() }, None);
        limits.request("a", Some("u1")).await.unwrap();
        let refused = limits.request("a", Some("u1")).await.unwrap_err();
        assert!(matches!(&refused, ServiceError::Limited { limit, .. } if limit == "user.requests_per_minute"));
        limits.request("a", Some("u2")).await.unwrap();
        limits.request("a", None).await.unwrap();
        // The account's bucket (3) is now empty: u1's refused request did not take from it.
        limits.user_request("a", "u3").await.unwrap();
        let refused = limits.request("a", None).await.unwrap_err();
        assert!(
            matches!(refused, ServiceError::Limited { ref limit, retry_after_s: 20, .. } if limit == "account.requests_per_minute")
        );
        limits.request("b", None).await.unwrap();
    }

    #[tokio::test]
    async fn bucket_memory_is_bounded_and_busy_buckets_stay() {
        let limits = Limits::new(LimitConfig { auth_rpm: 2, ..Default::default() }, None);
        limits.auth_request("attacker").await.unwrap();
        limits.auth_request("attacker").await.unwrap();
        assert!(limits.auth_request("attacker").await.is_err());
        for i in 0..MAX_BUCKETS + 500 {
            limits.auth_request(&format!("flood-{i}")).await.unwrap();
            if i % 1000 == 0 {
                // Still in use, so never the least recently used one.
                assert!(limits.auth_request("attacker").await.is_err(), "after {i} new keys");
            }
        }
        assert_eq!(limits.lock().buckets.len(), MAX_BUCKETS);
    }

    #[tokio::test]
    async fn log_in_attempts_are_limited_per_name_and_address() {
        let limits = Limits::new(LimitConfig { login_rpm: 2, ..Default::default() }, None);
        limits.login_attempt("admin", "203.0.113.9").await.unwrap();
        limits.login_attempt("admin", "203.0.113.9").await.unwrap();
        let refused = limits.login_attempt("admin", "203.0.113.9").await.unwrap_err();
        assert!(matches!(refused, ServiceError::Limited { ref limit, .. } if limit == "login.attempts_per_minute"));
        // The owner, from elsewhere, is not locked out.
        limits.login_attempt("admin", "198.51.100.7").await.unwrap();
        // 0 turns a limit off.
        let off = Limits::new(LimitConfig::default(), None);
        for _ in 0..100 {
            off.login_attempt("admin", "x").await.unwrap();
            off.auth_request("x").await.unwrap();
        }
    }

    #[test]
    fn daily_quotas_reset_at_utc_midnight() {
        assert_eq!(until_tomorrow(0), 86_400);
        assert_eq!(until_tomorrow(86_400_000 - 1), 1);
        assert_eq!(until_tomorrow(86_400_000 + 500), 86_400);
    }
}
