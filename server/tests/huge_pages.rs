//! The server restarts itself once with glibc's huge-page tunable (server/src/huge_pages.rs):
//! the real binary; its environment and command line read back from /proc, and what it says of
//! itself in the start-up log. (/proc/PID/environ is the environment the program was started
//! with; glibc cuts a GLIBC_TUNABLES of several tunables there after reading it, so with several
//! the log, which reads the process's own environment, is the witness.)

mod common;

use common::process::{free_port, server_command, ServerProcess};

struct Server {
    process: ServerProcess,
    data: tempfile::TempDir,
}

impl Server {
    /// What the start-up log says of huge pages (`on (…)` or `off (…)`).
    fn huge_pages_status(&self) -> String {
        let log = std::fs::read_to_string(self.data.path().join("server.log")).unwrap();
        let line = log.lines().find_map(|l| l.split_once("config HUGE_PAGES=")).map(|(_, v)| v.trim().to_string());
        line.unwrap_or_else(|| panic!("no HUGE_PAGES line in the start-up log:\n{log}"))
    }

    fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// `server serve` on a spare port with `env` set, running until /health answers; with the
/// arguments after the program's name.
async fn serve(extra_args: &[&str], env: &[(&str, &str)]) -> (Server, Vec<String>) {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = server_command(port);
    let data_dir = data.path().to_str().unwrap();
    let args = [&["--data-dir", data_dir, "--hf-hub-offline", "true"], extra_args].concat();
    // In the data folder, so no .env of the developer's is read.
    command
        .current_dir(data.path())
        .args(&args)
        .env_remove("GLIBC_TUNABLES")
        .env_remove("HUGE_PAGES")
        .env_remove("USE_MOCKS");
    let log = std::fs::File::create(data.path().join("server.log")).unwrap();
    command.env("RUST_LOG", "info").env("NO_COLOR", "1").stdout(log.try_clone().unwrap()).stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    let addr = format!("127.0.0.1:{port}");
    let args: Vec<String> = ["--addr", addr.as_str()].iter().chain(&args).map(|a| a.to_string()).collect();
    (Server { process: ServerProcess::start(command, port).await, data }, args)
}

/// The value of GLIBC_TUNABLES in the running process `pid`, if set.
fn tunables_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("GLIBC_TUNABLES=").map(str::to_string))
}

fn command_line_of(pid: u32) -> Vec<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect()
}

fn kernel_gives_huge_pages() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| server::huge_pages::kernel_allows(&s))
}

#[tokio::test]
async fn the_server_runs_the_models_with_malloc_on_huge_pages() {
    let (server, args) = serve(&[], &[]).await;
    let pid = server.pid();
    if kernel_gives_huge_pages() {
        assert_eq!(tunables_of(pid).as_deref(), Some("glibc.malloc.hugetlb=1"), "restarted with the tunable");
        assert_eq!(server.huge_pages_status(), "on (glibc.malloc.hugetlb=1)");
    } else {
        assert_eq!(tunables_of(pid), None, "no restart when the kernel gives no huge pages");
        assert!(server.huge_pages_status().starts_with("off"));
    }
    // Same process id (the restart replaces the program in place) and the same arguments.
    assert_eq!(command_line_of(pid)[1..], args[..]);
}

#[tokio::test]
async fn other_tunables_are_kept_and_the_users_choice_wins() {
    let (server, _) = serve(&[], &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")]).await;
    let status = server.huge_pages_status();
    if kernel_gives_huge_pages() {
        assert_eq!(status, "on (glibc.malloc.hugetlb=1)", "added after the user's own tunable");
    } else {
        assert!(status.starts_with("off"), "{status}");
    }
    drop(server);

    let (server, _) = serve(&[], &[("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")]).await;
    assert_eq!(tunables_of(server.pid()).as_deref(), Some("glibc.malloc.hugetlb=0"));
    assert_eq!(server.huge_pages_status(), "off (GLIBC_TUNABLES sets glibc.malloc.hugetlb=0)");
}

#[tokio::test]
async fn no_restart_when_switched_off_or_in_mock_mode() {
    let (server, _) = serve(&["--huge-pages", "false"], &[]).await;
    assert_eq!(tunables_of(server.pid()), None, "--huge-pages false");
    assert!(server.huge_pages_status().starts_with("off"));
    drop(server);
    let (server, _) = serve(&[], &[("HUGE_PAGES", "false")]).await;
    assert_eq!(tunables_of(server.pid()), None, "HUGE_PAGES=false");
    drop(server);
    let (server, _) = serve(&["--use-mocks", "true"], &[]).await;
    assert_eq!(tunables_of(server.pid()), None, "mock engines run no model");
}
