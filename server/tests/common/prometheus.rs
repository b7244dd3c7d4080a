//! A throwaway Prometheus server (Debian's `prometheus` package) with its own configuration and
//! data folder, scraping the targets it is given every second; stopped when dropped. Fails loudly
//! (never skips) when it is not installed. Also `promtool check metrics`.

use serde_json::Value;
use std::{
    io::Write,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const INSTALL: &str = "install it with `apt-get install prometheus` (or run scripts/setup.sh test)";

/// One scrape job: its name, the `host:port` to scrape, and a bearer token to send.
pub struct Job<'a> {
    pub name: &'a str,
    pub target: String,
    pub bearer: Option<&'a str>,
}

pub struct TempPrometheus {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    http: reqwest::Client,
}

impl TempPrometheus {
    pub async fn start(jobs: &[Job<'_>]) -> TempPrometheus {
        let dir = tempfile::Builder::new().prefix("duet-prometheus-").tempdir().expect("temp dir");
        let mut config = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for job in jobs {
            config +=
                &format!("  - job_name: {}\n    static_configs:\n      - targets: ['{}']\n", job.name, job.target);
            if let Some(token) = job.bearer {
                config += &format!("    authorization:\n      type: Bearer\n      credentials: '{token}'\n");
            }
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = super::process::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start prometheus ({e}): {INSTALL}"));
        let prometheus = TempPrometheus { child, _dir: dir, port, http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = prometheus.http.get(prometheus.url("/-/ready")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus did not get ready on port {port} within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The value of an instant query that gives one series; `None` when it gives none.
    pub async fn query(&self, query: &str) -> Option<f64> {
        let res = self.http.get(self.url("/api/v1/query")).query(&[("query", query)]).send().await.unwrap();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "success", "{query}: {body}");
        let result = body["data"]["result"].as_array().unwrap();
        assert!(result.len() <= 1, "{query} gives {} series: {body}", result.len());
        result.first().map(|series| series["value"][1].as_str().unwrap().parse().unwrap())
    }

    /// Wait (at most 30 s) until the query gives `expected`: the scrape after the event has
    /// reached Prometheus. Returns what it last gave.
    pub async fn wait_for(&self, query: &str, expected: f64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.query(query).await;
            if got == Some(expected) || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The scrape targets' health, by job: `up` is 1 when the last scrape succeeded.
    pub async fn targets(&self) -> Value {
        let res = self.http.get(self.url("/api/v1/targets")).send().await.unwrap();
        res.json().await.unwrap()
    }
}

impl Drop for TempPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `promtool check metrics` says about a scrape (empty: nothing to complain about).
pub fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run promtool ({e}): {INSTALL}"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        said
    } else {
        format!("promtool failed ({}): {said}", out.status)
    }
}
