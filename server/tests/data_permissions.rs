//! The data folder holds live session ids, password hashes and everyone's pictures: the real
//! server process, started with a permissive umask on a data folder anyone could read, leaves
//! the folder 0700 and every file it writes 0600.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
    Ok((status, raw))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[test]
fn the_data_folder_and_its_files_are_private_whatever_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--data-dir", data.to_str().unwrap()])
        .args(["--use-mocks", "true", "--auth-required", "false", "--mock-image-step-ms", "1"])
        .current_dir(common::repo_root())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server binary");
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(port, "GET", "/health", "").is_err() {
        assert!(Instant::now() < deadline, "the server did not answer within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let image = r#"{"prompt": "a private fox", "width": 256, "height": 256, "num_inference_steps": 1}"#;
    let (status, raw) = request(port, "POST", "/image?wait=true", image).unwrap();
    assert_eq!(status, 200, "{raw}");
    let (status, raw) = request(port, "POST", "/chat", r#"{"user_id": "me", "message": "hello"}"#).unwrap();
    assert_eq!(status, 200, "{raw}");
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(mode(&data), 0o700, "DATA_DIR");
    let mut files = 0;
    for entry in walk(&data) {
        let m = mode(&entry);
        if entry.is_dir() {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", entry.display());
        } else {
            assert_eq!(m, 0o600, "{} is {m:o}", entry.display());
            files += 1;
        }
    }
    for name in ["duet.db", "secret.key"] {
        assert!(data.join(name).is_file(), "{name} was written");
    }
    assert!(std::fs::read_dir(data.join("images")).unwrap().count() >= 1, "the picture was written");
    assert!(files >= 3, "{files} files checked");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
