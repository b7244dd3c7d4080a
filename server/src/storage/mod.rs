//! The database: SQLite (one file, WAL) by default, Postgres for bigger installs. One type in
//! front of both, so the service layer never cares which. Queries are written once with `$N`
//! placeholders (numbered in order of first use), which both backends read alike.

mod accounts;
mod chat;
mod gallery;
mod history;
mod images;
mod jobs;
mod pictures;
mod presence;
pub use presence::{OrphanReply, ProcessInfo, ReplyStarted};
pub mod search;
mod templates;
mod usage;

pub use accounts::{AccountRow, ApiKeyRow, KeyOwnerRow, NewAccount};
pub use chat::{ChatSettingsRow, ConversationRow, MessageRow, NewMessage};
pub use gallery::{GalleryFilter, ShareRow};
pub use history::{FullMessageRow, SearchRow};
pub use images::ImageRow;
pub use jobs::{JobCounts, JobRow, JOB_CHANNEL};
pub use pictures::{PictureStream, Pictures};
pub use templates::TemplateRow;
pub use usage::{day_of, Usage};

/// Run `$body` with `$pool` bound to whichever pool `$db` holds (the query code is generic over
/// the backend, so it is compiled once for each).
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::storage::Database::Sqlite($pool) => $body,
            $crate::storage::Database::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A transaction that is going to write. On SQLite it takes the write lock at `BEGIN IMMEDIATE`,
/// waiting out the busy timeout for it; a deferred `BEGIN` takes it at the first write, where a
/// connection already reading gets `SQLITE_BUSY` at once if another one wrote meanwhile (seen
/// under load: 64 sessions at once gave a few `database is locked` 500s on storing messages).
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = sqlx::Result<sqlx::Transaction<'static, Self::Db>>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = sqlx::Result<sqlx::Transaction<'static, Self::Db>>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = sqlx::Result<sqlx::Transaction<'static, Self::Db>>> + Send {
        self.begin()
    }
}

/// Now, in Unix milliseconds (the time unit of every table).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

use crate::config::DatabaseUrl;
use sqlx::{
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
};
use std::{str::FromStr, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("could not create the database folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(sqlx::Error),
    #[error("session store: {0}")]
    Session(String),
    #[error("redis: {0}")]
    Redis(String),
    #[error("image files: {0}")]
    Files(String),
}

/// Every failed query passes here, so the metrics count it.
impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        metrics::counter!(crate::telemetry::catalogue::DB_ERRORS).increment(1);
        StorageError::Query(e)
    }
}

#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    /// Connect (creating the SQLite file and its folder when needed).
    pub async fn connect(url: &DatabaseUrl) -> Result<Database, StorageError> {
        let connect_err = |source| StorageError::Connect { url: url.masked(), source };
        match url {
            DatabaseUrl::Sqlite(raw) => {
                let options = SqliteConnectOptions::from_str(raw)
                    .map_err(connect_err)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                if let Some(parent) = options.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|source| StorageError::Folder { path: parent.display().to_string(), source })?;
                }
                let pool =
                    SqlitePoolOptions::new().max_connections(8).connect_with(options).await.map_err(connect_err)?;
                Ok(Database::Sqlite(pool))
            }
            DatabaseUrl::Postgres(raw) => {
                let options = PgConnectOptions::from_str(raw).map_err(connect_err)?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Ok(Database::Postgres(pool))
            }
        }
    }

    /// Apply the migrations for this backend (`migrations/sqlite` or `migrations/postgres`).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::migrate!("../migrations/sqlite").run(pool).await?,
            Database::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// The pool's connections: `(in use, idle)`.
    pub fn connections(&self) -> (usize, usize) {
        let (size, idle) = on_pool!(self, |pool| (pool.size() as usize, pool.num_idle()));
        (size.saturating_sub(idle), idle)
    }

    /// Browser sessions in the database that have not expired yet (tower-sessions' tables).
    pub async fn live_sessions(&self) -> Result<i64, StorageError> {
        Ok(match self {
            Database::Sqlite(pool) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM tower_sessions WHERE datetime(expiry_date) > datetime('now')")
                    .fetch_one(pool)
                    .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM tower_sessions.session WHERE expiry_date > now()")
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StorageError> {
        match self {
            Database::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Database::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }
}

/// What an account can revoke: rows that stay (for their history) with a `revoked_at` time.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Revocable {
    ApiKey,
    Share,
}

impl Database {
    /// Revoke one of the account's live keys or shares; false when it has no such live one.
    pub(crate) async fn revoke(&self, what: Revocable, account_id: &str, id: &str) -> Result<bool, StorageError> {
        let sql = match what {
            Revocable::ApiKey => {
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL"
            }
            Revocable::Share => {
                "UPDATE shares SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL"
            }
        };
        let done = on_pool!(self, |pool| sqlx::query(sql)
            .bind(now_ms())
            .bind(id)
            .bind(account_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }
}
