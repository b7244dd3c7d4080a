//! One configuration, read once at start-up from flags, the environment and `.env`.
//! Every field names its environment variable; a bad value stops the server with a message that
//! names the variable and what it accepts.

pub use crate::models::ModelSpec;
use crate::{hosts::AllowedHosts, inference::runtime::RuntimeSearch, models::hub::HubOptions};
use clap::{ArgAction, Args, ValueEnum};
use std::{fmt, net::SocketAddr, path::PathBuf};

/// The default chat model: DeepSeek-R1-Distill-Qwen-1.5B, INT4 channel-wise, exported for OpenVINO.
pub const DEFAULT_LLM_MODEL: &str = "OpenVINO/DeepSeek-R1-Distill-Qwen-1.5B-int4-cw-ov";
/// The default image model: Stable Diffusion 1.5, INT8, exported for OpenVINO.
pub const DEFAULT_SD_MODEL: &str = "OpenVINO/stable-diffusion-v1-5-int8-ov";

#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address the web server listens on (the name cargo-leptos uses).
    #[arg(long = "addr", env = "LEPTOS_SITE_ADDR", value_name = "LEPTOS_SITE_ADDR",
          default_value = "127.0.0.1:3000", value_parser = parse_addr, global = true)]
    pub site_addr: SocketAddr,

    /// Folder holding the compiled site (WASM, CSS, assets) built by cargo-leptos.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site", global = true)]
    pub site_root: PathBuf,

    /// Folder for the database, downloaded models and generated images.
    #[arg(long, env = "DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// Database: `sqlite://FILE` (default `DATA_DIR/duet.db`) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_database_url, global = true)]
    pub database_url: Option<DatabaseUrl>,

    /// Model cache in the Hugging Face hub layout (default `DATA_DIR/models`).
    #[arg(long, env = "MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,

    /// Chat model: a Hugging Face repo id or a local model directory.
    #[arg(long, env = "LLM_MODEL", default_value = DEFAULT_LLM_MODEL,
          value_parser = |s: &str| ModelSpec::parse("LLM_MODEL", s), global = true)]
    pub llm_model: ModelSpec,

    /// Image model: a Hugging Face repo id or a local model directory.
    #[arg(long, env = "SD_MODEL", default_value = DEFAULT_SD_MODEL,
          value_parser = |s: &str| ModelSpec::parse("SD_MODEL", s), global = true)]
    pub sd_model: ModelSpec,

    /// Answer with deterministic mock engines instead of running the models (true/false).
    #[arg(long, env = "USE_MOCKS", default_value = "false", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("USE_MOCKS", s), global = true)]
    pub use_mocks: bool,

    /// Fetch missing model files from Hugging Face at start-up (true/false).
    #[arg(long, env = "AUTO_DOWNLOAD_MODELS", default_value = "false", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("AUTO_DOWNLOAD_MODELS", s), global = true)]
    pub auto_download_models: bool,

    /// Access token for gated or private Hugging Face repositories.
    #[arg(long, env = "HUGGINGFACE_TOKEN", hide_env_values = true, global = true)]
    pub huggingface_token: Option<Secret>,

    /// The hub to download from: Hugging Face, or a mirror that serves the same API.
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co", global = true,
          value_parser = parse_endpoint)]
    pub hf_endpoint: String,

    /// Never contact the hub: use only what is in MODELS_DIR (true/false, or 1/0).
    #[arg(long, env = "HF_HUB_OFFLINE", default_value = "false", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("HF_HUB_OFFLINE", s), global = true)]
    pub hf_hub_offline: bool,

    /// Revision of LLM_MODEL to download and run: a branch, a tag or a commit id.
    #[arg(long, env = "LLM_REVISION", default_value = "main", global = true,
          value_parser = |s: &str| parse_revision("LLM_REVISION", s))]
    pub llm_revision: String,

    /// Revision of SD_MODEL to download and run: a branch, a tag or a commit id.
    #[arg(long, env = "SD_REVISION", default_value = "main", global = true,
          value_parser = |s: &str| parse_revision("SD_REVISION", s))]
    pub sd_revision: String,

    /// OpenVINO device that runs the models.
    #[arg(long, env = "DEVICE", default_value = "CPU", value_parser = ["CPU", "GPU", "NPU", "AUTO"],
          global = true)]
    pub device: String,

    /// Folder holding `libopenvino_c.so*`; when unset: INTEL_OPENVINO_DIR, system paths, then `.openvino/`.
    #[arg(long, env = "OPENVINO_LIB_DIR", global = true)]
    pub openvino_lib_dir: Option<PathBuf>,

    /// OpenVINO install root, as set by OpenVINO's `setupvars.sh`.
    #[arg(long, env = "INTEL_OPENVINO_DIR", global = true)]
    pub intel_openvino_dir: Option<PathBuf>,

    /// Where the chat model's weights live: memory (read in, on huge pages where the kernel offers
    /// them; decodes faster) or mapped (from the file: starts faster, the kernel may drop pages).
    #[arg(long, env = "LLM_WEIGHTS", value_enum, default_value_t = crate::inference::weights::Placement::Memory, global = true)]
    pub llm_weights: crate::inference::weights::Placement,

    /// Put OpenVINO's model buffers on transparent huge pages (glibc's `glibc.malloc.hugetlb`
    /// tunable; the server starts itself again once to set it): faster decoding and UNet steps,
    /// a slower start (true/false).
    #[arg(long, env = "HUGE_PAGES", default_value = "true", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("HUGE_PAGES", s), global = true)]
    pub huge_pages: bool,

    /// Chat context window in tokens (default: the model's own limit).
    #[arg(long, env = "LLM_CONTEXT_TOKENS", global = true)]
    pub llm_context_tokens: Option<usize>,

    /// Chat attention: paged (KV cache in blocks we manage; needs the shim built with the server),
    /// stateful (the exported graph as it is), or auto (paged when available).
    #[arg(long, env = "LLM_ATTENTION", value_enum, default_value_t = crate::inference::llm::Attention::Auto, global = true)]
    pub llm_attention: crate::inference::llm::Attention,

    /// Prompts run in chunks of this many tokens, bounding each conversation's buffers; 0: whole.
    #[arg(long, env = "LLM_PREFILL_CHUNK", default_value_t = 256, global = true)]
    pub llm_prefill_chunk: usize,

    /// Idle conversations whose KV cache stays in memory, so their next turn starts fast.
    #[arg(long, env = "LLM_KV_SESSIONS", default_value_t = 8, global = true)]
    pub llm_kv_sessions: usize,

    /// Memory in MiB for KV caches: what idle conversations may keep, and with paged attention
    /// the most the shared block pool grows to.
    #[arg(long, env = "LLM_KV_CACHE_MB", default_value_t = 1024, global = true)]
    pub llm_kv_cache_mb: usize,

    /// KV cache precision: u8 (quantized, least memory), f16, bf16 or f32.
    #[arg(long, env = "LLM_KV_CACHE_PRECISION", default_value = "u8",
          value_parser = ["u8", "f16", "bf16", "f32"], global = true)]
    pub llm_kv_cache_precision: String,

    /// Image sizes whose compiled UNet and VAE stay in memory (each costs about the UNet's size).
    #[arg(long, env = "SD_COMPILED_SIZES", default_value_t = 2, global = true)]
    pub sd_compiled_sizes: usize,

    /// UNet linear layers whose int8 weights are unpacked to f32 at load, so OpenVINO runs plain
    /// f32 GEMMs instead of decompressing at every step: f32-outer (the high-resolution levels,
    /// most speed per byte), f32 (all; most memory), int8 (as shipped; least memory).
    #[arg(long, env = "SD_UNET_LINEAR", value_enum, global = true)]
    pub sd_unet_linear: Option<crate::inference::diffusion::UnetLinear>,

    /// Image model precision: fast (what this CPU runs fastest; the same seed gives the same
    /// picture on CPUs of the same class) or f32 (the same picture on every machine).
    #[arg(long, env = "SD_PRECISION", value_enum, default_value_t = crate::inference::cpu::Precision::Fast, global = true)]
    pub sd_precision: crate::inference::cpu::Precision,

    /// Chat model precision: fast (the plugin's choice for this CPU, bf16 where it has the
    /// units) or f32 (the same tokens on every machine, to check exactness).
    #[arg(long, env = "LLM_PRECISION", value_enum, default_value_t = crate::inference::cpu::Precision::Fast, global = true)]
    pub llm_precision: crate::inference::cpu::Precision,

    /// Filter images with the model's safety checker when it has one; flagged ones are blacked out (true/false).
    #[arg(long, env = "SD_SAFETY_CHECKER", default_value = "false", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("SD_SAFETY_CHECKER", s), global = true)]
    pub sd_safety_checker: bool,

    /// Recent turns (a message and its reply) sent to the chat model with each new message.
    #[arg(long, env = "CONTEXT_TURNS", default_value_t = 8, global = true)]
    pub context_turns: usize,

    /// Tokens a reply may use, reasoning included, when the request gives no `max_tokens`.
    #[arg(long, env = "CHAT_MAX_TOKENS", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..=8192), global = true)]
    pub chat_max_tokens: u32,

    /// Chat replies generated at once; more get 503 with Retry-After.
    #[arg(long, env = "CHAT_CONCURRENCY", default_value_t = 8, global = true)]
    pub chat_concurrency: usize,

    /// Image jobs that may wait in the queue; more get 503 with Retry-After.
    #[arg(long, env = "IMAGE_QUEUE_SIZE", default_value_t = 16, global = true)]
    pub image_queue_size: usize,

    /// Longest an image job waits between two steps for chat replies to finish (0: never waits).
    #[arg(long, env = "IMAGE_YIELD_MS", default_value_t = 10_000, global = true)]
    pub image_yield_ms: u64,

    /// Longest a non-streaming chat request may take before it gets 504.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 600, global = true)]
    pub request_timeout_secs: u64,

    /// Longest `POST /image?wait=true` waits for the picture before it gets 504.
    #[arg(long, env = "IMAGE_WAIT_TIMEOUT_SECS", default_value_t = 900, global = true)]
    pub image_wait_timeout_secs: u64,

    /// Time each token of a mock reply takes, so streaming can be seen in mock mode.
    #[arg(long, env = "MOCK_TOKEN_MS", default_value_t = 0, global = true)]
    pub mock_token_ms: u64,

    /// Time each step of a mock image takes, so progress can be seen in mock mode.
    #[arg(long, env = "MOCK_IMAGE_STEP_MS", default_value_t = 20, global = true)]
    pub mock_image_step_ms: u64,

    /// Require an account (session or API key) for everything but health, login and static files
    /// (true/false). `false` is for one person on their own machine: requests without credentials
    /// then act as the local owner.
    #[arg(long, env = "AUTH_REQUIRED", default_value = "true", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("AUTH_REQUIRED", s), global = true)]
    pub auth_required: bool,

    /// Anyone may sign up (true/false). With false, only the first account (the admin) signs
    /// itself up; an admin makes the others (`POST /admin/accounts`).
    #[arg(long, env = "OPEN_REGISTRATION", default_value = "true", action = ArgAction::Set,
          value_parser = |s: &str| parse_bool("OPEN_REGISTRATION", s), global = true)]
    pub open_registration: bool,

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

    /// Log-in and sign-up requests per minute per client address (0: no limit).
    #[arg(long, env = "AUTH_REQUESTS_PER_MINUTE", default_value_t = 30, global = true)]
    pub auth_requests_per_minute: u32,

    /// Log-in attempts per minute for one username from one client address (0: no limit).
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10, global = true)]
    pub login_attempts_per_minute: u32,

    /// Longest a server-rendered page may take; past it (or when the render panics) the page is
    /// a 500 error page.
    #[arg(long, env = "RENDER_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub render_timeout_secs: u64,

    /// Key that signs share links (any text); default: a random key kept in `DATA_DIR/secret.key`.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true, global = true)]
    pub secret_key: Option<Secret>,

    /// Days a browser session lasts without being used.
    #[arg(long, env = "SESSION_DAYS", default_value_t = 14,
          value_parser = clap::value_parser!(u32).range(1..=365), global = true)]
    pub session_days: u32,

    /// Redis (`redis://HOST:PORT[/DB]`) for sessions and rate-limit buckets, so several server
    /// processes share them; unset: sessions in the database, buckets in memory.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<Secret>,

    /// Requests per minute per account (token bucket; 0: no limit).
    #[arg(long, env = "ACCOUNT_REQUESTS_PER_MINUTE", default_value_t = 600, global = true)]
    pub account_requests_per_minute: u32,

    /// Requests per minute per end user (`user_id`) of an account (0: no limit).
    #[arg(long, env = "USER_REQUESTS_PER_MINUTE", default_value_t = 120, global = true)]
    pub user_requests_per_minute: u32,

    /// Generations (chat replies and image jobs) running or queued at once per account (0: no limit).
    #[arg(long, env = "ACCOUNT_CONCURRENT_GENERATIONS", default_value_t = 8, global = true)]
    pub account_concurrent_generations: u32,

    /// Generations running or queued at once per end user (0: no limit).
    #[arg(long, env = "USER_CONCURRENT_GENERATIONS", default_value_t = 2, global = true)]
    pub user_concurrent_generations: u32,

    /// Images per account per UTC day (0: no limit).
    #[arg(long, env = "ACCOUNT_IMAGES_PER_DAY", default_value_t = 0, global = true)]
    pub account_images_per_day: u32,

    /// Images per end user per UTC day (0: no limit).
    #[arg(long, env = "USER_IMAGES_PER_DAY", default_value_t = 0, global = true)]
    pub user_images_per_day: u32,

    /// Generated tokens per account per UTC day (0: no limit).
    #[arg(long, env = "ACCOUNT_TOKENS_PER_DAY", default_value_t = 0, global = true)]
    pub account_tokens_per_day: u64,

    /// Generated tokens per end user per UTC day (0: no limit).
    #[arg(long, env = "USER_TOKENS_PER_DAY", default_value_t = 0, global = true)]
    pub user_tokens_per_day: u64,

    /// Where OpenVINO keeps compiled models so the next start is fast (default `MODELS_DIR/cache`).
    #[arg(long, env = "OPENVINO_CACHE_DIR", global = true)]
    pub openvino_cache_dir: Option<PathBuf>,

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Config {
    /// Where to look for the OpenVINO runtime: the configured folders, the system's, and a
    /// project-local `.openvino/` above the working directory or the executable.
    pub fn runtime_search(&self) -> RuntimeSearch {
        let mut project_roots = Vec::new();
        project_roots.extend(std::env::current_dir().ok());
        project_roots.extend(std::env::current_exe().ok().and_then(|e| e.parent().map(|p| p.to_path_buf())));
        RuntimeSearch {
            explicit_dir: self.openvino_lib_dir.clone(),
            intel_openvino_dir: self.intel_openvino_dir.clone(),
            system_paths: true,
            project_roots,
        }
    }

    /// How models are fetched from the hub.
    pub fn hub_options(&self) -> HubOptions {
        HubOptions {
            endpoint: self.hf_endpoint.trim_end_matches('/').to_string(),
            token: self.huggingface_token.as_ref().map(|t| t.expose().to_string()),
            offline: self.hf_hub_offline,
            models_dir: self.models_dir(),
            chunk_bytes: crate::models::hub::DEFAULT_CHUNK_BYTES,
            attempts: 4,
            safety_checker: self.sd_safety_checker,
        }
    }

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

    pub fn database_url(&self) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::Sqlite(format!("sqlite://{}", self.data_dir.join("duet.db").display())))
    }

    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(|| self.data_dir.join("models"))
    }

    /// Generated images, under names the server makes.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// Whether the site is served over https (session cookies are then `Secure`).
    pub fn https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }

    pub fn openvino_cache_dir(&self) -> PathBuf {
        self.openvino_cache_dir.clone().unwrap_or_else(|| self.models_dir().join("cache"))
    }

    /// How the chat engine compiles and runs its model.
    pub fn llm_engine_options(&self) -> crate::inference::llm::EngineOptions {
        use crate::inference::llm::{CompileOptions, EngineOptions};
        let mut compile = CompileOptions {
            device: self.device.clone(),
            cache_dir: Some(self.openvino_cache_dir()),
            weights: self.llm_weights,
            ..Default::default()
        };
        for (key, value) in compile.properties.iter_mut() {
            if key == "KV_CACHE_PRECISION" {
                *value = self.llm_kv_cache_precision.clone();
            }
        }
        compile.properties.extend(crate::inference::cpu::llm_properties(self.llm_precision));
        EngineOptions {
            compile,
            attention: self.llm_attention,
            max_context: self.llm_context_tokens,
            max_sessions: self.llm_kv_sessions,
            max_session_bytes: self.llm_kv_cache_mb << 20,
            prefill_chunk: (self.llm_prefill_chunk > 0).then_some(self.llm_prefill_chunk),
            ..Default::default()
        }
    }

    /// How the image engine compiles its models: at `SD_PRECISION`, with the settings measured
    /// fastest for this CPU's class (`inference::cpu`).
    pub fn sd_compile_options(&self) -> crate::inference::diffusion::SdCompileOptions {
        self.sd_compile_options_at(self.sd_precision)
    }

    /// The same at another precision (`imagine --from` draws at the precision a picture records).
    pub fn sd_compile_options_at(
        &self,
        precision: crate::inference::cpu::Precision,
    ) -> crate::inference::diffusion::SdCompileOptions {
        use crate::inference::cpu::{drawn_at, sd_settings, CpuClass};
        let class = CpuClass::detect();
        let settings = sd_settings(class, precision, self.sd_unet_linear);
        crate::inference::diffusion::SdCompileOptions {
            device: self.device.clone(),
            cache_dir: Some(self.openvino_cache_dir()),
            compiled_sizes: self.sd_compiled_sizes.max(1),
            safety_checker: self.sd_safety_checker,
            unet_linear: settings.unet_linear,
            properties: settings.properties,
            drawn_at: drawn_at(class, precision),
            ..Default::default()
        }
    }

    /// `(VARIABLE, value)` pairs for the start-up log, secrets masked.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let opt = |p: &Option<PathBuf>| p.as_ref().map_or("(unset)".into(), |p| p.display().to_string());
        vec![
            ("LEPTOS_SITE_ADDR", self.site_addr.to_string()),
            ("LEPTOS_SITE_ROOT", self.site_root.display().to_string()),
            ("DATA_DIR", self.data_dir.display().to_string()),
            ("DATABASE_URL", self.database_url().masked()),
            ("MODELS_DIR", self.models_dir().display().to_string()),
            ("LLM_MODEL", self.llm_model.to_string()),
            ("SD_MODEL", self.sd_model.to_string()),
            ("USE_MOCKS", self.use_mocks.to_string()),
            ("AUTO_DOWNLOAD_MODELS", self.auto_download_models.to_string()),
            ("HUGGINGFACE_TOKEN", self.huggingface_token.as_ref().map_or("(unset)".into(), |s| s.to_string())),
            ("HF_ENDPOINT", self.hf_endpoint.clone()),
            ("HF_HUB_OFFLINE", self.hf_hub_offline.to_string()),
            ("LLM_REVISION", self.llm_revision.clone()),
            ("SD_REVISION", self.sd_revision.clone()),
            ("DEVICE", self.device.clone()),
            ("LLM_WEIGHTS", format!("{:?}", self.llm_weights).to_lowercase()),
            ("HUGE_PAGES", crate::huge_pages::status()),
            ("LLM_CONTEXT_TOKENS", self.llm_context_tokens.map_or("(model limit)".into(), |n| n.to_string())),
            ("LLM_ATTENTION", format!("{:?}", self.llm_attention).to_lowercase()),
            ("LLM_PREFILL_CHUNK", self.llm_prefill_chunk.to_string()),
            ("LLM_KV_SESSIONS", self.llm_kv_sessions.to_string()),
            ("LLM_KV_CACHE_MB", self.llm_kv_cache_mb.to_string()),
            ("LLM_KV_CACHE_PRECISION", self.llm_kv_cache_precision.clone()),
            ("SD_COMPILED_SIZES", self.sd_compiled_sizes.to_string()),
            ("SD_UNET_LINEAR", self.sd_unet_linear.map_or("(per CPU class)".into(), |u| u.to_string())),
            ("SD_PRECISION", self.sd_precision.name().into()),
            ("LLM_PRECISION", self.llm_precision.name().into()),
            ("SD_SAFETY_CHECKER", self.sd_safety_checker.to_string()),
            ("CONTEXT_TURNS", self.context_turns.to_string()),
            ("CHAT_MAX_TOKENS", self.chat_max_tokens.to_string()),
            ("CHAT_CONCURRENCY", self.chat_concurrency.to_string()),
            ("IMAGE_QUEUE_SIZE", self.image_queue_size.to_string()),
            ("IMAGE_YIELD_MS", self.image_yield_ms.to_string()),
            ("REQUEST_TIMEOUT_SECS", self.request_timeout_secs.to_string()),
            ("IMAGE_WAIT_TIMEOUT_SECS", self.image_wait_timeout_secs.to_string()),
            ("MOCK_TOKEN_MS", self.mock_token_ms.to_string()),
            ("MOCK_IMAGE_STEP_MS", self.mock_image_step_ms.to_string()),
            ("AUTH_REQUIRED", self.auth_required.to_string()),
            ("OPEN_REGISTRATION", self.open_registration.to_string()),
            ("PUBLIC_URL", self.public_url.clone().unwrap_or_else(|| "(unset)".into())),
            ("TRUSTED_ORIGINS", self.trusted_origins.join(",")),
            ("ALLOWED_HOSTS", self.allowed_hosts.join(",")),
            ("TRUSTED_PROXIES", self.trusted_proxies.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")),
            ("AUTH_REQUESTS_PER_MINUTE", self.auth_requests_per_minute.to_string()),
            ("LOGIN_ATTEMPTS_PER_MINUTE", self.login_attempts_per_minute.to_string()),
            ("RENDER_TIMEOUT_SECS", self.render_timeout_secs.to_string()),
            ("SECRET_KEY", self.secret_key.as_ref().map_or("(DATA_DIR/secret.key)".into(), |s| s.to_string())),
            ("SESSION_DAYS", self.session_days.to_string()),
            ("REDIS_URL", self.redis_url.as_ref().map_or("(unset)".into(), |s| s.to_string())),
            ("ACCOUNT_REQUESTS_PER_MINUTE", self.account_requests_per_minute.to_string()),
            ("USER_REQUESTS_PER_MINUTE", self.user_requests_per_minute.to_string()),
            ("ACCOUNT_CONCURRENT_GENERATIONS", self.account_concurrent_generations.to_string()),
            ("USER_CONCURRENT_GENERATIONS", self.user_concurrent_generations.to_string()),
            ("ACCOUNT_IMAGES_PER_DAY", self.account_images_per_day.to_string()),
            ("USER_IMAGES_PER_DAY", self.user_images_per_day.to_string()),
            ("ACCOUNT_TOKENS_PER_DAY", self.account_tokens_per_day.to_string()),
            ("USER_TOKENS_PER_DAY", self.user_tokens_per_day.to_string()),
            ("OPENVINO_CACHE_DIR", self.openvino_cache_dir().display().to_string()),
            ("OPENVINO_LIB_DIR", opt(&self.openvino_lib_dir)),
            ("INTEL_OPENVINO_DIR", opt(&self.intel_openvino_dir)),
            ("LOG_FORMAT", format!("{:?}", self.log_format).to_lowercase()),
            ("RUST_LOG", self.log_filter.clone()),
        ]
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite(url) | DatabaseUrl::Postgres(url) => url,
        }
    }

    /// The URL with any password replaced by `***`.
    pub fn masked(&self) -> String {
        masked_url(self.as_str())
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

/// The hub's address: https, or plain http only to this machine (a mirror over http anywhere
/// else could be answered by anyone on the way, and its answers name the files we write).
fn parse_endpoint(value: &str) -> Result<String, String> {
    let value = value.trim().trim_end_matches('/');
    let lower = value.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").unwrap_or(("", ""));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || !matches!(scheme, "http" | "https") {
        return Err("HF_ENDPOINT: expected an http:// or https:// address, e.g. https://huggingface.co \
                    (plain http only to this machine)"
            .into());
    }
    if scheme == "http" && !crate::hosts::is_loopback_host(host) {
        return Err(format!(
            "HF_ENDPOINT: {value} is plain http to another machine; use https (http is accepted only for \
             localhost and loopback addresses)"
        ));
    }
    Ok(value.to_string())
}

/// A branch, tag or commit: it names a file under `refs/`, so it must stay a plain relative path.
pub fn parse_revision(variable: &str, value: &str) -> Result<String, String> {
    if crate::models::transfer::safe_relative_path(value) {
        Ok(value.to_string())
    } else {
        Err(format!("{variable}: {value:?} is not a branch, tag or commit name (e.g. main, v1.0, or a commit id)"))
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

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| "LEPTOS_SITE_ADDR: expected IP:PORT, e.g. 127.0.0.1:3000".to_string())
}

fn parse_database_url(value: &str) -> Result<DatabaseUrl, String> {
    if value.starts_with("sqlite:") {
        Ok(DatabaseUrl::Sqlite(value.to_string()))
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(DatabaseUrl::Postgres(value.to_string()))
    } else {
        Err("DATABASE_URL must start with sqlite: (e.g. sqlite://data/duet.db) or postgres:// \
             (e.g. postgres://duet@localhost/duet)"
            .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
