//! Browser sessions (tower-sessions), kept in the same database as everything else so they
//! survive restarts (SQLite table `tower_sessions`, Postgres `tower_sessions.session`), or in
//! Redis when `REDIS_URL` is set, so that several server processes share them.

use super::session_error;
use crate::{
    config::Config,
    storage::{Database, StorageError},
};
use axum::Router;
use fred::prelude::{ClientLike, Pool};
use tower_sessions::Session;
use tower_sessions::{
    cookie::{time, SameSite},
    ExpiredDeletion, Expiry, SessionManagerLayer, SessionStore,
};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

pub const COOKIE: &str = "duet_session";
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Create the session table when missing, and sweep expired sessions every hour.
pub async fn prepare(db: &Database) -> Result<(), StorageError> {
    match db {
        Database::Sqlite(pool) => sweep(SqliteStore::new(pool.clone()), |s| async move { s.migrate().await }).await,
        Database::Postgres(pool) => sweep(PostgresStore::new(pool.clone()), |s| async move { s.migrate().await }).await,
    }
}

async fn sweep<S, F, Fut>(store: S, migrate: F) -> Result<(), StorageError>
where
    S: ExpiredDeletion + Clone,
    F: FnOnce(S) -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<()>>,
{
    migrate(store.clone()).await?;
    tokio::spawn(async move {
        if let Err(err) = store.continuously_delete_expired(SWEEP_EVERY).await {
            tracing::warn!(error = %err, "stopped sweeping expired sessions");
        }
    });
    Ok(())
}

/// Connect to Redis (a small pool), and check it answers.
pub async fn connect_redis(url: &str) -> Result<Pool, String> {
    let masked = crate::config::masked_url(url);
    let fail = |e: fred::error::Error| format!("REDIS_URL {masked}: {e}");
    let config = fred::prelude::Config::from_url(url).map_err(fail)?;
    let pool = fred::prelude::Builder::from_config(config).build_pool(4).map_err(fail)?;
    pool.init().await.map_err(fail)?;
    let _: String = pool.ping(None).await.map_err(fail)?;
    tracing::info!(redis = %masked, "sessions and rate limits in Redis");
    Ok(pool)
}

/// Wrap the router in the session layer: Redis when configured, else this database.
pub fn layer<T: Clone + Send + Sync + 'static>(
    router: Router<T>,
    db: &Database,
    redis: Option<&Pool>,
    config: &Config,
) -> Router<T> {
    if let Some(pool) = redis {
        return router.layer(manager(RedisStore::new(pool.clone()), config));
    }
    match db {
        Database::Sqlite(pool) => router.layer(manager(SqliteStore::new(pool.clone()), config)),
        Database::Postgres(pool) => router.layer(manager(PostgresStore::new(pool.clone()), config)),
    }
}

fn manager<S: SessionStore + Clone>(store: S, config: &Config) -> SessionManagerLayer<S> {
    SessionManagerLayer::new(store)
        .with_name(COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.server.https())
        .with_expiry(Expiry::OnInactivity(time::Duration::days(config.auth.session_days.into())))
}

/// Log a session in as an account, under a new session id, so an id planted before log-in is
/// worth nothing.
pub async fn start(session: &Session, account_id: &str) -> Result<(), StorageError> {
    session.cycle_id().await.map_err(session_error)?;
    session.insert(super::SESSION_ACCOUNT, account_id).await.map_err(session_error)?;
    renew(session, crate::storage::now_ms()).await
}

/// Count the session as logged in at `since` (after a password change, the caller's own session
/// is renewed so it outlives the others).
pub async fn renew(session: &Session, since: i64) -> Result<(), StorageError> {
    session.insert(super::SESSION_SINCE, since).await.map_err(session_error)
}

pub async fn end(session: &Session) -> Result<(), StorageError> {
    session.flush().await.map_err(session_error)
}
