//! A throwaway PostgreSQL cluster in a temporary folder, started with initdb/pg_ctl and stopped
//! when dropped. Fails loudly (never skips) when the server binaries are not installed.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl TempPostgres {
    pub fn start() -> TempPostgres {
        let bin = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with \
                 `apt-get install postgresql` (or run scripts/setup.sh test), or set PG_BIN_DIR"
            )
        });
        let dir = tempfile::Builder::new().prefix("duet-pg-").tempdir().expect("temp dir");
        // initdb refuses to run as root; then the cluster belongs to the `postgres` user.
        let as_postgres_user = is_root();
        if as_postgres_user {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()), "chown");
        }
        let port = free_port();
        let pg = TempPostgres { dir, bin, port, as_postgres_user };
        let data = pg.dir.path().join("data");
        pg.run_pg("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", pg.dir.path().display());
        let log = pg.dir.path().join("log");
        pg.run_pg("pg_ctl", &["-D", data.to_str().unwrap(), "-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"]);
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        }
    }

    fn run_pg(&self, tool: &str, args: &[&str]) {
        run(self.command(tool).args(args).current_dir(self.dir.path()), tool);
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TempPostgres {
    fn stop(&self) {
        let data = self.dir.path().join("data");
        let _ = self.command("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
    }
}

/// One cluster per test process, started by the first test that asks and stopped when the
/// process exits (statics are never dropped, so an exit hook stops it).
static SHARED: std::sync::OnceLock<TempPostgres> = std::sync::OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(pg) = SHARED.get() {
        pg.stop();
        let _ = std::fs::remove_dir_all(pg.dir.path());
    }
}

/// The URL of a new, empty database in this process's shared cluster: each test gets its own,
/// so tests run side by side as they do on SQLite.
pub async fn fresh_database() -> String {
    let pg = SHARED.get_or_init(|| {
        let pg = TempPostgres::start();
        // SAFETY: registering a plain `extern "C" fn` with no arguments is what atexit expects.
        unsafe { libc::atexit(stop_shared) };
        pg
    });
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&pg.url()).await.expect("connect to the test cluster");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create a test database");
    admin.close().await;
    format!("postgres://postgres@127.0.0.1:{}/{name}", pg.port)
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    versions.pop().or_else(|| which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(tool)).find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.trim_ascii() == b"0").unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
