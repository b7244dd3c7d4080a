//! The chat model engine: DeepSeek-R1-Distill-Qwen on OpenVINO, in Rust.
//!
//! Pure parts (no I/O, unit-tested with exact values): `template`, `sampler`, `detok`,
//! `reasoning`, `stop`, `kv`, `session`, `context`, `window`, `schedule` (which
//! generations share a step, chunk sizes), `ir`. `files` reads a model folder, `model`
//! runs the compiled graph, `generation` and `engine` drive requests on the engine thread.

pub mod backend;
pub mod context;
pub mod detok;
mod engine;
pub mod files;
mod generation;
pub mod ir;
pub mod kv;
mod model;
pub mod paged;
pub mod reasoning;
pub mod sampler;
pub mod schedule;
pub mod session;
pub mod stop;
pub mod template;
pub mod window;

pub use backend::Attention;
pub use engine::{Canceller, EngineInfo, EngineOptions, EngineStats, GenerationHandle, LlmEngine, StepTotals};
pub use generation::{
    Completion, Failure, FailureKind, FinishReason, GenerateRequest, GenerationEvent, GenerationParams, Prompt,
};
pub use model::{CompileOptions, LlmModel, REQUIRED_FILES};
pub use reasoning::Part;
pub use sampler::{argmax, SamplingOverrides, SamplingParams};
pub use template::ChatMessage;
