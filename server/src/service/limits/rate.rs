//! Requests per minute: token buckets, kept in this process or, with `REDIS_URL`, in Redis so
//! every server process sharing it sees the same buckets. Both stores take from several buckets
//! at once, all or none, so a refused request costs nothing.

use crate::storage::StorageError;
use fred::prelude::LuaInterface;
use futures::future::BoxFuture;
use hashlink::LruCache;
use std::{sync::Mutex, time::Instant};

/// Buckets kept in memory; past this the least recently used one is forgotten (in O(1), never by
/// scanning the map), so a flood of new keys costs a bounded amount of memory.
pub const MAX_BUCKETS: usize = 10_000;

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

/// One bucket a request must take from.
#[derive(Clone, Debug, PartialEq)]
pub struct RateCheck {
    pub key: String,
    pub per_minute: u32,
    /// The limit's public name (`account.requests_per_minute`, …), for the 429.
    pub limit: &'static str,
}

/// A bucket that had nothing left: which one, and how long until it has.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub check: RateCheck,
    pub wait_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error("rate limit {}: try again in {:.1} s", .0.check.limit, .0.wait_s)]
    Refused(Refused),
    #[error(transparent)]
    Store(#[from] StorageError),
}

/// Where the buckets live.
pub trait RateStore: Send + Sync {
    /// Take one request from every bucket of `checks`, or from none.
    fn take(&self, checks: Vec<RateCheck>) -> BoxFuture<'_, Result<(), RateError>>;
    /// Requests the bucket `key` holds now.
    fn left<'a>(&'a self, key: &'a str, per_minute: u32) -> BoxFuture<'a, Result<f64, StorageError>>;
}

/// Buckets in this process, the least recently used forgotten past `MAX_BUCKETS`.
pub struct MemoryRates {
    buckets: Mutex<LruCache<String, Bucket>>,
    clock: Instant,
}

impl Default for MemoryRates {
    fn default() -> Self {
        MemoryRates { buckets: Mutex::new(LruCache::new(MAX_BUCKETS)), clock: Instant::now() }
    }
}

impl MemoryRates {
    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_now(&self, checks: Vec<RateCheck>) -> Result<(), RateError> {
        let now = self.clock.elapsed().as_secs_f64();
        let mut buckets = self.lock();
        // Check every bucket before taking from any, so a refused request costs nothing.
        for check in &checks {
            let mut probe = buckets.get(&check.key).copied().unwrap_or_else(|| Bucket::full(check.per_minute, now));
            if let Err(wait_s) = probe.take(now, check.per_minute) {
                return Err(RateError::Refused(Refused { check: check.clone(), wait_s }));
            }
        }
        for check in checks {
            match buckets.get_mut(&check.key) {
                Some(bucket) => {
                    let _ = bucket.take(now, check.per_minute);
                }
                None => {
                    let mut bucket = Bucket::full(check.per_minute, now);
                    let _ = bucket.take(now, check.per_minute);
                    // Full, the least recently used bucket goes: it is the one least likely to matter.
                    buckets.insert(check.key, bucket);
                }
            }
        }
        Ok(())
    }
}

impl RateStore for MemoryRates {
    fn take(&self, checks: Vec<RateCheck>) -> BoxFuture<'_, Result<(), RateError>> {
        let taken = self.take_now(checks);
        Box::pin(async move { taken })
    }

    fn left<'a>(&'a self, key: &'a str, per_minute: u32) -> BoxFuture<'a, Result<f64, StorageError>> {
        let now = self.clock.elapsed().as_secs_f64();
        let left = self.lock().peek(key).map_or(per_minute as f64, |b| {
            let mut b = *b;
            b.refill(now, per_minute);
            b.tokens
        });
        Box::pin(async move { Ok(left) })
    }
}

/// Buckets in Redis, on the Redis server's clock.
pub struct RedisRates {
    pub pool: fred::prelude::Pool,
}

fn redis_key(key: &str) -> String {
    format!("duet:rate:{key}")
}

fn redis_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Redis(e.to_string())
}

impl RateStore for RedisRates {
    fn take(&self, checks: Vec<RateCheck>) -> BoxFuture<'_, Result<(), RateError>> {
        Box::pin(async move {
            let keys: Vec<String> = checks.iter().map(|c| redis_key(&c.key)).collect();
            let rates: Vec<String> = checks.iter().map(|c| c.per_minute.to_string()).collect();
            let answer: Vec<i64> = self.pool.eval(TAKE_SCRIPT, keys, rates).await.map_err(redis_error)?;
            match answer.as_slice() {
                [1] => Ok(()),
                [0, wait_ms, index] => {
                    let at = (*index as usize).saturating_sub(1).min(checks.len() - 1);
                    let check = checks[at].clone();
                    Err(RateError::Refused(Refused { check, wait_s: *wait_ms as f64 / 1000.0 }))
                }
                other => Err(redis_error(format!("unexpected answer from the rate-limit script: {other:?}")).into()),
            }
        })
    }

    fn left<'a>(&'a self, key: &'a str, per_minute: u32) -> BoxFuture<'a, Result<f64, StorageError>> {
        Box::pin(async move {
            let milli: i64 = self
                .pool
                .eval(LEFT_SCRIPT, vec![redis_key(key)], vec![per_minute.to_string()])
                .await
                .map_err(redis_error)?;
            Ok(milli as f64 / 1000.0)
        })
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
    async fn a_refusal_names_the_bucket_and_takes_from_none() {
        let rates = MemoryRates::default();
        let check = |key: &str, per_minute, limit| RateCheck { key: key.into(), per_minute, limit };
        rates.take(vec![check("a", 2, "a.rpm"), check("b", 1, "b.rpm")]).await.unwrap();
        let Err(RateError::Refused(refused)) = rates.take(vec![check("a", 2, "a.rpm"), check("b", 1, "b.rpm")]).await
        else {
            panic!("b is empty")
        };
        assert_eq!(refused.check.limit, "b.rpm");
        assert!((refused.wait_s - 60.0).abs() < 0.1, "{}", refused.wait_s);
        // "a" gave nothing to the refused request: one left.
        assert!((rates.left("a", 2).await.unwrap() - 1.0).abs() < 0.01);
    }
}
