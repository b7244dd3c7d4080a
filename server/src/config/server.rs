//! Where the web server listens, who it answers, and how it logs.

use super::{parse_addr, LogFormat};
use crate::hosts::AllowedHosts;
use clap::Args;
use std::{net::SocketAddr, path::PathBuf};

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Server")]
pub struct ServerConfig {
    /// Address the web server listens on (the name cargo-leptos uses).
    #[arg(long = "addr", env = "LEPTOS_SITE_ADDR", value_name = "LEPTOS_SITE_ADDR",
          default_value = "127.0.0.1:3000", value_parser = parse_addr, global = true)]
    pub site_addr: SocketAddr,

    /// Folder holding the compiled site (WASM, CSS, assets) built by cargo-leptos.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site", global = true)]
    pub site_root: PathBuf,

    /// The address people open, e.g. `https://duet.example.com`; session cookies are marked
    /// `Secure` when it is https.
    #[arg(long, env = "PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Other origins (comma-separated, e.g. `https://ui.example.com`) whose pages may send
    /// state-changing requests with the session cookie.
    #[arg(long, env = "TRUSTED_ORIGINS", value_delimiter = ',', global = true)]
    pub trusted_origins: Vec<String>,

    /// Host names (comma-separated) this server answers for, besides loopback names and
    /// addresses and PUBLIC_URL's host; `*` answers for any (a guard against DNS rebinding).
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',', value_parser = parse_host, global = true)]
    pub allowed_hosts: Vec<String>,

    /// Reverse proxies (comma-separated addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed for the client's address; unset: the connection's own address is the client's.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy, global = true)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Longest a server-rendered page may take; past it (or when the render panics) the page is
    /// a 500 error page.
    #[arg(long, env = "RENDER_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub render_timeout_secs: u64,

    /// Seconds between the pings a WebSocket (`GET /ws`) gets; one that answers nothing for three
    /// rounds is closed.
    #[arg(long, env = "WS_PING_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub ws_ping_secs: u64,

    /// Where Prometheus scrapes `GET /metrics` from, e.g. `127.0.0.1:9090`: a listener of its own
    /// that answers anyone who reaches it (keep it private). Unset: no metrics are kept (the main
    /// port's `/metrics`, for admins, answers only when this is set).
    #[arg(long, env = "METRICS_ADDR", value_parser = parse_addr, global = true)]
    pub metrics_addr: Option<SocketAddr>,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Which logs to print, in tracing's EnvFilter syntax.
    #[arg(
        long = "log",
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info,sqlx=warn,tower_http=warn,openvino_finder=warn",
        global = true
    )]
    pub log_filter: String,
}

impl ServerConfig {
    /// The hosts Duet answers for besides loopback: `ALLOWED_HOSTS`, `PUBLIC_URL`'s host, and the
    /// address it is bound to when that is one address.
    pub fn allowed_hosts(&self) -> AllowedHosts {
        let mut names = self.allowed_hosts.clone();
        names.extend(self.public_url.as_deref().and_then(crate::hosts::url_host).map(String::from));
        if !self.site_addr.ip().is_unspecified() {
            names.push(self.site_addr.ip().to_string());
        }
        AllowedHosts::new(&names)
    }

    /// Whether the site is served over https (session cookies are then `Secure`).
    pub fn https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }
}

/// An `ALLOWED_HOSTS` entry: a host name or address (a port, if given, is ignored), or `*`.
fn parse_host(value: &str) -> Result<String, String> {
    let host = crate::hosts::normalize(value.trim());
    let ok = host == "*"
        || (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_')));
    if ok {
        Ok(host)
    } else {
        Err(format!("ALLOWED_HOSTS: {value:?} is not a host name or address (e.g. duet.example.com, 192.168.1.20, *)"))
    }
}

/// A `TRUSTED_PROXIES` entry: an address (`10.0.0.2`) or a range (`10.0.0.0/8`).
fn parse_proxy(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("TRUSTED_PROXIES: {value:?} is not an address or range (e.g. 127.0.0.1, 10.0.0.0/8, ::1)"))
}
