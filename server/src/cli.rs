//! The `server` command line: `serve` (the default) and tools that use the same engines.

use crate::config::{Config, Setting};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "server", version, about = "Duet: chat and pictures on your own CPU", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
    /// Every option's value and where it came from, for the start-up log (filled by `load`).
    #[arg(skip)]
    pub settings: Vec<Setting>,
}

impl Cli {
    /// The process's command line and environment; a bad value exits with clap's message.
    pub fn load() -> Cli {
        Cli::load_from(std::env::args_os()).unwrap_or_else(|err| err.exit())
    }

    /// `Parser::try_parse_from`, keeping what the start-up log shows of the options.
    pub fn load_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches).map_err(|err| err.format(&mut Cli::command()))?;
        cli.settings = cli.config.settings(&matches);
        Ok(cli)
    }

    /// Whether this command runs the models on OpenVINO (and so gains from huge pages).
    pub fn runs_models(&self) -> bool {
        match &self.command {
            None | Some(Command::Serve) => !self.config.models.use_mocks,
            Some(Command::Generate(_) | Command::Imagine(_) | Command::Bench(_)) => true,
            Some(Command::DownloadModels(_) | Command::VerifyModels(_)) => false,
        }
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Start the web server (the default).
    Serve,
    /// Generate one chat reply with a model folder and print it.
    Generate(GenerateArgs),
    /// Make one image with a Stable Diffusion folder and write it as PNG.
    Imagine(ImagineArgs),
    /// Measure an engine's speed; prints one JSON line.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Download the models from Hugging Face into MODELS_DIR (also in mock mode), checking
    /// every file against the hub's hashes; files already there and intact are kept.
    DownloadModels(ModelArgs),
    /// Check the downloaded models offline: every file's size and sha256 against the manifest
    /// written at download (or, for caches filled by other tools, against the blob names).
    VerifyModels(ModelArgs),
}

/// Which models `download-models` and `verify-models` work on.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The chat model [default: LLM_MODEL]; another repository when given. Naming only --llm or
    /// only --sd works on just that one; naming neither, on both.
    #[arg(long, value_name = "REPO", num_args = 0..=1, default_missing_value = "")]
    pub llm: Option<String>,
    /// The image model [default: SD_MODEL]; another repository when given.
    #[arg(long, value_name = "REPO", num_args = 0..=1, default_missing_value = "")]
    pub sd: Option<String>,
    /// Branch, tag or commit [default: LLM_REVISION / SD_REVISION, i.e. main]; a download
    /// records the commit it resolved to.
    #[arg(long, value_parser = |s: &str| crate::config::parse_revision("--revision", s))]
    pub revision: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Chat model folder (an OpenVINO export like OpenVINO/DeepSeek-R1-Distill-Qwen-1.5B-int4-cw-ov).
    #[arg(long)]
    pub model: PathBuf,
    /// One user message, rendered with the model's chat template.
    #[arg(long, required_unless_present = "prompt_ids", conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// Exact prompt token ids, comma-separated, fed as they are.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// A system message before the prompt.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub system: Option<String>,
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// 0 is greedy; default: the model's generation_config.json.
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Same seed, same prompt, same settings: same reply.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this text (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print one JSON line: {"token_ids", "text", "reasoning", "answer", …}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ImagineArgs {
    /// Stable Diffusion folder (an OpenVINO export like OpenVINO/stable-diffusion-v1-5-int8-ov).
    #[arg(long)]
    pub model: PathBuf,
    /// What to draw (required unless --from gives it).
    #[arg(long)]
    pub prompt: Option<String>,
    /// What to keep out of the picture.
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Denoising steps, 1 to 100 [default: 20].
    #[arg(long)]
    pub steps: Option<u32>,
    /// Classifier-free guidance scale; 1 or less turns guidance off [default: 7.5].
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Multiple of 8 from 256 to 1024 [default: 512].
    #[arg(long)]
    pub width: Option<u32>,
    /// Multiple of 8 from 256 to 1024 [default: 512].
    #[arg(long)]
    pub height: Option<u32>,
    /// 0 to 4294967295; the same seed gives the same image [default: random].
    #[arg(long)]
    pub seed: Option<u32>,
    /// pndm, ddim, euler, euler_a, dpmpp_2m_karras or lcm (A1111 names work too)
    /// [default: the model's own].
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Initial latents (float32 .npy of 1x4xH/8xW/8) instead of seeded noise, to compare with
    /// other implementations.
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Start from the recipe stored in a PNG Duet made; other flags override its values.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Where to write the PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON line: {"path", "seed", "total_ms", …}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Time to first token, time per output token and load time of the chat engine.
    Llm(BenchLlmArgs),
    /// Time per image and per part (text encoder, UNet step, VAE) of the image engine.
    Sd(BenchSdArgs),
    /// Time per check of the NSFW filter (the SD safety checker) on one picture.
    Safety(BenchSafetyArgs),
    /// The chat engine under a stream of requests (bench/serve.py writes the trace).
    Serve(BenchServeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BenchServeArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// JSON list of {prompt_ids, max_new_tokens, arrival_s?} (bench/serve_trace.py).
    #[arg(long)]
    pub trace: PathBuf,
    /// Closed loop: this many requests at once; unset: each at its `arrival_s`.
    #[arg(long)]
    pub users: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchSafetyArgs {
    /// A model folder with `safety_checker/` (and `feature_extractor/`).
    #[arg(long)]
    pub model: PathBuf,
    /// The picture to check (PNG).
    #[arg(long)]
    pub image: PathBuf,
    /// Timed checks (one more runs first as warm-up and is discarded); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

#[derive(Args, Debug, Clone)]
pub struct BenchSdArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value_t = 512)]
    pub width: u32,
    #[arg(long, default_value_t = 512)]
    pub height: u32,
    #[arg(long, default_value_t = 20)]
    pub steps: u32,
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f32,
    /// Scheduler name [default: the model's own].
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Timed images (one more runs first as warm-up and is discarded); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Keep dynamic shapes instead of compiling for the size, to measure what static shapes buy.
    #[arg(long)]
    pub dynamic: bool,
    /// Override a device property, e.g. `--property PERFORMANCE_HINT=THROUGHPUT`; `KEY=` removes one.
    #[arg(long, value_parser = parse_property)]
    pub property: Vec<(String, String)>,
    /// Do not use OpenVINO's compiled-model cache (measures a cold compile).
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Args, Debug, Clone)]
pub struct BenchLlmArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Timed runs (one more runs first as warm-up and is discarded); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also run a conversation this long and time every turn's first token, with the KV cache
    /// kept between turns and with the same prompt run cold (`turn_ttft`; the last turn's as
    /// `followup_ttft_ms` / `reprefill_ttft_ms`).
    #[arg(long)]
    pub turns: Option<usize>,
    /// With --turns: send at most this many earlier turns, windowed as `POST /chat` windows them
    /// with `CONTEXT_TURNS` set to it (the window moves in blocks of half its size).
    #[arg(long)]
    pub window_turns: Option<usize>,
    /// Compute logits for every position (no IR rewrite), to measure what slicing buys (stateful
    /// attention only: the paged graph always gathers the last positions).
    #[arg(long)]
    pub no_slice: bool,
    /// Override a device property, e.g. `--property KV_CACHE_PRECISION=f16`; `KEY=` removes one.
    #[arg(long, value_parser = parse_property)]
    pub property: Vec<(String, String)>,
    /// Also measure decode throughput with this many generations in flight at once (and alone).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Run prompts in chunks of this many tokens (default LLM_PREFILL_CHUNK; 0: whole prompts).
    #[arg(long)]
    pub prefill_chunk: Option<usize>,
    /// Do not use OpenVINO's compiled-model cache (measures a cold compile).
    #[arg(long)]
    pub no_cache: bool,
    /// Also measure a newcomer: a `--prompt-tokens` prompt arriving while another conversation
    /// replies (its time to first token, and the gaps in the other's stream meanwhile).
    #[arg(long)]
    pub newcomer: bool,
    /// Tokens a step runs while other conversations reply (default 128): a newcomer's prompt
    /// chunk plus their decoding tokens.
    #[arg(long)]
    pub shared_chunk: Option<usize>,
    /// Run prompt chunks in steps of their own, never beside decoding ones, to measure what
    /// mixing them buys.
    #[arg(long)]
    pub unmixed: bool,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| "expected KEY=VALUE".to_string())
}
