//! Pure helpers the pages use on both sides: the SSE reader and the Markdown renderer.

pub mod markdown;
pub mod sse;
