//! A local HTTP server that answers like the Hugging Face hub for the endpoints hf-hub uses:
//! `GET /api/models/{repo}/revision/{rev}` (file list with sizes and hashes, `?blobs=true`) and
//! `GET /{repo}/resolve/{rev}/{file}` (ranged, with `X-Repo-Commit` and `ETag`; LFS files
//! redirect to a "CDN" on another port, as the hub's do). It serves real files (the fixture
//! models), and can be told to fail: cut a transfer, corrupt one, refuse without a token.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use sha1::Digest as _;
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

pub struct MockRepo {
    pub id: String,
    pub commit: String,
    /// Path inside the repo, content.
    pub files: Vec<(String, Vec<u8>)>,
    /// Gated: every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Listed by the API but answered 404 by `resolve`.
    pub unavailable: Vec<String>,
}

impl MockRepo {
    /// A repository holding the files of a fixture folder.
    pub fn from_dir(id: &str, commit: &str, dir: &std::path::Path) -> MockRepo {
        let mut files = Vec::new();
        collect(dir, dir, &mut files);
        files.sort();
        MockRepo { id: id.into(), commit: commit.into(), files, token: None, unavailable: Vec::new() }
    }

    pub fn file(&self, path: &str) -> &[u8] {
        &self.files.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("no {path} in {}", self.id)).1
    }
}

fn collect(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read(&path).unwrap()));
        }
    }
}

/// LFS-tracked, as `.gitattributes` says for weights on the hub.
fn is_lfs(path: &str) -> bool {
    path.ends_with(".bin") || path.ends_with(".safetensors")
}

/// One request the hub saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

impl Seen {
    /// The first byte a ranged content request asked for (`bytes=START-END`).
    pub fn range_start(&self) -> Option<u64> {
        self.range.as_deref()?.strip_prefix("bytes=")?.split('-').next()?.parse().ok()
    }
}

#[derive(Default)]
pub struct Faults {
    /// The transfer of this file (by path in the repo) that covers this byte offset stops
    /// there, once.
    pub cut: Option<(String, usize)>,
    /// The next transfer of these files has its bytes flipped.
    pub corrupt: HashSet<String>,
    /// A pause before every 16 KiB sent, so a download can be watched.
    pub pace: Option<Duration>,
    /// A hostile mirror: these names are listed as files too (with the content of the first
    /// real file), e.g. `../../outside.txt` or an absolute path.
    pub extra_names: Vec<String>,
    /// A hostile mirror: the listing's commit says this instead of the repository's.
    pub listed_commit: Option<String>,
    /// A hostile mirror: `ETag`, `X-Linked-Etag` and `X-Repo-Commit` say this on every file.
    pub header_path: Option<String>,
}

pub struct Hub {
    repos: Vec<MockRepo>,
    cdn: Mutex<String>,
    pub seen: Mutex<Vec<Seen>>,
    pub faults: Mutex<Faults>,
}

/// Download options against this hub: `chunk_bytes` small, so the fixture files take several
/// ranged requests and can resume; one try per file.
pub fn options(hub: &MockHub, models_dir: &std::path::Path, chunk_bytes: usize) -> server::models::hub::HubOptions {
    server::models::hub::HubOptions {
        endpoint: hub.url.clone(),
        token: None,
        offline: false,
        models_dir: models_dir.to_path_buf(),
        chunk_bytes,
        attempts: 1,
        safety_checker: false,
    }
}

pub struct MockHub {
    pub url: String,
    pub hub: Arc<Hub>,
}

impl MockHub {
    pub async fn start(repos: Vec<MockRepo>) -> MockHub {
        let hub = Arc::new(Hub { repos, cdn: Mutex::default(), seen: Mutex::default(), faults: Mutex::default() });
        let router = Router::new()
            .route("/api/models/{owner}/{name}/revision/{rev}", get(info))
            .route("/{owner}/{name}/resolve/{rev}/{*path}", get(resolve))
            .route("/cdn/{sha}", get(cdn))
            .with_state(hub.clone());
        let mut urls = Vec::new();
        // Two listeners: the hub and its "CDN". hf-hub follows only same-origin redirects while
        // reading a file's metadata, as huggingface_hub does, so the CDN must be another origin.
        for _ in 0..2 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!("http://{}", listener.local_addr().unwrap()));
            let router = router.clone();
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        *hub.cdn.lock().unwrap() = urls[1].clone();
        MockHub { url: urls[0].clone(), hub }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.hub.seen.lock().unwrap().clone()
    }

    /// Requests for one file's content (metadata probes of one byte left out).
    pub fn transfers(&self, repo: &MockRepo, path: &str) -> Vec<Seen> {
        let sha = sha256_hex(repo.file(path));
        self.requests()
            .into_iter()
            .filter(|s| s.path.ends_with(&format!("/{path}")) || s.path.ends_with(&sha))
            .filter(|s| s.range.as_deref() != Some("bytes=0-0"))
            .collect()
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.hub.faults.lock().unwrap()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

pub fn git_blob_id(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Hub {
    fn record(&self, path: String, headers: &HeaderMap) {
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(String::from);
        self.seen.lock().unwrap().push(Seen { path, range });
    }

    /// The repository, after the checks the hub makes: it exists, the caller may see it, and
    /// the revision is known.
    fn repo(&self, id: &str, rev: &str, headers: &HeaderMap) -> Result<&MockRepo, Refusal> {
        let repo = self.repos.iter().find(|r| r.id == id).ok_or(Refusal(StatusCode::NOT_FOUND, "RepoNotFound"))?;
        if let Some(token) = &repo.token {
            let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            if given != Some(&format!("Bearer {token}")) {
                return Err(Refusal(StatusCode::UNAUTHORIZED, "GatedRepo"));
            }
        }
        if rev != "main" && rev != repo.commit {
            return Err(Refusal(StatusCode::NOT_FOUND, "RevisionNotFound"));
        }
        Ok(repo)
    }
}

/// An error answer with the hub's `X-Error-Code`.
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, [("x-error-code", self.1)], Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

async fn info(
    State(hub): State<Arc<Hub>>,
    Path((owner, name, rev)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    hub.record(format!("/api/models/{owner}/{name}/revision/{rev}"), &headers);
    let repo = match hub.repo(&format!("{owner}/{name}"), &rev, &headers) {
        Ok(repo) => repo,
        Err(refusal) => return refusal.into_response(),
    };
    let (extra, listed_commit) = {
        let faults = hub.faults.lock().unwrap();
        (faults.extra_names.clone(), faults.listed_commit.clone())
    };
    let first = &repo.files[0].1;
    let listed = repo.files.iter().map(|(p, b)| (p.clone(), b)).chain(extra.into_iter().map(|name| (name, first)));
    let siblings: Vec<serde_json::Value> = listed
        .map(|(path, bytes)| {
            let path = path.as_str();
            if is_lfs(path) {
                serde_json::json!({
                    "rfilename": path, "size": bytes.len(), "blobId": git_blob_id(b"lfs pointer"),
                    "lfs": {"sha256": sha256_hex(bytes), "size": bytes.len(), "pointerSize": 134}
                })
            } else {
                serde_json::json!({"rfilename": path, "size": bytes.len(), "blobId": git_blob_id(bytes)})
            }
        })
        .collect();
    let sha = listed_commit.unwrap_or_else(|| repo.commit.clone());
    Json(serde_json::json!({"id": repo.id, "sha": sha, "siblings": siblings})).into_response()
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    Path((owner, name, rev, path)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    hub.record(format!("/{owner}/{name}/resolve/{rev}/{path}"), &headers);
    let repo = match hub.repo(&format!("{owner}/{name}"), &rev, &headers) {
        Ok(repo) => repo,
        Err(refusal) => return refusal.into_response(),
    };
    let Some((_, bytes)) = repo.files.iter().find(|(p, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, [("x-error-code", "EntryNotFound")]).into_response();
    };
    if repo.unavailable.contains(&path) {
        return (StatusCode::NOT_FOUND, [("x-error-code", "EntryNotFound")]).into_response();
    }
    let header_path = hub.faults.lock().unwrap().header_path.clone();
    if let Some(evil) = header_path {
        let mut response = serve(&hub, &path, bytes, &headers);
        let h = response.headers_mut();
        for name in ["x-repo-commit", "x-linked-etag", "etag"] {
            h.insert(name, evil.parse().unwrap());
        }
        return response;
    }
    if is_lfs(&path) {
        let sha = sha256_hex(bytes);
        let location = format!("{}/cdn/{sha}", hub.cdn.lock().unwrap());
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .header("x-repo-commit", &repo.commit)
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", bytes.len())
            .header(header::ETAG, format!("\"{}\"", git_blob_id(b"lfs pointer")))
            .body(Body::empty())
            .unwrap();
    }
    let mut response = serve(&hub, &path, bytes, &headers);
    let h = response.headers_mut();
    h.insert("x-repo-commit", repo.commit.parse().unwrap());
    h.insert(header::ETAG, format!("\"{}\"", git_blob_id(bytes)).parse().unwrap());
    response
}

async fn cdn(State(hub): State<Arc<Hub>>, Path(sha): Path<String>, headers: HeaderMap) -> Response {
    hub.record(format!("/cdn/{sha}"), &headers);
    let found =
        hub.repos.iter().flat_map(|r| r.files.iter()).find(|(_, bytes)| sha256_hex(bytes) == sha).map(|(p, b)| (p, b));
    match found {
        Some((path, bytes)) => serve(&hub, path, bytes, &headers),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The requested byte range of a file, through whatever fault is set for it.
fn serve(hub: &Hub, path: &str, bytes: &[u8], headers: &HeaderMap) -> Response {
    let len = bytes.len();
    let (start, end) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().unwrap_or(len - 1))))
        .map_or((0, len - 1), |(a, b)| (a, b.min(len - 1)));
    let mut body = bytes[start..=end].to_vec();
    let (mut cut_at, mut pace) = (None, None);
    if body.len() > 1 {
        let mut faults = hub.faults.lock().unwrap();
        if faults.corrupt.remove(path) {
            body.iter_mut().for_each(|b| *b ^= 0xff);
        }
        if faults.cut.as_ref().is_some_and(|(p, at)| p == path && (start..=end).contains(at)) {
            cut_at = faults.cut.take().map(|(_, at)| at - start);
        }
        pace = faults.pace;
    }
    let chunks: Vec<Vec<u8>> = body.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    let stream = futures::stream::unfold((chunks.into_iter(), 0usize), move |(mut rest, sent)| async move {
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
        if cut_at.is_some_and(|n| sent >= n) {
            // Dropping the connection mid-body, as a network failure would.
            return Some((Err(std::io::Error::other("connection cut")), (rest, sent)));
        }
        let mut chunk = rest.next()?;
        if let Some(n) = cut_at {
            chunk.truncate(n.saturating_sub(sent).max(1));
        }
        let sent = sent + chunk.len();
        Some((Ok::<_, std::io::Error>(chunk), (rest, sent)))
    });
    Response::builder()
        .status(if headers.contains_key(header::RANGE) { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
        .header(header::CONTENT_LENGTH, end + 1 - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .body(Body::from_stream(stream))
        .unwrap()
}
