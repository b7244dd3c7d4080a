//! One configuration, read once at start-up from flags, the environment and `.env`, in groups by
//! area (one file each). Every option names its environment variable; a bad value stops the
//! server with a message that names the variable and what it accepts.

mod auth;
mod cluster;
mod images;
mod limits;
mod llm;
mod models;
mod server;
mod storage;

pub use self::{
    auth::AuthConfig,
    cluster::{ClusterConfig, Role},
    images::ImagesConfig,
    limits::LimitsConfig,
    llm::LlmConfig,
    models::{parse_revision, ModelsConfig, DEFAULT_LLM_MODEL, DEFAULT_SD_MODEL},
    server::ServerConfig,
    storage::{DatabaseUrl, ImageStore, StorageConfig},
};
use crate::models::hub::HubOptions;
pub use crate::models::ModelSpec;
use clap::{ArgMatches, Args, ValueEnum};
use std::{fmt, net::SocketAddr, path::PathBuf};

#[derive(Args, Clone, Debug)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
    #[command(flatten)]
    pub models: ModelsConfig,
    #[command(flatten)]
    pub llm: LlmConfig,
    #[command(flatten)]
    pub images: ImagesConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,
    #[command(flatten)]
    pub cluster: ClusterConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// One option as the start-up log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub variable: String,
    /// The value in effect; secrets and passwords masked.
    pub value: String,
}

impl Config {
    /// Every option, in the order the groups define them, with the value in effect: read from
    /// the option definitions and the parsed command line, so an option added to a group shows
    /// up here without being named again.
    pub fn settings(&self, matches: &ArgMatches) -> Vec<Setting> {
        let definitions = Config::augment_args(clap::Command::new("duet"));
        definitions
            .get_arguments()
            .filter_map(|arg| {
                let variable = arg.get_env()?.to_string_lossy().into_owned();
                let id = arg.get_id().as_str();
                let given: Option<Vec<String>> = matches
                    .try_get_raw(id)
                    .ok()
                    .flatten()
                    .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect());
                let value = match (arg.is_hide_env_values_set(), given) {
                    (true, Some(_)) => "***".to_string(),
                    (_, given) => self.derived(&variable).unwrap_or_else(|| match given {
                        Some(values) => masked_url(&values.join(",")),
                        None => "(unset)".into(),
                    }),
                };
                Some(Setting { variable, value })
            })
            .collect()
    }

    /// Values worked out from others when an option is unset, as the server will use them.
    fn derived(&self, variable: &str) -> Option<String> {
        Some(match variable {
            "DATABASE_URL" => self.storage.database_url().masked(),
            "IMAGE_STORE" if self.storage.image_store.is_none() => "(DATA_DIR/images)".into(),
            "MODELS_DIR" => self.models_dir().display().to_string(),
            "OPENVINO_CACHE_DIR" => self.openvino_cache_dir().display().to_string(),
            "HUGE_PAGES" => crate::huge_pages::status(),
            "SECRET_KEY" if self.auth.secret_key.is_none() => "(DATA_DIR/secret.key)".into(),
            "LLM_CONTEXT_TOKENS" if self.llm.context_tokens.is_none() => "(model limit)".into(),
            "SD_UNET_LINEAR" if self.images.unet_linear.is_none() => "(per CPU class)".into(),
            _ => return None,
        })
    }

    pub fn models_dir(&self) -> PathBuf {
        self.models.models_dir.clone().unwrap_or_else(|| self.storage.data_dir.join("models"))
    }

    pub fn openvino_cache_dir(&self) -> PathBuf {
        self.models.openvino_cache_dir.clone().unwrap_or_else(|| self.models_dir().join("cache"))
    }

    /// How models are fetched from the hub.
    pub fn hub_options(&self) -> HubOptions {
        HubOptions {
            endpoint: self.models.hf_endpoint.trim_end_matches('/').to_string(),
            token: self.models.huggingface_token.as_ref().map(|t| t.expose().to_string()),
            offline: self.models.hf_hub_offline,
            models_dir: self.models_dir(),
            chunk_bytes: crate::models::hub::DEFAULT_CHUNK_BYTES,
            attempts: 4,
            safety_checker: self.images.safety_checker,
        }
    }

    /// How the chat engine compiles and runs its model.
    pub fn llm_engine_options(&self) -> crate::inference::llm::EngineOptions {
        use crate::inference::llm::{CompileOptions, EngineOptions};
        let llm = &self.llm;
        let mut compile = CompileOptions {
            device: self.models.device.clone(),
            cache_dir: Some(self.openvino_cache_dir()),
            weights: llm.weights,
            ..Default::default()
        };
        for (key, value) in compile.properties.iter_mut() {
            if key == "KV_CACHE_PRECISION" {
                *value = llm.kv_cache_precision.clone();
            }
        }
        compile.properties.extend(crate::inference::cpu::llm_properties(llm.precision));
        EngineOptions {
            compile,
            attention: llm.attention,
            max_context: llm.context_tokens,
            max_sessions: llm.kv_sessions,
            max_session_bytes: llm.kv_cache_mb << 20,
            prefill_chunk: (llm.prefill_chunk > 0).then_some(llm.prefill_chunk),
            shared_prefill_chunk: llm.step_tokens,
            share_prefixes: llm.share_prefixes,
            ..Default::default()
        }
    }

    /// How the image engine compiles its models: at `SD_PRECISION`, with the settings measured
    /// fastest for this CPU's class (`inference::cpu`).
    pub fn sd_compile_options(&self) -> crate::inference::diffusion::SdCompileOptions {
        self.sd_compile_options_at(self.images.precision)
    }

    /// The same at another precision (`imagine --from` draws at the precision a picture records).
    pub fn sd_compile_options_at(
        &self,
        precision: crate::inference::cpu::Precision,
    ) -> crate::inference::diffusion::SdCompileOptions {
        use crate::inference::cpu::{drawn_at, sd_settings, CpuClass};
        let class = CpuClass::detect();
        let settings = sd_settings(class, precision, self.images.unet_linear);
        crate::inference::diffusion::SdCompileOptions {
            device: self.models.device.clone(),
            cache_dir: Some(self.openvino_cache_dir()),
            compiled_sizes: self.images.compiled_sizes.max(1),
            safety_checker: self.images.safety_checker,
            unet_linear: settings.unet_linear,
            properties: settings.properties,
            drawn_at: drawn_at(class, precision),
            ..Default::default()
        }
    }
}

/// A value that must never reach a log line.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A URL with any password replaced by `***`, for logs and error messages: the user-info one
/// (`user:PASSWORD@host`) and a `password=` query value (`?password=…`, as libpq accepts).
pub fn masked_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => base.to_string(),
        },
        None => base.to_string(),
    };
    let Some(query) = query else { return base };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword") => {
                format!("{key}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

fn parse_bool(variable: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{variable}: expected true or false (or 1/0, yes/no, on/off)")),
    }
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| "LEPTOS_SITE_ADDR: expected IP:PORT, e.g. 127.0.0.1:3000".to_string())
}

#[cfg(test)]
mod tests {
    use super::{storage::parse_database_url, *};

    #[test]
    fn repo_ids_and_local_dirs_are_told_apart() {
        assert_eq!(
            ModelSpec::parse("LLM_MODEL", DEFAULT_LLM_MODEL).unwrap(),
            ModelSpec::Repo(DEFAULT_LLM_MODEL.into())
        );
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().to_str().unwrap();
        assert_eq!(ModelSpec::parse("SD_MODEL", local).unwrap(), ModelSpec::Local(dir.path().into()));
    }

    #[test]
    fn bad_model_values_name_the_variable() {
        let err = ModelSpec::parse("SD_MODEL", "not a repo").unwrap_err();
        assert!(err.starts_with("SD_MODEL:"), "{err}");
        let err = ModelSpec::parse("LLM_MODEL", "/no/such/dir").unwrap_err();
        assert!(err.contains("no directory at /no/such/dir"), "{err}");
        assert!(ModelSpec::parse("LLM_MODEL", "owner/-bad").is_err());
        assert!(ModelSpec::parse("LLM_MODEL", "a/b/c").is_err());
    }

    #[test]
    fn database_urls_are_checked_and_masked() {
        assert_eq!(
            parse_database_url("sqlite://data/duet.db").unwrap(),
            DatabaseUrl::Sqlite("sqlite://data/duet.db".into())
        );
        let pg = parse_database_url("postgres://duet:hunter2@db:5432/duet").unwrap();
        assert_eq!(pg.masked(), "postgres://duet:***@db:5432/duet");
        let pg = parse_database_url("postgres://duet@db/duet?sslmode=require&password=hunter2").unwrap();
        assert_eq!(pg.masked(), "postgres://duet@db/duet?sslmode=require&password=***");
        let pg = parse_database_url("postgresql://duet:p@ss@db/duet?PASSWORD=x").unwrap();
        assert_eq!(pg.masked(), "postgresql://duet:***@db/duet?PASSWORD=***");
        assert!(parse_database_url("mysql://x").unwrap_err().starts_with("DATABASE_URL"));
    }

    #[test]
    fn booleans_and_addresses_name_their_variable() {
        assert_eq!(parse_bool("USE_MOCKS", "TRUE"), Ok(true));
        assert_eq!(parse_bool("USE_MOCKS", "off"), Ok(false));
        let err = parse_bool("AUTO_DOWNLOAD_MODELS", "maybe").unwrap_err();
        assert_eq!(err, "AUTO_DOWNLOAD_MODELS: expected true or false (or 1/0, yes/no, on/off)");
        assert!(parse_addr("0.0.0.0:80").is_ok());
        assert!(parse_addr("localhost").unwrap_err().starts_with("LEPTOS_SITE_ADDR:"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::from("hf_abc".to_string());
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hf_abc");
    }

    fn parse(args: &[&str], env: &[(&str, &'static str)]) -> (Config, Vec<Setting>) {
        // Stand-ins for variables, set as defaults, so the outcome neither depends on nor
        // changes the process's environment.
        let mut command = Config::augment_args(clap::Command::new("duet"));
        for (variable, value) in env {
            let id = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == *variable))
                .map(|a| a.get_id().clone())
                .expect("a known variable");
            command = command.mut_arg(id, |a| a.default_value(*value));
        }
        let matches = command.try_get_matches_from(std::iter::once("duet").chain(args.iter().copied())).unwrap();
        let config = <Config as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
        let settings = config.settings(&matches);
        (config, settings)
    }

    #[test]
    fn the_start_up_summary_lists_every_option_once_and_no_secret() {
        let (config, settings) = parse(
            &[
                "--database-url",
                "postgres://duet:hunter2@db/duet",
                "--secret-key",
                "s3cr3t",
                "--llm-kv-sessions",
                "3",
                "--trusted-origins",
                "https://a.example,https://b.example",
            ],
            &[],
        );
        assert_eq!(config.llm.kv_sessions, 3);
        let definitions = Config::augment_args(clap::Command::new("duet"));
        let variables: Vec<String> = definitions
            .get_arguments()
            .map(|a| a.get_env().expect("every option has a variable").to_string_lossy().into_owned())
            .collect();
        let listed: Vec<String> = settings.iter().map(|s| s.variable.clone()).collect();
        assert_eq!(listed, variables);
        assert!(listed.len() > 50, "{listed:?}");
        let get = |name: &str| settings.iter().find(|s| s.variable == name).unwrap().clone();
        assert_eq!(get("DATABASE_URL").value, "postgres://duet:***@db/duet");
        assert_eq!(get("SECRET_KEY").value, "***");
        assert_eq!(get("LLM_KV_SESSIONS").value, "3");
        assert_eq!(get("LLM_KV_CACHE_MB").value, "1024");
        assert_eq!(get("TRUSTED_ORIGINS").value, "https://a.example,https://b.example");
        assert_eq!(get("REDIS_URL").value, "(unset)");
        assert_eq!(get("LLM_CONTEXT_TOKENS").value, "(model limit)");
        assert!(settings.iter().all(|s| !s.value.contains("hunter2") && !s.value.contains("s3cr3t")));
    }

    #[test]
    fn options_keep_their_flags_and_variables_in_groups() {
        let (config, _) = parse(
            &[
                "--llm-context-tokens",
                "512",
                "--image-queue-size",
                "3",
                "--auth-required",
                "false",
                "--sd-precision",
                "f32",
            ],
            &[("ACCOUNT_REQUESTS_PER_MINUTE", "7")],
        );
        assert_eq!(config.llm.context_tokens, Some(512));
        assert_eq!(config.images.queue_size, 3);
        assert!(!config.auth.required);
        assert_eq!(config.images.precision, crate::inference::cpu::Precision::F32);
        assert_eq!(config.limits.account_requests_per_minute, 7);
        assert_eq!(config.models_dir(), PathBuf::from("data/models"));
        assert_eq!(config.openvino_cache_dir(), PathBuf::from("data/models/cache"));
    }
}
