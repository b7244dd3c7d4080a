//! Kill -9 the real server process in the middle of a streamed reply, start it again on the same
//! data, and find every acknowledged message and finished image intact: on SQLite and Postgres.

mod common;

use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(data: &std::path::Path, database_url: &str) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .current_dir(common::repo_root())
            .env_remove("RUST_LOG")
            .args(["--addr", &format!("127.0.0.1:{port}"), "--data-dir", data.to_str().unwrap()])
            .args(["--database-url", database_url, "--use-mocks", "true", "--auth-required", "false"])
            .args(["--mock-token-ms", "40", "--mock-image-step-ms", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server binary");
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.request("GET", "/health", None).is_err() {
            assert!(Instant::now() < deadline, "the server did not answer /health within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn connect(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<TcpStream> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        Ok(stream)
    }

    /// `(status, body)` of a plain request.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Vec<u8>)> {
        let mut raw = Vec::new();
        self.connect(method, path, body)?.read_to_end(&mut raw)?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
        let mut body = raw[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = unchunk(&body);
        }
        Ok((status, body))
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, bytes) = self.request(method, path, body.as_ref()).expect("request");
        assert!((200..300).contains(&status), "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no shutdown code runs
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

async fn database_url(backend: common::Backend, data: &std::path::Path) -> String {
    match backend {
        common::Backend::Sqlite => format!("sqlite://{}/duet.db", data.display()),
        common::Backend::Postgres => common::postgres::fresh_database().await,
    }
}

on_both_databases! {
    async fn a_killed_server_keeps_every_acknowledged_message_and_image(backend) {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(backend, dir.path()).await;
        let server = Server::start(dir.path(), &url);

        // Acknowledged before the crash: one finished image, one whole turn.
        let image = server.json("POST", "/image?wait=true", Some(json!({"prompt": "a lighthouse", "width": 256, "height": 256})));
        assert_eq!(image["status"], "done");
        let image_id = image["job_id"].as_str().unwrap().to_string();
        let (_, png_before) = server.request("GET", &format!("/images/{image_id}.png"), None).unwrap();
        let first = server.json("POST", "/chat", Some(json!({"user_id": "u1", "message": "first question"})));
        let conversation = first["conversation_id"].as_str().unwrap().to_string();

        // A streamed reply, killed once a few tokens have gone out.
        let ask = json!({"user_id": "u1", "message": "second question, please answer slowly", "conversation_id": conversation, "stream": true});
        let stream = server.connect("POST", "/chat", Some(&ask)).unwrap();
        let mut lines = BufReader::new(stream).lines();
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            if line.starts_with("event: reasoning") {
                seen += 1;
                if seen == 3 {
                    break;
                }
            }
        }
        assert_eq!(seen, 3, "the reply streamed before the kill");
        server.kill();

        let again = Server::start(dir.path(), &url);
        let detail = again.json("GET", &format!("/conversations/{conversation}"), None);
        let said: Vec<(String, String)> = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(said[..3], [
            ("user".to_string(), "first question".to_string()),
            ("assistant".to_string(), "You said: first question".to_string()),
            ("user".to_string(), "second question, please answer slowly".to_string()),
        ], "{detail}");
        let (status, png_after) = again.request("GET", &format!("/images/{image_id}.png"), None).unwrap();
        assert_eq!((status, png_after == png_before), (200, true), "the finished image is intact");
        let gallery = again.json("GET", "/gallery", None);
        assert_eq!(gallery["images"][0]["id"], image_id.as_str());
        // And the conversation goes on.
        let next = again.json("POST", "/chat", Some(json!({"user_id": "u1", "message": "third", "conversation_id": conversation})));
        assert_eq!(next["reply"], "You said: third");
    }
}
