//! The image engine: Stable Diffusion 1.5 on OpenVINO, in Rust.
//!
//! Pure parts (unit-tested with numbers computed by diffusers): `scheduler`, `rng`, `request`,
//! `image_file`, and the tokenizer rules. `files` reads a model folder, `model` runs the compiled
//! graphs, `pipeline` makes an image, `engine` owns it all on one thread.

mod engine;
pub mod files;
pub mod image_file;
mod model;
mod parts;
pub mod pipeline;
pub mod request;
pub mod rng;
pub mod safety;
pub mod scheduler;
pub mod tokenizer;
pub mod unpack;

pub use engine::{SdEngine, SdInfo};
pub use files::{SdFiles, REQUIRED_FILES};
pub use model::{PartTimes, SdCompileOptions, SdModel};
pub use pipeline::{ImageOutput, PipelineError, Progress};
pub use request::{ImageRequest, InvalidField};
pub use scheduler::SchedulerKind;
pub use unpack::UnetLinear;
