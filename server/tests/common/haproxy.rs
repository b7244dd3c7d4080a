//! HAProxy with the committed configuration (deploy/haproxy.cfg) in front of two web processes,
//! on a free port, stopped when dropped. Fails loudly when haproxy is not installed.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct TempHaproxy {
    child: Child,
    pub port: u16,
}

impl TempHaproxy {
    pub fn start(web1: u16, web2: u16) -> TempHaproxy {
        let port = super::process::free_port();
        let exe = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("haproxy");
        let child = Command::new(exe)
            .args(["-W", "-db", "-f"])
            .arg(super::repo_root().join("deploy/haproxy.cfg"))
            .env("DUET_LISTEN", format!("127.0.0.1:{port}"))
            .env("DUET_WEB1", format!("127.0.0.1:{web1}"))
            .env("DUET_WEB2", format!("127.0.0.1:{web2}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start haproxy ({e}): install it with `apt-get install haproxy` (or run scripts/setup.sh test)")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        TempHaproxy { child, port }
    }
}

impl Drop for TempHaproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
