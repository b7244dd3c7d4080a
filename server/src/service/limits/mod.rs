//! Rate limits and quotas, per account and per end user (`user_id`) of an account: requests per
//! minute (`rate`: token buckets, in memory or in Redis), generations running or queued at once,
//! and images and generated tokens per UTC day (`quota`). Over a limit is
//! `ServiceError::Limited`: 429 with `Retry-After` and the limit's name.

pub mod quota;
pub mod rate;
pub mod sockets;

use super::error::ServiceError;
use crate::{
    config::LimitsConfig,
    storage::{day_of, now_ms, Database, JobCounts, StorageError, Usage},
    telemetry::catalogue::LIMIT_REFUSALS,
};
use app::types::{Limit, QuotaReport, QuotaScope};
pub use quota::{Admission, Generation, Made, UsageMeter};
use quota::{InFlight, Refusal, ScopeQuota};
use rate::{MemoryRates, RateCheck, RateError, RateStore, RedisRates};
use sockets::OpenSockets;
pub use sockets::SocketPlace;
use std::{net::IpAddr, sync::Arc};

/// Whose limits: the account's, or one end user's within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Account,
    User,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::User => "user",
        }
    }
}

/// One scope's configured limits.
struct ScopeLimits {
    rpm: u32,
    concurrent: u32,
    images_per_day: u32,
    tokens_per_day: u64,
}

impl ScopeLimits {
    fn of(config: &LimitsConfig, scope: Scope) -> ScopeLimits {
        match scope {
            Scope::Account => ScopeLimits {
                rpm: config.account_requests_per_minute,
                concurrent: config.account_concurrent_generations,
                images_per_day: config.account_images_per_day,
                tokens_per_day: config.account_tokens_per_day,
            },
            Scope::User => ScopeLimits {
                rpm: config.user_requests_per_minute,
                concurrent: config.user_concurrent_generations,
                images_per_day: config.user_images_per_day,
                tokens_per_day: config.user_tokens_per_day,
            },
        }
    }
}

/// The key a client's limits are kept under: its IPv4 address, or its IPv6 /64 (one
/// subscriber's network, which hands out addresses by the billion).
pub fn client_key(client: Option<IpAddr>) -> String {
    match client {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".into(),
    }
}

fn account_key(account: &str) -> String {
    format!("a\u{0}{account}")
}

fn user_key(account: &str, user: &str) -> String {
    format!("u\u{0}{account}\u{0}{user}")
}

/// A refusal by the limit named `limit` (counted in the metrics by that name).
pub(crate) fn limited(limit: impl Into<String>, message: String, retry_after_s: u64) -> ServiceError {
    let limit = limit.into();
    metrics::counter!(LIMIT_REFUSALS, "limit" => limit.clone()).increment(1);
    ServiceError::Limited { limit, message, retry_after_s: retry_after_s.max(1) }
}

impl From<RateError> for ServiceError {
    fn from(e: RateError) -> Self {
        match e {
            RateError::Refused(r) => {
                let (name, rpm) = (r.check.limit, r.check.per_minute);
                let message = format!("rate limit: {rpm} requests per minute ({name}); try again in {:.1} s", r.wait_s);
                limited(name, message, r.wait_s.ceil() as u64)
            }
            RateError::Store(e) => ServiceError::Storage(e),
        }
    }
}

impl From<Refusal> for ServiceError {
    fn from(r: Refusal) -> Self {
        limited(r.limit, r.message, r.retry_after_s)
    }
}

#[derive(Clone)]
pub struct Limits {
    config: LimitsConfig,
    rates: Arc<dyn RateStore>,
    in_flight: InFlight,
    sockets: OpenSockets,
    /// This process's name: the replies other processes are writing count from their rows.
    process: Arc<str>,
}

/// What an owner holds beyond this process's own generations: image jobs queued or drawing on
/// any process (their rows), and chat replies other processes are writing (their rows in flight).
#[derive(Clone, Copy, Debug, Default)]
struct Elsewhere {
    jobs: JobCounts,
    /// (the account's, its end user's)
    replies: (i64, i64),
}

impl Elsewhere {
    /// (generations, images) of a scope.
    fn of(&self, scope: Scope) -> (u32, u32) {
        let (jobs, replies) = match scope {
            Scope::Account => (self.jobs.account, self.replies.0),
            Scope::User => (self.jobs.of_user, self.replies.1),
        };
        ((jobs + replies) as u32, jobs as u32)
    }
}

impl Limits {
    /// With a Redis pool the request buckets live there, shared by every server process.
    pub fn new(config: LimitsConfig, redis: Option<fred::prelude::Pool>) -> Limits {
        let rates: Arc<dyn RateStore> = match redis {
            Some(pool) => Arc::new(RedisRates { pool }),
            None => Arc::new(MemoryRates::default()),
        };
        Limits { config, rates, in_flight: InFlight::default(), sockets: OpenSockets::default(), process: "".into() }
    }

    /// These limits for the process named `process` (`service::presence`).
    pub fn for_process(self, process: Arc<str>) -> Limits {
        Limits { process, ..self }
    }

    /// What the owner holds beyond this process's own generations.
    async fn elsewhere(&self, db: &Database, account: &str, user: Option<&str>) -> Result<Elsewhere, StorageError> {
        let user = user.unwrap_or("");
        let jobs = db.unfinished_job_counts(account, user).await?;
        let replies = db.replies_elsewhere(account, user, &self.process).await?;
        Ok(Elsewhere { jobs, replies })
    }

    /// A place for one more WebSocket of the account (`ACCOUNT_WEBSOCKETS`), or 429.
    pub fn open_socket(&self, account: &str) -> Result<SocketPlace, ServiceError> {
        let limit = self.config.account_websockets;
        self.sockets.open(account, limit).ok_or_else(|| {
            let message =
                format!("at most {limit} WebSockets open at once per account (ACCOUNT_WEBSOCKETS); close one");
            limited("account.websockets", message, 5)
        })
    }

    /// WebSockets the account holds open on this process.
    pub fn open_sockets(&self, account: &str) -> u32 {
        self.sockets.open_for(account)
    }

    /// WebSockets open on this process, every account's.
    pub fn all_open_sockets(&self) -> u64 {
        self.sockets.total()
    }

    /// Count one request against the account's bucket, and the end user's when named.
    pub async fn request(&self, account: &str, user: Option<&str>) -> Result<(), ServiceError> {
        let mut checks = vec![self.check(account_key(account), Scope::Account)];
        if let Some(user) = user {
            checks.push(self.check(user_key(account, user), Scope::User));
        }
        self.take(checks).await
    }

    /// Count a request against an end user's bucket alone (the account's was counted when the
    /// request came in, before its body named the user).
    pub async fn user_request(&self, account: &str, user: &str) -> Result<(), ServiceError> {
        self.take(vec![self.check(user_key(account, user), Scope::User)]).await
    }

    /// A log-in or sign-up request from a client address (`client_key`): at most
    /// `AUTH_REQUESTS_PER_MINUTE`, so one address cannot flood the password hashing.
    pub async fn auth_request(&self, client: &str) -> Result<(), ServiceError> {
        let key = format!("c\u{0}{client}");
        self.take(vec![RateCheck {
            key,
            per_minute: self.config.auth_requests_per_minute,
            limit: "client.auth_requests_per_minute",
        }])
        .await
    }

    /// Log-in attempts for a username from one client address: at most `LOGIN_ATTEMPTS_PER_MINUTE`,
    /// so passwords cannot be tried at speed. Keyed on the address too, so nobody elsewhere can
    /// lock the owner of a name out.
    pub async fn login_attempt(&self, username: &str, client: &str) -> Result<(), ServiceError> {
        let key = format!("l\u{0}{username}\u{0}{client}");
        self.take(vec![RateCheck {
            key,
            per_minute: self.config.login_attempts_per_minute,
            limit: "login.attempts_per_minute",
        }])
        .await
    }

    fn check(&self, key: String, scope: Scope) -> RateCheck {
        let limit = match scope {
            Scope::Account => "account.requests_per_minute",
            Scope::User => "user.requests_per_minute",
        };
        RateCheck { key, per_minute: ScopeLimits::of(&self.config, scope).rpm, limit }
    }

    async fn take(&self, mut checks: Vec<RateCheck>) -> Result<(), ServiceError> {
        checks.retain(|c| c.per_minute > 0);
        if checks.is_empty() {
            return Ok(());
        }
        Ok(self.rates.take(checks).await?)
    }

    /// The scopes a caller's generation counts in, with their keys.
    fn scopes(account: &str, user: Option<&str>) -> Vec<(Scope, String)> {
        let mut scopes = vec![(Scope::Account, account_key(account))];
        if let Some(user) = user {
            scopes.push((Scope::User, user_key(account, user)));
        }
        scopes
    }

    /// What each scope has used today.
    async fn used(db: &Database, account: &str, user: Option<&str>) -> Result<Vec<Usage>, StorageError> {
        let today = day_of(now_ms());
        let mut used = Vec::new();
        for (scope, _) in Self::scopes(account, user) {
            let user = (scope == Scope::User).then_some(user).flatten();
            used.push(db.usage(account, user, today).await?);
        }
        Ok(used)
    }

    /// Each scope's limits and what it holds now: generations of this process in flight
    /// (`local`) plus image jobs queued or running on any process and chat replies other
    /// processes are writing (`elsewhere`, from their rows).
    fn quotas(
        &self,
        account: &str,
        user: Option<&str>,
        used: &[Usage],
        elsewhere: Elsewhere,
        local: &dyn Fn(&str) -> (u32, u32),
    ) -> Vec<ScopeQuota> {
        Self::scopes(account, user)
            .iter()
            .zip(used)
            .map(|((scope, key), used)| {
                let limits = ScopeLimits::of(&self.config, *scope);
                let (running, images) = local(key);
                let (running_elsewhere, images_elsewhere) = elsewhere.of(*scope);
                ScopeQuota {
                    scope: *scope,
                    concurrent: limits.concurrent,
                    images_per_day: limits.images_per_day,
                    tokens_per_day: limits.tokens_per_day,
                    running: running + running_elsewhere,
                    images_in_flight: images + images_elsewhere,
                    used: *used,
                }
            })
            .collect()
    }

    /// Admit a generation: within the concurrency limits and the day's quota, or refused. Chat
    /// replies also learn how many tokens the day's quota still allows (`None`: no limit). Image
    /// jobs themselves are admitted through [`Limits::image_gate`], counted with their rows.
    pub async fn admit(
        &self,
        db: &Database,
        account: &str,
        user: Option<&str>,
        what: Generation,
    ) -> Result<(Admission, Option<u64>), ServiceError> {
        let used = Self::used(db, account, user).await?;
        let elsewhere = self.elsewhere(db, account, user).await?;
        let keys: Vec<String> = Self::scopes(account, user).into_iter().map(|(_, key)| key).collect();
        let (tokens_left, held) = self.in_flight.admit_with(&keys, what, |local| {
            quota::admit(&self.quotas(account, user, &used, elsewhere, local), what, now_ms())
        })?;
        let meter = UsageMeter { db: db.clone(), account: account.to_string(), user: user.map(String::from) };
        Ok((Admission { _held: held, meter }, tokens_left))
    }

    /// Counts what `account`'s end user `user` made against the day's quota, outside an
    /// admission (a reply stored after its process went away).
    pub fn meter(&self, db: &Database, account: &str, user: &str) -> quota::UsageMeter {
        quota::UsageMeter { db: db.clone(), account: account.to_string(), user: Some(user.to_string()) }
    }

    /// The check a new image job passes, against the jobs of its owner queued or running on
    /// every process, counted when its row is inserted (`ImageJobs::submit`), so two processes
    /// cannot both let in the last one. Today's use and the replies other processes are writing
    /// are read now.
    pub async fn image_gate(
        &self,
        db: &Database,
        account: &str,
        user: Option<&str>,
    ) -> Result<ImageGate, ServiceError> {
        let used = Self::used(db, account, user).await?;
        let replies = self.elsewhere(db, account, user).await?.replies;
        Ok(ImageGate {
            limits: self.clone(),
            account: account.to_string(),
            user: user.map(String::from),
            used,
            replies,
        })
    }

    /// Usage and limits for `GET /quota`.
    pub async fn report(&self, db: &Database, account: &str, user: Option<&str>) -> Result<QuotaReport, StorageError> {
        let today = day_of(now_ms());
        let elsewhere = self.elsewhere(db, account, user).await?;
        let mut scopes = Vec::new();
        for (scope, key) in Self::scopes(account, user) {
            let limits = ScopeLimits::of(&self.config, scope);
            let user = (scope == Scope::User).then_some(user).flatten();
            let used = db.usage(account, user, today).await?;
            let left = self.rates.left(&key, limits.rpm).await?;
            let (running, images_in_flight) = self.in_flight.of(&key);
            let (running_elsewhere, images_elsewhere) = elsewhere.of(scope);
            let (running, images_in_flight) = (running + running_elsewhere, images_in_flight + images_elsewhere);
            scopes.push(QuotaScope {
                requests_per_minute: limit(limits.rpm.into(), (limits.rpm as f64 - left).max(0.0).round() as u64),
                concurrent_generations: limit(limits.concurrent.into(), running.into()),
                images_per_day: limit(
                    limits.images_per_day.into(),
                    used.images.max(0) as u64 + images_in_flight as u64,
                ),
                tokens_per_day: limit(limits.tokens_per_day, used.tokens.max(0) as u64),
            });
        }
        let mut scopes = scopes.into_iter();
        Ok(QuotaReport {
            user_id: user.map(String::from),
            account: scopes.next().expect("the account's scope"),
            user: scopes.next(),
            day_resets_at: (today + 1) * 86_400_000,
        })
    }
}

/// An image job's admission, checked against the counts read as its row is inserted.
pub struct ImageGate {
    limits: Limits,
    account: String,
    user: Option<String>,
    used: Vec<Usage>,
    replies: (i64, i64),
}

impl ImageGate {
    pub fn check(&self, jobs: JobCounts) -> Result<(), ServiceError> {
        let (account, user) = (self.account.as_str(), self.user.as_deref());
        let local = |key: &str| self.limits.in_flight.of(key);
        let elsewhere = Elsewhere { jobs, replies: self.replies };
        quota::admit(&self.limits.quotas(account, user, &self.used, elsewhere, &local), Generation::Image, now_ms())?;
        Ok(())
    }
}

fn limit(limit: u64, used: u64) -> Limit {
    Limit { limit: (limit > 0).then_some(limit), used }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_network() {
        assert_eq!(client_key(Some(ip("2001:db8:1:2:aaaa::1"))), client_key(Some(ip("2001:db8:1:2:bbbb::9"))));
        assert_ne!(client_key(Some(ip("2001:db8:1:2::1"))), client_key(Some(ip("2001:db8:1:3::1"))));
        assert_eq!(client_key(Some(ip("192.0.2.1"))), "192.0.2.1");
        assert_eq!(client_key(None), "unknown");
    }

    #[tokio::test]
    async fn a_refused_request_costs_nothing_and_limits_are_separate_per_user() {
        let limits = Limits::new(
            LimitsConfig { account_requests_per_minute: 3, user_requests_per_minute: 1, ..Default::default() },
            None,
        );
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
        let memory = Arc::new(MemoryRates::default());
        let limits = Limits {
            config: LimitsConfig { auth_requests_per_minute: 2, ..Default::default() },
            rates: memory.clone(),
            in_flight: InFlight::default(),
            sockets: OpenSockets::default(),
            process: "".into(),
        };
        limits.auth_request("attacker").await.unwrap();
        limits.auth_request("attacker").await.unwrap();
        assert!(limits.auth_request("attacker").await.is_err());
        for i in 0..rate::MAX_BUCKETS + 500 {
            limits.auth_request(&format!("flood-{i}")).await.unwrap();
            if i % 1000 == 0 {
                // Still in use, so never the least recently used one.
                assert!(limits.auth_request("attacker").await.is_err(), "after {i} new keys");
            }
        }
        assert_eq!(memory.len(), rate::MAX_BUCKETS);
    }

    #[tokio::test]
    async fn log_in_attempts_are_limited_per_name_and_address() {
        let limits = Limits::new(LimitsConfig { login_attempts_per_minute: 2, ..Default::default() }, None);
        limits.login_attempt("admin", "203.0.113.9").await.unwrap();
        limits.login_attempt("admin", "203.0.113.9").await.unwrap();
        let refused = limits.login_attempt("admin", "203.0.113.9").await.unwrap_err();
        assert!(matches!(refused, ServiceError::Limited { ref limit, .. } if limit == "login.attempts_per_minute"));
        // The owner, from elsewhere, is not locked out.
        limits.login_attempt("admin", "198.51.100.7").await.unwrap();
        // 0 turns a limit off.
        let off = Limits::new(LimitsConfig::default(), None);
        for _ in 0..100 {
            off.login_attempt("admin", "x").await.unwrap();
            off.auth_request("x").await.unwrap();
        }
    }
}
