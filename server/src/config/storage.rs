//! Where Duet keeps what it stores: its data folder, the database, and Redis when several
//! processes share sessions and rate buckets.

use super::{masked_url, Secret};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Storage")]
pub struct StorageConfig {
    /// Folder for the database, downloaded models and generated images.
    #[arg(long, env = "DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// Database: `sqlite://FILE` (default `DATA_DIR/duet.db`) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_database_url, global = true)]
    pub database_url: Option<DatabaseUrl>,

    /// Redis (`redis://HOST:PORT[/DB]`) for sessions and rate-limit buckets, so several server
    /// processes share them; unset: sessions in the database, buckets in memory.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<Secret>,
}

impl StorageConfig {
    pub fn database_url(&self) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::Sqlite(format!("sqlite://{}", self.data_dir.join("duet.db").display())))
    }

    /// Generated images, under names the server makes.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite(url) | DatabaseUrl::Postgres(url) => url,
        }
    }

    /// The URL with any password replaced by `***`.
    pub fn masked(&self) -> String {
        masked_url(self.as_str())
    }
}

pub(super) fn parse_database_url(value: &str) -> Result<DatabaseUrl, String> {
    if value.starts_with("sqlite:") {
        Ok(DatabaseUrl::Sqlite(value.to_string()))
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(DatabaseUrl::Postgres(value.to_string()))
    } else {
        Err("DATABASE_URL must start with sqlite: (e.g. sqlite://data/duet.db) or postgres:// \
             (e.g. postgres://duet@localhost/duet)"
            .to_string())
    }
}
