//! Mock engines for `USE_MOCKS=true`: deterministic stand-ins behind the same traits as the real
//! engines, so the whole product (API, streaming, jobs, UI) works without models or OpenVINO.

mod chat;
mod image;

pub use chat::{wants_picture, MockChat};
pub use image::MockImage;
