//! Where pictures are kept, through `object_store`: a local folder (the default, `DATA_DIR/images`,
//! the layout older versions wrote) or an S3-compatible bucket, so every process sharing the
//! database serves every picture. Objects are named `{id}.png`; writes are whole (a folder
//! writes a temporary file and renames it, S3 puts the object at once), so a reader never sees
//! half a picture.

use super::StorageError;
use crate::config::{ImageStore, StorageConfig};
use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use object_store::{aws::AmazonS3Builder, local::LocalFileSystem, path::Path, prefix::PrefixStore, ObjectStore};
use std::sync::Arc;

#[derive(Clone)]
pub struct Pictures {
    store: Arc<dyn ObjectStore>,
    /// Where, for logs and errors: the folder or `s3://bucket/prefix`.
    place: String,
}

/// A picture being read: its size, and its bytes as they come.
pub struct PictureStream {
    pub size: u64,
    pub bytes: BoxStream<'static, Result<Bytes, StorageError>>,
}

fn files_error(place: &str, name: &str, err: object_store::Error) -> StorageError {
    StorageError::Files(format!("{place}/{name}: {err}"))
}

impl Pictures {
    /// Open the configured store (a folder is made if missing).
    pub fn open(config: &StorageConfig) -> Result<Pictures, String> {
        match config.image_store() {
            ImageStore::Folder(dir) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create the images folder {}: {e}", dir.display()))?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| format!("cannot use the images folder {}: {e}", dir.display()))?;
                Ok(Pictures { store: Arc::new(store), place: dir.display().to_string() })
            }
            ImageStore::S3 { bucket, prefix } => {
                // AWS_* variables (and AWS's other credential sources) first; Duet's own over them.
                let mut s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_virtual_hosted_style_request(config.s3_virtual_hosted);
                if let Some(endpoint) = &config.s3_endpoint {
                    s3 = s3.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = &config.s3_region {
                    s3 = s3.with_region(region);
                }
                if let Some(key) = &config.s3_access_key_id {
                    s3 = s3.with_access_key_id(key);
                }
                if let Some(secret) = &config.s3_secret_access_key {
                    s3 = s3.with_secret_access_key(secret.expose());
                }
                let s3 = s3.build().map_err(|e| format!("IMAGE_STORE s3://{bucket}: {e}"))?;
                let place = format!("s3://{bucket}/{prefix}");
                let store: Arc<dyn ObjectStore> = match prefix.as_str() {
                    "" => Arc::new(s3),
                    prefix => Arc::new(PrefixStore::new(s3, prefix)),
                };
                Ok(Pictures { store, place })
            }
        }
    }

    pub fn place(&self) -> &str {
        &self.place
    }

    /// Store a picture under `name`, whole.
    pub async fn put(&self, name: &str, png: Vec<u8>) -> Result<(), StorageError> {
        self.store.put(&Path::from(name), png.into()).await.map_err(|e| files_error(&self.place, name, e))?;
        Ok(())
    }

    /// A picture's bytes as they come; `None` when there is none under `name`.
    pub async fn stream(&self, name: &str) -> Result<Option<PictureStream>, StorageError> {
        let found = match self.store.get(&Path::from(name)).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(files_error(&self.place, name, err)),
        };
        let size = found.meta.size;
        let (place, name) = (self.place.clone(), name.to_string());
        let bytes = found.into_stream().map(move |chunk| chunk.map_err(|e| files_error(&place, &name, e))).boxed();
        Ok(Some(PictureStream { size, bytes }))
    }

    /// A picture's bytes, all of them; `None` when there is none under `name`.
    pub async fn read(&self, name: &str) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(&Path::from(name)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(|e| files_error(&self.place, name, e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(files_error(&self.place, name, err)),
        }
    }

    /// Whether there is a picture under `name`.
    pub async fn exists(&self, name: &str) -> Result<bool, StorageError> {
        match self.store.head(&Path::from(name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(files_error(&self.place, name, err)),
        }
    }

    /// Remove a picture; one already gone is fine.
    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        match self.store.delete(&Path::from(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(files_error(&self.place, name, err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_folder_store_keeps_pictures_where_older_versions_did() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            data_dir: dir.path().to_path_buf(),
            database_url: None,
            redis_url: None,
            image_store: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_virtual_hosted: false,
            heartbeat_ms: 10_000,
        };
        let pictures = Pictures::open(&config).unwrap();
        // A file an older version wrote is read as it is.
        std::fs::write(dir.path().join("images/old.png"), b"old").unwrap();
        assert_eq!(pictures.read("old.png").await.unwrap().as_deref(), Some(&b"old"[..]));
        pictures.put("new.png", b"new".to_vec()).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("images/new.png")).unwrap(), b"new");
        let stream = pictures.stream("new.png").await.unwrap().unwrap();
        assert_eq!(stream.size, 3);
        assert!(pictures.exists("new.png").await.unwrap());
        pictures.delete("new.png").await.unwrap();
        pictures.delete("new.png").await.unwrap();
        assert!(!pictures.exists("new.png").await.unwrap());
        assert!(pictures.stream("new.png").await.unwrap().is_none());
        assert!(pictures.read("missing.png").await.unwrap().is_none());
    }
}
