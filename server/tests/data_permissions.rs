//! The data folder holds live session ids, password hashes and everyone's pictures: the real
//! server process, started with a permissive umask on a data folder anyone could read, leaves
//! the folder 0700 and every file it writes 0600.

mod common;

use common::process::{free_port, server_command, ServerProcess};
use serde_json::json;
use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::Path,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_folder_and_its_files_are_private_whatever_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let mut command = server_command(port);
    command.args(["--data-dir", data.to_str().unwrap()]).args([
        "--use-mocks",
        "true",
        "--auth-required",
        "false",
        "--mock-image-step-ms",
        "1",
    ]);
    // A permissive umask, as a user's shell often has.
    // SAFETY: umask is async-signal-safe, and nothing else runs in the child before exec.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let server = ServerProcess::start(command, port).await;
    let image = json!({"prompt": "a private fox", "width": 256, "height": 256, "num_inference_steps": 1});
    server.json("POST", "/image?wait=true", Some(image)).await;
    server.json("POST", "/chat", Some(json!({"user_id": "me", "message": "hello"}))).await;
    server.kill();

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
