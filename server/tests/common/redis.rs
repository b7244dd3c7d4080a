//! A throwaway redis-server on a free port, stopped when dropped. Fails loudly (never skips)
//! when redis-server is not installed.

use std::process::{Child, Command, Stdio};

pub struct TempRedis {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl TempRedis {
    pub fn start() -> TempRedis {
        let dir = tempfile::Builder::new().prefix("duet-redis-").tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start redis-server ({e}): install it with `apt-get install redis-server` (or run scripts/setup.sh test)")
            });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        TempRedis { child, _dir: dir, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
