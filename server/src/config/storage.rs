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

    /// Where pictures are kept: a folder (default `DATA_DIR/images`), or an S3-compatible
    /// bucket, `s3://BUCKET[/PREFIX]`, which every process sharing the database must use.
    #[arg(long, env = "IMAGE_STORE", value_parser = parse_image_store, global = true)]
    pub image_store: Option<ImageStore>,

    /// The S3 server's URL for a non-AWS store (`http://` allowed), e.g. `http://minio:9000`;
    /// unset: AWS (or `AWS_ENDPOINT`).
    #[arg(long, env = "S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,

    /// The bucket's region (or `AWS_REGION`; many non-AWS servers accept any).
    #[arg(long, env = "S3_REGION", global = true)]
    pub s3_region: Option<String>,

    /// Access key id (or `AWS_ACCESS_KEY_ID`; unset with neither: AWS's other credential sources).
    #[arg(long, env = "S3_ACCESS_KEY_ID", global = true)]
    pub s3_access_key_id: Option<String>,

    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true, global = true)]
    pub s3_secret_access_key: Option<Secret>,

    /// Address the bucket as a host name (`BUCKET.HOST`) instead of a path (`HOST/BUCKET`, the
    /// default, which MinIO, SeaweedFS, Ceph and the like expect).
    #[arg(long, env = "S3_VIRTUAL_HOSTED", default_value_t = false, global = true)]
    pub s3_virtual_hosted: bool,

    /// How often this process writes that it is alive to the database; a process silent for
    /// three of these counts as gone, and its replies cut off are marked interrupted (Postgres).
    #[arg(long = "process-heartbeat-ms", env = "PROCESS_HEARTBEAT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..), global = true)]
    pub heartbeat_ms: u64,
}

/// Where pictures are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageStore {
    Folder(PathBuf),
    S3 { bucket: String, prefix: String },
}

pub(super) fn parse_image_store(value: &str) -> Result<ImageStore, String> {
    let Some(rest) = value.strip_prefix("s3://") else {
        if value.contains("://") {
            return Err(format!("IMAGE_STORE must be a folder or s3://BUCKET[/PREFIX], got {value}"));
        }
        return Ok(ImageStore::Folder(PathBuf::from(value)));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("IMAGE_STORE s3://BUCKET[/PREFIX] needs a bucket name".into());
    }
    Ok(ImageStore::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
}

impl StorageConfig {
    pub fn database_url(&self) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::Sqlite(format!("sqlite://{}", self.data_dir.join("duet.db").display())))
    }

    /// Where generated images are kept, under names the server makes.
    pub fn image_store(&self) -> ImageStore {
        self.image_store.clone().unwrap_or_else(|| ImageStore::Folder(self.data_dir.join("images")))
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
