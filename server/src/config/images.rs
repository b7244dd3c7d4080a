//! How the image model runs, and how image jobs queue.

use super::parse_bool;
use crate::inference::{cpu::Precision, diffusion::UnetLinear};
use clap::{ArgAction, Args};
use std::path::PathBuf;

// Two lines an option: what rustfmt makes of them is five to seven.
#[rustfmt::skip]
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Images")]
pub struct ImagesConfig {
    /// Image model precision: fast (what this CPU runs fastest; the same seed gives the same
    /// picture on CPUs of the same class) or f32 (the same picture on every machine).
    #[arg(id = "sd_precision", long = "sd-precision", env = "SD_PRECISION", value_enum,
          default_value_t = Precision::Fast, global = true)]
    pub precision: Precision,

    /// UNet linear layers whose int8 weights are unpacked to f32 at load, so OpenVINO runs plain
    /// f32 GEMMs instead of decompressing at every step: f32-outer (the high-resolution levels,
    /// most speed per byte), f32 (all; most memory), int8 (as shipped; least memory).
    #[arg(id = "sd_unet_linear", long = "sd-unet-linear", env = "SD_UNET_LINEAR", value_enum, global = true)]
    pub unet_linear: Option<UnetLinear>,

    /// Image sizes whose compiled UNet and VAE stay in memory (each costs about the UNet's size).
    #[arg(id = "sd_compiled_sizes", long = "sd-compiled-sizes", env = "SD_COMPILED_SIZES", default_value_t = 2,
          global = true)]
    pub compiled_sizes: usize,

    /// Filter images with the model's safety checker when it has one; flagged ones are blacked out (true/false).
    #[arg(id = "sd_safety_checker", long = "sd-safety-checker", env = "SD_SAFETY_CHECKER", default_value = "false",
          action = ArgAction::Set, value_parser = |s: &str| parse_bool("SD_SAFETY_CHECKER", s), global = true)]
    pub safety_checker: bool,

    /// A block-list for image prompts, typed or taken from a reply: one word or phrase a line
    /// (whole words, any case), or `re:` and a regular expression; `#` starts a comment. A
    /// refused prompt gets 422 naming the line; a chat turn says so instead of drawing.
    #[arg(long, env = "IMAGE_PROMPT_BLOCKLIST", value_name = "FILE", global = true)]
    pub image_prompt_blocklist: Option<PathBuf>,

    /// Negative prompt for images whose request gives none.
    #[arg(long, env = "IMAGE_NEGATIVE_PROMPT", default_value = "", global = true)]
    pub image_negative_prompt: String,

    /// Image jobs that may wait in the queue; more get 503 with Retry-After.
    #[arg(id = "image_queue_size", long = "image-queue-size", env = "IMAGE_QUEUE_SIZE", default_value_t = 16,
          global = true)]
    pub queue_size: usize,

    /// Longest an image job waits between two steps for chat replies to finish (0: never waits).
    #[arg(id = "image_yield_ms", long = "image-yield-ms", env = "IMAGE_YIELD_MS", default_value_t = 10_000,
          global = true)]
    pub yield_ms: u64,

    /// Longest `POST /image?wait=true` waits for the picture before it gets 504.
    #[arg(id = "image_wait_timeout_secs", long = "image-wait-timeout-secs", env = "IMAGE_WAIT_TIMEOUT_SECS",
          default_value_t = 900, global = true)]
    pub wait_timeout_secs: u64,

    /// How long a process's claim on the image job it draws holds without being renewed (it is
    /// renewed at every step and every third of this while paused); once past, another process
    /// sharing the database takes the job over and draws it again.
    #[arg(id = "image_job_lease_ms", long = "image-job-lease-ms", env = "IMAGE_JOB_LEASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1_000..), global = true)]
    pub job_lease_ms: u64,

    /// Time each step of a mock image takes, so progress can be seen in mock mode.
    #[arg(id = "mock_image_step_ms", long = "mock-image-step-ms", env = "MOCK_IMAGE_STEP_MS", default_value_t = 20,
          global = true)]
    pub mock_step_ms: u64,
}
