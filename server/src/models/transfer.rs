//! One file of a repository, fetched at a pinned commit into the hub's cache layout, under names
//! we make from what we have checked. hf-hub's own download names the blob after the server's
//! `ETag` header and the snapshot folder after its `X-Repo-Commit` header, unchecked: a mirror (or
//! anyone on a plain-http path to it) could write outside `MODELS_DIR`. Here the blob is named by
//! the hash the file list gave (checked to be hex), the snapshot by the commit (checked to be 40
//! hex characters) and the entry by the file's path (checked to be relative and plain), and no
//! header becomes a path. The body is bounded by the listed size, so a mirror cannot fill the disk.
//!
//! Resumable like hf-hub's: ranged requests of `chunk` bytes appended to `blobs/<hash>.sync.part`
//! only when whole, so after a cut the next try starts at the last whole chunk. A lock file
//! keeps two processes (the server and `download-models`) from writing the same blob.

use super::{manifest::BlobName, progress::FileProgress};
use reqwest::{header, StatusCode};
use std::{
    io::{Seek, SeekFrom, Write},
    path::{Component, Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Network(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The server's answer does not fit what its file list promised.
    #[error("{0}")]
    Refused(String),
}

/// A file as the checked listing describes it.
pub struct Wanted<'a> {
    /// The resolve URL at the pinned commit.
    pub url: String,
    /// The path inside the repository, checked with [`safe_relative_path`].
    pub path: &'a str,
    pub size: u64,
    pub blob: &'a BlobName,
}

/// Fetch `wanted` into `repo_dir` (`models--owner--name`): the blob under `blobs/`, and the
/// snapshot entry `snapshots/<commit>/<path>` linking to it. Returns the entry's path.
pub async fn fetch(
    client: &reqwest::Client,
    repo_dir: &Path,
    commit: &str,
    wanted: &Wanted<'_>,
    chunk: usize,
    progress: &FileProgress,
) -> Result<PathBuf, TransferError> {
    let blobs = repo_dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
    let blob = blobs.join(wanted.blob.as_str());
    let _lock = lock(&blob.with_extension("lock")).await?;
    let part_path = blob.with_extension("sync.part");
    let mut part = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part_path)
        .map_err(io(&part_path))?;
    // Only whole chunks are ever appended; anything else (a longer file, hf-hub's own format with
    // its trailer) starts again from zero.
    let had = part.metadata().map_err(io(&part_path))?.len();
    let chunk = chunk.max(1) as u64;
    let mut done = if had <= wanted.size { had - had % chunk } else { 0 };
    part.set_len(done).map_err(io(&part_path))?;
    part.seek(SeekFrom::Start(done)).map_err(io(&part_path))?;
    progress.restart();
    progress.add(done);
    while done < wanted.size {
        let end = (done + chunk).min(wanted.size);
        let bytes = range(client, &wanted.url, done, end, progress).await?;
        part.write_all(&bytes).map_err(io(&part_path))?;
        done = end;
    }
    part.sync_all().map_err(io(&part_path))?;
    drop(part);
    std::fs::rename(&part_path, &blob).map_err(io(&blob))?;
    let entry = repo_dir.join("snapshots").join(commit).join(wanted.path);
    link(&blob, &entry, wanted.path)?;
    Ok(entry)
}

/// Bytes `start..end` of the file; the body may be no longer than asked.
async fn range(
    client: &reqwest::Client,
    url: &str,
    start: u64,
    end: u64,
    progress: &FileProgress,
) -> Result<Vec<u8>, TransferError> {
    let mut response =
        client.get(url).header(header::RANGE, format!("bytes={start}-{}", end - 1)).send().await.map_err(network)?;
    let status = response.status();
    let whole_file = status == StatusCode::OK && start == 0;
    if status != StatusCode::PARTIAL_CONTENT && !whole_file {
        return Err(TransferError::Status(status.as_u16()));
    }
    let want = (end - start) as usize;
    let mut bytes = Vec::with_capacity(want);
    while let Some(piece) = response.chunk().await.map_err(network)? {
        // A server that ignored the range answers the whole file: keep what was asked for.
        let room = want - bytes.len();
        if room == 0 && !whole_file {
            return Err(TransferError::Refused(format!("the server sent more than the {want} bytes asked for")));
        }
        let take = piece.len().min(room);
        bytes.extend_from_slice(&piece[..take]);
        progress.add(take as u64);
        if whole_file && bytes.len() == want {
            break;
        }
    }
    if bytes.len() != want {
        return Err(TransferError::Network(format!("the transfer ended after {} of {want} bytes", bytes.len())));
    }
    Ok(bytes)
}

/// The snapshot entry: a relative link to the blob (as the hub's tools make it), or a copy
/// where links cannot be made.
fn link(blob: &Path, entry: &Path, rel: &str) -> Result<(), TransferError> {
    let folder = entry.parent().expect("an entry has a folder");
    std::fs::create_dir_all(folder).map_err(io(folder))?;
    if std::fs::symlink_metadata(entry).is_ok() {
        std::fs::remove_file(entry).map_err(io(entry))?;
    }
    // snapshots/<commit>/<rel> → ../../(one more per folder in rel)blobs/<hash>
    let depth = 2 + rel.matches('/').count();
    let target = PathBuf::from("../".repeat(depth)).join("blobs").join(blob.file_name().expect("a blob has a name"));
    #[cfg(unix)]
    return std::os::unix::fs::symlink(&target, entry).map_err(io(entry));
    #[cfg(not(unix))]
    return std::fs::copy(blob, entry).map(drop).map_err(io(entry));
}

/// An exclusive lock on `path` (a lock file beside the blob), tried for a few seconds.
async fn lock(path: &Path) -> Result<std::fs::File, TransferError> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        for attempt in 0..10 {
            // SAFETY: flock on a file descriptor we own; released when the file is closed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(file);
            }
            if attempt < 9 {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        Err(TransferError::Refused(format!("{} is being downloaded by another process", path.display())))
    }
    #[cfg(not(unix))]
    Ok(file)
}

/// A path inside a repository as the hub lists it, if it can only name something inside the
/// snapshot folder: relative, made of plain names (no `..`, `.`, root or drive), `/`-separated,
/// with no backslash or control character.
pub fn safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 1024
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TransferError {
    let path = path.to_path_buf();
    move |source| TransferError::Io { path, source }
}

fn network(err: reqwest::Error) -> TransferError {
    match err.status() {
        Some(status) => TransferError::Status(status.as_u16()),
        None => TransferError::Network(super::hub::chain(&err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        for good in ["config.json", "unet/openvino_model.bin", "a/b/c.txt", "with space.json", "..hidden"] {
            assert!(safe_relative_path(good), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../escape",
            "a/../../escape",
            "a/./b",
            "a//b",
            "a/",
            "..",
            ".",
            "C:\\windows",
            "a\\..\\b",
            "a\u{0}b",
            "line\nbreak",
        ] {
            assert!(!safe_relative_path(bad), "{bad:?}");
        }
    }
}
