//! The real server binary as a child process: started on a free port, ready once `/health`
//! answers, spoken to over HTTP with reqwest, killed with SIGKILL when asked or when dropped.

use serde_json::Value;
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The server binary to listen on `port`, run from the repository root, quiet, with no
/// `RUST_LOG` of the developer's. Callers add their arguments and environment.
pub fn server_command(port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .current_dir(super::repo_root())
        .env_remove("RUST_LOG")
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("DUET_TEST_SERVER_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() });
    if let Some(filter) = std::env::var_os("DUET_TEST_SERVER_LOGS") {
        command.env("RUST_LOG", filter);
    }
    command
}

pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    http: reqwest::Client,
}

impl ServerProcess {
    /// Spawn `command` (listening on `port`) and wait until `/health` answers 200, at most 60 s.
    pub async fn start(mut command: Command, port: u16) -> ServerProcess {
        let child = command.spawn().expect("start the server binary");
        let mut server = ServerProcess { child, port, http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(res) = server.send("GET", "/health", None).await {
                if res.status() == 200 {
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited ({status}) before answering /health");
            }
            assert!(Instant::now() < deadline, "the server did not answer /health within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A request with an optional JSON body; the response as it comes (for streams too).
    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> reqwest::Result<reqwest::Response> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        request.send().await
    }

    /// `(status, body)` of a request.
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
        let res = self.send(method, path, body).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        (status, res.bytes().await.expect("the body").to_vec())
    }

    /// The JSON answer of a request that must succeed.
    pub async fn json(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, bytes) = self.request(method, path, body.as_ref()).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Poll `GET /jobs/{id}` until `done(job)` holds, at most `secs`; the job then.
    pub async fn until_job(&self, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let job = self.json("GET", &format!("/jobs/{id}"), None).await;
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} within {secs} s: {job}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Until every model of the server is loaded, at most `secs`.
    pub async fn until_models_ready(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let health = self.json("GET", "/health", None).await;
            if health["models"].as_array().unwrap().iter().all(|m| m["state"] == "ready") {
                return;
            }
            assert!(Instant::now() < deadline, "the models did not load: {health}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
