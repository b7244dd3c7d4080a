//! What a downloaded snapshot holds: every file's size and sha256, written when a download
//! completes, so `verify-models` can check a model offline, and start-up can tell a partial
//! download from a complete one without hashing.
//!
//! Manifests live in `MODELS_DIR/.duet/`, one per repository and commit; the cache folders
//! themselves keep exactly the Hugging Face layout, so other tools read them unchanged.

use serde::{Deserialize, Serialize};
use sha1::Digest as _;
use std::{
    io::Read,
    path::{Path, PathBuf},
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `Owner/Name` on the hub.
    pub repo: String,
    /// The revision asked for (`main`, a tag, or a commit).
    pub revision: String,
    /// The commit it resolved to: what was downloaded.
    pub commit: String,
    /// RFC 3339, UTC.
    pub downloaded_at: String,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the snapshot, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Computed after the download, and equal to the hub's LFS hash when it reported one.
    pub sha256: String,
}

/// What is wrong with one file on disk.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    Missing,
    /// A partial or overwritten file.
    Size {
        expected: u64,
        actual: u64,
    },
    Hash {
        expected: String,
        actual: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => write!(f, "missing"),
            Problem::Size { expected, actual } => write!(f, "{actual} bytes, expected {expected}"),
            Problem::Hash { expected, actual } => write!(f, "sha256 {actual}, expected {expected}"),
        }
    }
}

impl Manifest {
    pub fn path(models_dir: &Path, repo: &str, commit: &str) -> PathBuf {
        models_dir.join(".duet").join(format!("{}@{commit}.json", super::cache_folder_name(repo)))
    }

    pub fn load(models_dir: &Path, repo: &str, commit: &str) -> Option<Manifest> {
        let text = std::fs::read_to_string(Self::path(models_dir, repo, commit)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written to a temporary name and renamed, so a crash never leaves half a manifest.
    pub fn save(&self, models_dir: &Path) -> std::io::Result<PathBuf> {
        let path = Self::path(models_dir, &self.repo, &self.commit);
        std::fs::create_dir_all(path.parent().expect("manifest has a folder"))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Files whose size differs from the manifest (cheap: no hashing), for start-up.
    pub fn size_problems(&self, snapshot: &Path) -> Vec<(String, Problem)> {
        self.files.iter().filter_map(|f| check_size(snapshot, f).err().map(|p| (f.path.clone(), p))).collect()
    }
}

fn check_size(snapshot: &Path, entry: &FileEntry) -> Result<(), Problem> {
    // `metadata` follows the snapshot's symlink to the blob; a dangling link is a missing file.
    let actual = std::fs::metadata(snapshot.join(&entry.path)).map_err(|_| Problem::Missing)?.len();
    if actual == entry.size {
        Ok(())
    } else {
        Err(Problem::Size { expected: entry.size, actual })
    }
}

/// Size, then sha256: the full check `verify-models` runs. `on_bytes` sees hashing progress.
pub fn check_file(snapshot: &Path, entry: &FileEntry, on_bytes: &mut dyn FnMut(u64)) -> Result<(), Problem> {
    check_size(snapshot, entry)?;
    let expected = BlobName::Sha256(entry.sha256.clone());
    check_hash(&snapshot.join(&entry.path), Some(entry.size), Some(&expected), on_bytes).map(|_| ())
}

/// The one content check, for a download as it lands and for `verify-models`: the size when one
/// is expected, then the hash (sha256, or the git blob id the hub gives small files). Returns the
/// file's size and sha256, for the manifest.
pub fn check_hash(
    path: &Path,
    size: Option<u64>,
    expected: Option<&BlobName>,
    on_bytes: &mut dyn FnMut(u64),
) -> Result<(u64, String), Problem> {
    let actual_size = std::fs::metadata(path).map_err(|_| Problem::Missing)?.len();
    if let Some(expected) = size.filter(|s| *s != actual_size) {
        return Err(Problem::Size { expected, actual: actual_size });
    }
    let sha256 = sha256_file(path, on_bytes).map_err(|_| Problem::Missing)?;
    match expected {
        Some(BlobName::Sha256(expected)) if *expected != sha256 => {
            return Err(Problem::Hash { expected: expected.clone(), actual: sha256 });
        }
        Some(BlobName::GitSha1(expected)) => {
            let actual = git_blob_sha1(path).map_err(|_| Problem::Missing)?;
            if actual != *expected {
                return Err(Problem::Hash { expected: expected.clone(), actual });
            }
        }
        _ => {}
    }
    Ok((actual_size, sha256))
}

/// The hash a cache blob's name promises. The hub names blobs by their ETag: the sha256 of LFS
/// files (64 hex digits) or the git blob id of small ones (40), so a cache filled by any tool can
/// be checked without a manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum BlobName {
    Sha256(String),
    GitSha1(String),
}

impl BlobName {
    /// The blob's file name under `blobs/` (hex digits only).
    pub fn as_str(&self) -> &str {
        match self {
            BlobName::Sha256(hex) | BlobName::GitSha1(hex) => hex,
        }
    }

    pub fn parse(name: &str) -> Option<BlobName> {
        let hex = name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match name.len() {
            64 if hex => Some(BlobName::Sha256(name.to_string())),
            40 if hex => Some(BlobName::GitSha1(name.to_string())),
            _ => None,
        }
    }

    /// The blob a snapshot entry links to, when it is a symlink into `blobs/`.
    pub fn of_link(path: &Path) -> Option<BlobName> {
        let target = std::fs::read_link(path).ok()?;
        BlobName::parse(target.file_name()?.to_str()?)
    }
}

pub fn sha256_file(path: &Path, on_bytes: &mut dyn FnMut(u64)) -> std::io::Result<String> {
    let mut hasher = sha2::Sha256::new();
    read_chunks(path, &mut |chunk| {
        hasher.update(chunk);
        on_bytes(chunk.len() as u64);
    })?;
    Ok(hex(&hasher.finalize()))
}

/// Git's object id of a file: sha1 over `blob <len>\0` and the content.
pub fn git_blob_sha1(path: &Path) -> std::io::Result<String> {
    let len = std::fs::metadata(path)?.len();
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    read_chunks(path, &mut |chunk| hasher.update(chunk))?;
    Ok(hex(&hasher.finalize()))
}

fn read_chunks(path: &Path, f: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        f(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_the_known_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        let mut seen = 0;
        let sha = sha256_file(&path, &mut |n| seen += n).unwrap();
        assert_eq!(sha, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(seen, 6);
        // `git hash-object` of the same content.
        assert_eq!(git_blob_sha1(&path).unwrap(), "ce013625030ba8dba906f756967f9e9ca394464a");
    }

    #[test]
    fn blob_names_say_which_hash_to_check() {
        let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        assert_eq!(BlobName::parse(sha), Some(BlobName::Sha256(sha.into())));
        let git = "ce013625030ba8dba906f756967f9e9ca394464a";
        assert_eq!(BlobName::parse(git), Some(BlobName::GitSha1(git.into())));
        assert_eq!(BlobName::parse("main"), None);
        assert_eq!(BlobName::parse(&sha.to_uppercase()), None);
    }

    #[test]
    fn checks_find_missing_partial_and_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"hello\n").unwrap();
        let entry = |path: &str, size, sha256: &str| FileEntry { path: path.into(), size, sha256: sha256.into() };
        let good = entry("a.bin", 6, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(check_file(dir.path(), &good, &mut |_| {}), Ok(()));
        assert_eq!(check_file(dir.path(), &entry("b.bin", 6, ""), &mut |_| {}), Err(Problem::Missing));
        assert_eq!(
            check_file(dir.path(), &entry("a.bin", 9, ""), &mut |_| {}),
            Err(Problem::Size { expected: 9, actual: 6 })
        );
        let changed = entry("a.bin", 6, "00");
        assert!(matches!(check_file(dir.path(), &changed, &mut |_| {}), Err(Problem::Hash { .. })));

        let manifest = Manifest {
            repo: "o/n".into(),
            revision: "main".into(),
            commit: "c".into(),
            downloaded_at: "2026-11-23T00:00:00Z".into(),
            files: vec![good, entry("b.bin", 1, "")],
        };
        assert_eq!(manifest.size_problems(dir.path()), vec![("b.bin".to_string(), Problem::Missing)]);
        manifest.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path(), "o/n", "c"), Some(manifest));
        assert!(dir.path().join(".duet/models--o--n@c.json").is_file());
    }
}
