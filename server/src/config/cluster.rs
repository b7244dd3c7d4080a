//! How this process takes part in a cluster: its role, how web processes reach workers, and
//! OpenAI-compatible servers that answer in place of local models.

use super::Secret;
use clap::{Args, ValueEnum};

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterConfig {
    /// `all`: one process does everything (the default). `web`: UI and REST, loads no model
    /// (chat through workers or CHAT_ENDPOINTS, pictures drawn by workers from the job table).
    /// `worker`: loads the models, draws queued pictures and answers web processes' chat turns.
    #[arg(long, env = "ROLE", value_enum, default_value_t = Role::All, global = true)]
    pub role: Role,

    /// The secret web processes and workers share (at least 16 characters); required for the
    /// `web` and `worker` roles. Workers answer only requests that carry it.
    #[arg(long, env = "WORKER_SECRET", hide_env_values = true, global = true)]
    pub worker_secret: Option<Secret>,

    /// How web processes reach this worker, e.g. `http://10.0.0.7:3000`; announced in the
    /// database. Unset: `http://` and LEPTOS_SITE_ADDR (127.0.0.1 for an unspecified address).
    #[arg(long, env = "WORKER_URL", global = true)]
    pub worker_url: Option<String>,

    /// OpenAI-compatible servers (comma-separated base URLs, e.g. `http://vllm:8000/v1`,
    /// `http://ovms:8000/v3`) that answer chat turns in place of the local model.
    #[arg(long, env = "CHAT_ENDPOINTS", value_delimiter = ',', value_parser = parse_endpoint, global = true)]
    pub chat_endpoints: Vec<String>,

    /// OpenAI-compatible servers (`POST …/images/generations`) that draw pictures in place of
    /// the local model.
    #[arg(long, env = "IMAGE_ENDPOINTS", value_delimiter = ',', value_parser = parse_endpoint, global = true)]
    pub image_endpoints: Vec<String>,

    /// The API key sent to CHAT_ENDPOINTS and IMAGE_ENDPOINTS (`Authorization: Bearer`).
    #[arg(long, env = "ENDPOINT_API_KEY", hide_env_values = true, global = true)]
    pub endpoint_api_key: Option<Secret>,

    /// The model name sent to CHAT_ENDPOINTS; unset: LLM_MODEL as configured.
    #[arg(long, env = "CHAT_ENDPOINT_MODEL", global = true)]
    pub chat_endpoint_model: Option<String>,

    /// The model name sent to IMAGE_ENDPOINTS; unset: SD_MODEL as configured.
    #[arg(long, env = "IMAGE_ENDPOINT_MODEL", global = true)]
    pub image_endpoint_model: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    All,
    Web,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Web => "web",
            Role::Worker => "worker",
        }
    }
}

impl ClusterConfig {
    /// Whether this process runs models of its own (a web process never does; endpoints stand
    /// in for the local model they replace).
    pub fn local_chat(&self) -> bool {
        self.role != Role::Web && self.chat_endpoints.is_empty()
    }

    pub fn local_images(&self) -> bool {
        self.role != Role::Web && self.image_endpoints.is_empty()
    }

    /// Whether this process draws queued pictures: with its own model or through endpoints.
    pub fn draws_images(&self) -> bool {
        self.local_images() || !self.image_endpoints.is_empty()
    }

    /// The shared secret, checked: what is wrong names the variable.
    pub fn secret(&self) -> Result<Option<&str>, String> {
        match (&self.worker_secret, self.role) {
            (None, Role::All) => Ok(None),
            (None, role) => {
                Err(format!("ROLE={}: set WORKER_SECRET (the same on web processes and workers)", role.as_str()))
            }
            (Some(s), _) if s.expose().chars().count() < 16 => {
                Err("WORKER_SECRET: use at least 16 characters".to_string())
            }
            (Some(s), _) => Ok(Some(s.expose())),
        }
    }

    /// The URL this worker announces.
    pub fn announced_url(&self, site_addr: std::net::SocketAddr) -> String {
        match &self.worker_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let ip = if site_addr.ip().is_unspecified() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    site_addr.ip()
                };
                format!("http://{}", std::net::SocketAddr::new(ip, site_addr.port()))
            }
        }
    }
}

fn parse_endpoint(value: &str) -> Result<String, String> {
    let value = value.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(value).map_err(|e| format!("{value:?} is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{value:?}: use an http:// or https:// base URL, e.g. http://host:8000/v1"));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_base_urls() {
        assert_eq!(parse_endpoint(" http://h:8000/v1/ ").unwrap(), "http://h:8000/v1");
        assert!(parse_endpoint("ftp://h/v1").is_err());
        assert!(parse_endpoint("h:8000").is_err());
    }

    #[test]
    fn workers_announce_a_reachable_address() {
        let config = ClusterConfig {
            role: Role::Worker,
            worker_secret: Some(Secret::from("0123456789abcdef".to_string())),
            worker_url: None,
            chat_endpoints: vec![],
            image_endpoints: vec![],
            endpoint_api_key: None,
            chat_endpoint_model: None,
            image_endpoint_model: None,
        };
        assert_eq!(config.announced_url("0.0.0.0:3001".parse().unwrap()), "http://127.0.0.1:3001");
        assert_eq!(config.announced_url("10.0.0.7:3001".parse().unwrap()), "http://10.0.0.7:3001");
        assert_eq!(config.secret().unwrap(), Some("0123456789abcdef"));
        let short = ClusterConfig { worker_secret: Some(Secret::from("short".to_string())), ..config.clone() };
        assert!(short.secret().unwrap_err().contains("16"));
        let none = ClusterConfig { worker_secret: None, ..config };
        assert!(none.secret().unwrap_err().contains("WORKER_SECRET"));
    }
}
