//! Browser sessions (tower-sessions), kept in the same database as everything else so they
//! survive restarts: SQLite table `tower_sessions`, Postgres `tower_sessions.session`.

use crate::{
    config::Config,
    storage::{Database, StorageError},
};
use axum::Router;
use tower_sessions::{
    cookie::{time, SameSite},
    ExpiredDeletion, Expiry, SessionManagerLayer, SessionStore,
};
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

/// Wrap the router in the session layer for this database.
pub fn layer<T: Clone + Send + Sync + 'static>(router: Router<T>, db: &Database, config: &Config) -> Router<T> {
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
        .with_secure(config.https())
        .with_expiry(Expiry::OnInactivity(time::Duration::days(config.session_days.into())))
}
