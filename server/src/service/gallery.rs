//! The caller's gallery: list and search, delete, download (one or a zip), and share links that
//! open one picture without logging in until they expire or are revoked.

use super::{
    error::{Result, ServiceError},
    history::{page_offset, page_size},
    images::{parameters, stored},
};
use crate::{
    auth::Caller,
    service::AppState,
    storage::{now_ms, GalleryFilter, ImageRow, ShareRow, StorageError},
};
use app::types::{GalleryImage, GalleryPage, NewShare, ShareInfo};
use std::io::Write;

pub const MAX_ZIP: usize = 100;
pub use app::types::{DEFAULT_SHARE_SECS, SHARE_SECS};
/// Separates the share id from its expiry in a token (neither contains it).
const SEP: char = '~';

/// What `GET /gallery` asks for (its query string).
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GalleryQuery {
    /// Words that must all appear in the prompt (each matches as a prefix).
    pub q: Option<String>,
    /// Only images made for this end user.
    pub user_id: Option<String>,
    /// Made at or after this time (Unix ms).
    pub from: Option<i64>,
    /// Made before this time (Unix ms).
    pub to: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// Images to skip (from `next_offset`).
    pub offset: Option<u32>,
}

pub async fn list(state: &AppState, caller: &Caller, query: GalleryQuery) -> Result<GalleryPage> {
    let user = super::validate::user_id("user_id", query.user_id)?;
    let limit = page_size(query.limit)?;
    let offset = page_offset(query.offset)?;
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from >= to {
            return Err(ServiceError::invalid("to", "must be after `from`"));
        }
    }
    let filter = GalleryFilter {
        user_id: user.as_deref(),
        query: query.q.as_deref().filter(|q| !q.trim().is_empty()),
        from: query.from,
        to: query.to,
        limit: limit.into(),
        offset: offset.into(),
    };
    let rows = state.db.gallery(&caller.account_id, &filter).await?;
    let next_offset = (rows.len() == limit as usize).then_some(offset + limit);
    Ok(GalleryPage { images: rows.iter().map(image).collect(), next_offset })
}

pub async fn get(state: &AppState, caller: &Caller, id: &str) -> Result<GalleryImage> {
    Ok(image(&stored(state, caller, id).await?))
}

/// The picture store's name for one of the caller's images, and a file name for saving it.
pub async fn download(state: &AppState, caller: &Caller, id: &str) -> Result<(String, String)> {
    let row = stored(state, caller, id).await?;
    let name = download_name(&row);
    Ok((row.file_name, name))
}

/// Delete the row (and its share links) first, then the picture: a crash in between leaves an
/// orphan picture, never a row whose picture is gone.
pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> Result<()> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ServiceError::NotFound("image"));
    }
    let row = state.db.delete_image(&caller.account_id, id).await?.ok_or(ServiceError::NotFound("image"))?;
    if let Err(err) = state.pictures.delete(&row.file_name).await {
        tracing::warn!(picture = %row.file_name, error = %err, "could not remove a deleted image's picture");
    }
    tracing::info!(account = %caller.account_id, image = %id, "image deleted");
    Ok(())
}

/// Zips being written at once; more get `Busy` (503). Each holds a blocking thread while its
/// client reads (a slow reader holds it longest), so they are few.
pub const ZIP_CONCURRENCY: usize = 4;

/// Bytes handed to the response at a time; at most `ZIP_QUEUE` of them wait for the client, so a
/// zip of 100 large images costs a few hundred KiB of memory, not their total size.
const ZIP_CHUNK: usize = 64 * 1024;
const ZIP_QUEUE: usize = 4;

/// A zip being written, as the response body reads it.
pub type ZipStream = tokio_stream::wrappers::ReceiverStream<std::io::Result<bytes::Bytes>>;

/// A zip of some of the caller's images (stored, not compressed: PNGs are compressed already),
/// streamed as it is written. Every id is checked and every picture found before the first
/// byte; each is read whole when its turn comes (one picture in memory at a time).
pub async fn zip(state: &AppState, caller: &Caller, ids: Option<Vec<String>>) -> Result<ZipStream> {
    let ids = ids.unwrap_or_default();
    if ids.is_empty() || ids.len() > MAX_ZIP {
        return Err(ServiceError::invalid("ids", format!("must list 1 to {MAX_ZIP} image ids")));
    }
    let ids = distinct(ids);
    let slot = state.zip_slots.clone().try_acquire_owned().map_err(|_| ServiceError::Busy {
        message: format!("{ZIP_CONCURRENCY} zips are being made already; try again in a moment"),
        retry_after_s: 5,
    })?;
    let mut files = Vec::new();
    for id in &ids {
        let row = stored(state, caller, id).await?;
        if !state.pictures.exists(&row.file_name).await? {
            let missing = format!("the picture of image {id} is missing from {}", state.pictures.place());
            return Err(ServiceError::Storage(StorageError::Files(missing)));
        }
        files.push((download_name(&row), row.file_name));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(ZIP_QUEUE);
    let (pictures, runtime) = (state.pictures.clone(), tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut out = ChunkSender { tx: tx.clone(), buf: Vec::with_capacity(ZIP_CHUNK) };
        let read = |name: &str| match runtime.block_on(pictures.read(name)) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{name} is gone"))),
            Err(err) => Err(std::io::Error::other(err.to_string())),
        };
        if let Err(err) = write_zip(&mut out, files, read) {
            // The client left (the channel closed), or a file could not be read: end the body
            // with the error, so a cut download is not mistaken for a whole one.
            if err.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::warn!(error = %err, "zip failed while streaming");
                let _ = tx.blocking_send(Err(err));
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The ids in the order given, each once (a repeated id would repeat a name in the zip).
fn distinct(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter().filter(|id| seen.insert(id.clone())).collect()
}

/// Write `files` (download name, picture name) into a zip, each read by `read` in its turn.
fn write_zip(
    out: &mut ChunkSender,
    files: Vec<(String, String)>,
    read: impl Fn(&str) -> std::io::Result<bytes::Bytes>,
) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new_stream(&mut *out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, picture) in files {
        let bytes = read(&picture)?;
        zip.start_file(name.as_str(), options).map_err(std::io::Error::other)?;
        zip.write_all(&bytes)?;
    }
    zip.finish().map_err(std::io::Error::other)?;
    out.flush()
}

/// A writer whose bytes go to the response body in chunks; a closed body is `BrokenPipe`.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Write for ChunkSender {
    /// Takes at most what fills the chunk, so a whole picture written at once still goes out in
    /// chunks, each waiting for room in the queue.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let taken = data.len().min(ZIP_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..taken]);
        if self.buf.len() >= ZIP_CHUNK {
            self.flush()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(ZIP_CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

pub async fn share(state: &AppState, caller: &Caller, id: &str, request: NewShare) -> Result<ShareInfo> {
    let secs = request.expires_in_secs.unwrap_or(DEFAULT_SHARE_SECS);
    if !SHARE_SECS.contains(&secs) {
        return Err(ServiceError::invalid("expires_in_secs", "must be from 60 (a minute) to 31536000 (a year)"));
    }
    let image = stored(state, caller, id).await?;
    let now = now_ms();
    let row = ShareRow {
        id: uuid::Uuid::new_v4().to_string(),
        image_id: image.id,
        account_id: caller.account_id.clone(),
        created_at: now,
        expires_at: now + secs as i64 * 1000,
        revoked_at: None,
    };
    state.db.insert_share(&row).await?;
    tracing::info!(account = %caller.account_id, image = %id, share = %row.id, "share link made");
    Ok(share_info(state, row))
}

pub async fn shares(state: &AppState, caller: &Caller, id: &str) -> Result<Vec<ShareInfo>> {
    let image = stored(state, caller, id).await?;
    Ok(state.db.shares(&caller.account_id, &image.id).await?.into_iter().map(|r| share_info(state, r)).collect())
}

pub async fn revoke_share(state: &AppState, caller: &Caller, share_id: &str) -> Result<()> {
    if !state.db.revoke_share(&caller.account_id, share_id).await? {
        return Err(ServiceError::NotFound("share link"));
    }
    tracing::info!(account = %caller.account_id, share = %share_id, "share link revoked");
    Ok(())
}

/// The file a share link opens: its signature must hold, and it must be neither expired nor
/// revoked. Every failure is the same "not found".
pub async fn shared_file(state: &AppState, token: &str) -> Result<String> {
    let gone = || ServiceError::NotFound("shared image");
    let payload = state.signing.verify(token).ok_or_else(gone)?;
    let (share_id, expires) = payload.split_once(SEP).ok_or_else(gone)?;
    let expires: i64 = expires.parse().map_err(|_| gone())?;
    if expires <= now_ms() {
        return Err(gone());
    }
    let (share, image) = state.db.live_share(share_id).await?.ok_or_else(gone)?;
    if share.expires_at != expires {
        return Err(gone());
    }
    Ok(image.file_name)
}

fn share_info(state: &AppState, row: ShareRow) -> ShareInfo {
    let token = state.signing.sign(&format!("{}{SEP}{}", row.id, row.expires_at));
    ShareInfo {
        url: format!("/s/{token}"),
        id: row.id,
        image_id: row.image_id,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }
}

fn image(row: &ImageRow) -> GalleryImage {
    GalleryImage {
        id: row.id.clone(),
        user_id: row.user_id.clone(),
        parameters: parameters(row),
        conversation_id: row.conversation_id.clone(),
        message_id: row.message_id.clone(),
        created_at: row.created_at,
        image_url: crate::jobs::image_url(&row.id),
    }
}

/// `duet-<seed>-<first 8 of the id>.png`: the seed first, since it is what remakes the picture.
fn download_name(row: &ImageRow) -> String {
    format!("duet-{}-{}.png", row.seed, row.id.chars().take(8).collect::<String>())
}
